//! The `postamt` binary: parses the command line and runs the verb.

mod admin_cli;
mod cli;
mod install;
mod log_writer;
mod logging;
mod privilege;
mod quickstart;
mod serve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Serve => serve::run(&cli.config),
        cli::Command::Quickstart(args) => quickstart::run(&args),
        cli::Command::CheckConfig => admin_cli::check_config(&cli.config),
        cli::Command::User(cmd) => admin_cli::user(&cli.config, cmd),
        cli::Command::Alias(cmd) => admin_cli::alias(&cli.config, cmd),
        cli::Command::List(cmd) => admin_cli::list(&cli.config, cmd),
        cli::Command::Autoreply(cmd) => admin_cli::autoreply(&cli.config, cmd),
        cli::Command::Forward(cmd) => admin_cli::forward(&cli.config, cmd),
        cli::Command::Queue(cmd) => admin_cli::queue(&cli.config, cmd),
        cli::Command::Dkim(cmd) => admin_cli::dkim(&cli.config, cmd),
        cli::Command::DnsRecords { domain } => admin_cli::dns_records(&cli.config, &domain),
        cli::Command::Docs(cli::DocsCmd::Build { dir }) => build_docs(&dir),
        cli::Command::Install(args) => install::install(&cli.config, &args),
        cli::Command::Uninstall(args) => install::uninstall(&cli.config, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postamt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `postamt docs build DIR`: the guide as static HTML (no config needed).
fn build_docs(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let n = postamt_docs::build_static(dir)
        .with_context(|| format!("cannot write the guide into {}", dir.display()))?;
    println!("wrote {n} files into {}", dir.display());
    Ok(())
}
