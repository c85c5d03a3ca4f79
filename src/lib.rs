//! twtune audits and tunes the Linux settings behind TCP TIME_WAIT build-up and ephemeral-port
//! exhaustion.
//!
//! The pipeline: [`cli`] parses arguments, `config` resolves them once, `cmd` runs one
//! subcommand: `inspect` reads settings, counters, sockets and the sysctl.d tree beneath a root
//! into records, `model` computes the kernel's port arithmetic from them (pure), `rules` and
//! `profile` turn that evidence into findings, `report` renders one model as text,
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
#[cfg(test)]
mod fuzz;
mod inspect;
mod json;
mod model;
mod ports;
mod problem;
mod profile;
mod report;
mod root;
mod rules;
mod snapshot;
mod streams;
mod sysctl;
mod sysctl_d;
#[cfg(test)]
mod testing;
mod watch;
mod words;

use std::ffi::OsString;
use std::io::Write;

use crate::config::{CommandConfig, Config};
use crate::error::{Outcome, Result};

/// Runs twtune with these arguments (the first is the program name) and returns the exit status.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> u8 {
    let cli = match cli::parse(args) {
        Ok(cli::Parsed::Run(cli)) => cli,
        // Help and version go to stdout and exit 0.
        Ok(cli::Parsed::Print(text)) => return exit_status(streams::print(&text).map(|()| Outcome::Clean)),
        Err(err) => return exit_status(Err(err)),
    };
    cli.color.write_global();
    let config = Config::from_cli(cli);
    let result = streams::report_writer(&config).and_then(|mut out| {
        let outcome = execute(&config, &mut out)?;
        streams::flush(&mut out)?;
        Ok(outcome)
    });
    exit_status(result)
}

/// The exit status of a run that ended with `result`, its error said on stderr.
fn exit_status(result: Result<Outcome>) -> u8 {
    let code = match result {
        Ok(outcome) => outcome.code(),
        // The reader went away (`twtune audit | head`): nothing is wrong with the audit.
        Err(err) if err.is_broken_pipe() => 0,
        Err(err) => {
            for line in err.lines() {
                error::say(&line);
            }
            err.exit_code()
        }
    };
    if error::stderr_failed() { error::ERROR_EXIT_CODE } else { code }
}

/// Takes the lock of the state directory `dir` as an apply or rollback does, and holds it until the
/// returned value is dropped: for tests that run twtune while another apply holds it.
pub fn lock_state_dir(dir: &std::path::Path) -> std::result::Result<impl Sized, String> {
    apply::journal::StateDir::new(dir).lock().map_err(|e| e.to_string())
}

fn execute(config: &Config, out: &mut dyn Write) -> Result<Outcome> {
    let terminal = apply::confirm::Terminal;
    match &config.command {
        CommandConfig::Audit(audit) => cmd::audit::run(audit, out),
        CommandConfig::Watch(watch) => cmd::watch::run(watch),
        CommandConfig::Explain(explain) => cmd::explain::run(explain, out),
        CommandConfig::Profiles(profiles) => cmd::profiles::run(profiles, out),
        CommandConfig::Apply(apply) => cmd::apply::run(apply, out, &terminal),
        CommandConfig::Rollback(rollback) => cmd::rollback::run(rollback, out, &terminal),
        CommandConfig::Export(export) => cmd::export::run(export, out),
        CommandConfig::Snapshot(snapshot) => cmd::snapshot::run(snapshot),
        CommandConfig::Completions(shell) => cmd::completions::run(*shell, out),
    }
}
