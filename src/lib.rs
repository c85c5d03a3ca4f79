//! twtune audits and tunes the Linux settings behind TCP TIME_WAIT build-up and ephemeral-port
//! exhaustion.
//!
//! The pipeline: [`cli`] parses arguments, [`config`] resolves them once, `cmd` runs one
//! subcommand: `inspect` reads settings, counters, sockets and the sysctl.d tree beneath a root,
//! `rules` and `profile` turn that evidence into findings, `report` renders one model as text,
//! JSON or Prometheus into a writer; `apply` owns every decision about writing. This file only
//! parses, builds the config, dispatches and maps the outcome to an exit status. The layout is
//! described in the README's Development section.
//!
//! The library exists for the binary and its tests; it has no stable API.

mod apply;
pub mod cli;
mod cmd;
mod config;
mod error;
mod explain;
mod export;
mod files;
mod inspect;
mod ports;
mod problem;
mod profile;
mod report;
mod root;
mod rules;
mod snapshot;
mod sysctl;
mod sysctl_d;
#[cfg(test)]
mod testing;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

/// The state directory, for tests that hold its lock while twtune runs.
pub use crate::apply::journal::StateDir;
use crate::config::{CommandConfig, Config};
use crate::error::{Outcome, Result};

/// Runs twtune with these arguments (the first is the program name) and returns the exit status.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> u8 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // Help and version go to stdout and exit 0.
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return 0;
        }
        // A usage error is one line, like every other error.
        Err(err) => {
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            anstream::eprintln!("twtune: {}; see 'twtune --help'", first.trim_start_matches("error: "));
            return error::ERROR_EXIT_CODE;
        }
    };
    cli.color.write_global();
    let config = Config::from_cli(cli);
    let mut out = anstream::AutoStream::new(std::io::stdout().lock(), config.color);
    let result = execute(&config, &mut out).and_then(|outcome| match out.flush() {
        // `twtune audit | head`: the reader left, but the verdict stands (pipefail users rely on it).
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(error::Error::Output(e)),
        _ => Ok(outcome),
    });
    match result {
        Ok(outcome) => outcome.code(),
        // The reader went away (`twtune audit | head`): nothing is wrong with the audit.
        Err(err) if err.is_broken_pipe() => 0,
        Err(err) => {
            for line in err.lines() {
                anstream::eprintln!("twtune: {line}");
            }
            err.exit_code()
        }
    }
}

fn execute(config: &Config, out: &mut dyn Write) -> Result<Outcome> {
    let terminal = apply::confirm::Terminal;
    match &config.command {
        CommandConfig::Audit(audit) => cmd::audit::run(audit, out),
        CommandConfig::Explain(explain) => cmd::explain::run(explain, out),
        CommandConfig::Profiles(profiles) => cmd::profiles::run(profiles, out),
        CommandConfig::Apply(apply) => cmd::apply::run(apply, out, &terminal),
        CommandConfig::Rollback(rollback) => cmd::rollback::run(rollback, out, &terminal),
        CommandConfig::Export(export) => cmd::export::run(export, out),
        CommandConfig::Snapshot(snapshot) => cmd::snapshot::run(snapshot),
        CommandConfig::Completions(shell) => cmd::completions::run(*shell, out),
    }
}
