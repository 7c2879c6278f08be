//! `daytona-standin [--listen 127.0.0.1:0] [--state FILE] [--master-file FILE --organization
//! ORG]`: runs the Daytona stand-in and prints `listening on http://ADDR/api` once it accepts
//! connections. With `--master-file`, the key in that file is seeded as a master key of
//! `ORG` (`org-standin` by default), as `POST /_standin/seed` would; the key is read from a
//! file so that it never shows in a process list.

use std::sync::Arc;

use creddy_core::{Clock, SystemClock};
use creddy_daytona_standin::{MASTER_PERMISSIONS, State, router};

const USAGE: &str = "usage: daytona-standin [--listen ADDR] [--state FILE] [--master-file FILE] [--organization ORG]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut state_file) = ("127.0.0.1:0".to_owned(), None);
    let (mut master_file, mut organization) = (None, "org-standin".to_owned());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--state" => state_file = args.next().map(std::path::PathBuf::from),
            "--master-file" => master_file = args.next().map(std::path::PathBuf::from),
            "--organization" => organization = args.next().unwrap_or(organization),
            other => {
                eprintln!("unknown option '{other}'\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let mut state = State::load(state_file);
    if let Some(file) = master_file {
        let master = std::fs::read_to_string(&file)?;
        state.seed_key(
            "master",
            master.trim(),
            &MASTER_PERMISSIONS,
            &organization,
            &SystemClock.now().to_rfc3339(),
        );
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/api");
    axum::serve(listener, router(state, Arc::new(SystemClock))).await
}
