//! `creddy`: the server, the admin CLI and the agent CLI in one binary.
//!
//! A thin shell over the library crates: flags are parsed and turned into validated settings
//! in one step ([`cli`]), each command lives in [`commands`], and every failure becomes an
//! `Error: …` line, an optional `Hint: …` line and a documented exit code ([`failure`]).

mod cli;
mod client;
mod commands;
mod credentials;
mod failure;
mod output;
mod release;
mod workload;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = cli::Cli::parse();
    // --no-color, or NO_COLOR set to anything (https://no-color.org), turns styling off.
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    output::set_color(!args.global.no_color && !no_color_env);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json = args.global.output == Some(cli::Format::Json);
    match runtime.block_on(commands::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.print();
            if json {
                failure.print_json();
            }
            ExitCode::from(failure.exit_code)
        }
    }
}

/// `creddy … | head`: once the reader of stdout is gone, the command ends quietly with exit 0
/// (as ripgrep does) instead of a panic message; every other panic is reported as usual.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}
