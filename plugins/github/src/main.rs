//! `creddy-github`: the GitHub plugin's executable.

use std::process::ExitCode;

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    creddy_plugin::sdk::run(creddy_github::Github)
}
