//! creddy's benchmarks, run as real processes on 127.0.0.1 (figures in `docs/benchmarks.md`):
//!
//! - `creddy-bench path`: the hot paths (issue #15): the token endpoint beside Node's
//!   `oidc-provider` in alternating rounds, vends through the test plugin and through the
//!   Daytona stand-in against a direct stand-in call, a revocation burst, `creddy get` as a
//!   process, memory; on SQLite and PostgreSQL. `cargo xtask bench` builds and runs it.
//! - `creddy-bench scale`: the lease engine with a million live leases (issue #5).

mod common;
mod path;
mod scale;

use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("path") => path::main(args).await,
        Some("scale") => scale::main(args).await,
        _ => {
            eprintln!(
                "use: creddy-bench path [--help] | creddy-bench scale [--leases N] [--vends N]"
            );
            ExitCode::from(2)
        }
    }
}
