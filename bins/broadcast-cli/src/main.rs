//! `broadcast-cli`: the operator's command line. A composition root: it reads settings, builds
//! the store, renderer and channels, and hands them to the orchestrator.

mod activity;
mod admin;
mod app;
mod cli;
mod commands;
mod confirm;
mod demo;
mod documents;
mod export;
mod media;
mod outcome;
mod output;
mod term;

use std::process::ExitCode;

use clap::Parser;

use crate::app::CliError;

fn main() -> ExitCode {
    // A missing .env is fine; a broken one is reported.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a file or a log collector.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Tasks still running (a progress ticker) must not hold the process.
    runtime.shutdown_background();
    let error = term::Paint::stderr().error("error:");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Invalid(msg)) => {
            eprintln!("{error} {msg}");
            ExitCode::from(2)
        }
        Err(CliError::Undelivered(msg)) => {
            eprintln!("{error} {msg}");
            ExitCode::from(3)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("{error} {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
