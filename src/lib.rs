//! twtune audits and tunes the Linux settings behind TCP TIME_WAIT build-up and ephemeral-port
//! exhaustion.
//!
//! The pipeline: [`cli`] parses arguments, [`config`] resolves them once, [`inspect`] reads
//! settings, counters and the socket table beneath a [`root::Root`], [`rules`] turn that evidence
//! into findings, and [`report`] renders one model as text or JSON into a writer.
//!
//! The library exists for the binary and its tests; it has no stable API.

pub mod cli;
pub mod config;
pub mod error;
pub mod inspect;
pub mod ports;
pub mod report;
pub mod root;
pub mod rules;
pub mod sysctl;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::config::{AuditConfig, CommandConfig, Config};
use crate::error::{Error, Outcome, Result};
use crate::inspect::proc_tcp::ProcSocketSource;
use crate::report::Report;
use crate::root::Root;
use crate::rules::Thresholds;

/// Runs twtune with these arguments (the first is the program name) and returns the exit status.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> u8 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout and exit 0; usage errors go to stderr and exit 2.
            let _ = err.print();
            return u8::try_from(err.exit_code()).unwrap_or(error::ERROR_EXIT_CODE);
        }
    };
    cli.color.write_global();
    let config = Config::from_cli(cli);
    match execute(&config) {
        Ok(outcome) => outcome.code(),
        // The reader went away (`twtune audit | head`): nothing is wrong with the audit.
        Err(err) if err.is_broken_pipe() => 0,
        Err(err) => {
            anstream::eprintln!("twtune: {err}");
            err.exit_code()
        }
    }
}

fn execute(config: &Config) -> Result<Outcome> {
    match &config.command {
        CommandConfig::Audit(audit_config) => audit(audit_config, config.color),
    }
}

fn audit(config: &AuditConfig, color: anstream::ColorChoice) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    let mut source = ProcSocketSource::new(&root);
    let inspection = inspect::inspect(&root, &mut source, config.top)?;
    let findings = rules::evaluate(&inspection, &Thresholds::default());
    let report = Report::new(inspection, findings);

    let mut out = anstream::AutoStream::new(std::io::stdout().lock(), color);
    report.render(config.format, &mut out).and_then(|()| out.flush()).map_err(Error::Output)?;

    let failed = config.fail_on.is_some_and(|threshold| report.worst().is_some_and(|worst| worst >= threshold));
    Ok(if failed { Outcome::Findings } else { Outcome::Clean })
}
