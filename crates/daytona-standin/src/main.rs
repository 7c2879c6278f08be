//! `daytona-standin [--listen 127.0.0.1:0] [--state FILE]`: runs the Daytona stand-in and
//! prints `listening on http://ADDR/api` once it accepts connections.

use std::sync::Arc;

use creddy_core::SystemClock;
use creddy_daytona_standin::{State, router};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut state_file) = ("127.0.0.1:0".to_owned(), None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--state" => state_file = args.next().map(std::path::PathBuf::from),
            other => {
                eprintln!(
                    "unknown option '{other}'\nusage: daytona-standin [--listen ADDR] [--state FILE]"
                );
                std::process::exit(2);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/api");
    axum::serve(
        listener,
        router(State::load(state_file), Arc::new(SystemClock)),
    )
    .await
}
