//! `bdia`: the one binary of bdia.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod generate;
mod serve;
mod validate;

/// bdia: a self-hosted Bulk Data Insertion server and its client tools.
#[derive(Parser)]
#[command(name = "bdia", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check batch files against the contract, offline; store nothing.
    Validate(validate::Args),
    /// Write a realistic batch file (for tests, demos and benchmarks).
    Generate(generate::Args),
    /// Run the ingestion server.
    Serve(serve::Args),
    /// Manage companies, report suites and API clients; print tokens.
    Admin(admin::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Admin(args) => admin::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bdia: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
