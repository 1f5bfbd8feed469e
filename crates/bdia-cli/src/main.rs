//! `bdia`: the one binary of bdia.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod generate;
mod prepare;
mod remote;
mod report;
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
    /// Turn CSV exports into correct batch files: grouped, sorted, chunked, gzipped.
    Prepare(prepare::Args),
    /// Upload prepared files safely: one at a time per group, retries, resume.
    Upload(remote::UploadArgs),
    /// Show a file's record, log or rejects, or a visitor group's files.
    Status(remote::StatusArgs),
    /// List files on the server, newest first.
    Files(remote::FilesArgs),
    /// Pause, resume or cancel a visitor group, or show it.
    Group(remote::GroupArgs),
    /// A report from the server: metrics by day, page, eVar... (table, CSV or JSON).
    Report(report::Args),
    /// Run the ingestion server.
    Serve(serve::Args),
    /// Manage companies, report suites and API clients; print tokens.
    Admin(admin::Args),
}

/// mimalloc: processing allocates and frees many small strings per row on
/// several threads at once, where it spends a fraction of glibc's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Prepare(args) => prepare::run(args),
        Command::Upload(args) => remote::upload(args),
        Command::Status(args) => remote::status(args),
        Command::Files(args) => remote::files(args),
        Command::Group(args) => remote::group(args),
        Command::Report(args) => report::run(args),
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
