//! twtune audits and tunes the Linux settings behind TCP TIME_WAIT build-up and ephemeral-port
//! exhaustion.
//!
//! The pipeline: [`cli`] parses arguments, [`config`] resolves them once, [`inspect`] reads
//! settings, counters and the socket table beneath a [`root::Root`], [`rules`] turn that evidence
//! into findings, and [`report`] renders one model as text or JSON into a writer.
//!
//! The library exists for the binary and its tests; it has no stable API.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod explain;
pub mod export;
pub mod gather;
pub mod inspect;
pub mod keys;
pub mod persisted;
pub mod ports;
pub mod procsys;
pub mod profile;
pub mod report;
pub mod root;
pub mod rules;
pub mod snapshot;
pub mod sysctl;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::config::{AuditConfig, CommandConfig, Config, ExplainConfig, ProfilesConfig};
use crate::error::{Error, Outcome, Result};
use crate::profile::catalog::Catalog;
use crate::report::{ProfileSummary, Report};
use crate::root::Root;

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
        CommandConfig::Apply(apply_config) => {
            let mut out = anstream::AutoStream::new(std::io::stdout().lock(), config.color);
            commands::apply(apply_config, &mut out, &apply::confirm::Terminal)
        }
        CommandConfig::Export(export_config) => commands::export(export_config),
        CommandConfig::Completions(shell) => {
            use clap::CommandFactory;
            let mut out = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut cli::Cli::command(), "twtune", &mut out);
            out.flush().map_err(Error::Output).map(|()| Outcome::Clean)
        }
        CommandConfig::Snapshot(snapshot_config) => snapshot::snapshot(snapshot_config).map(|()| Outcome::Clean),
        CommandConfig::Rollback(rollback_config) => {
            let mut out = anstream::AutoStream::new(std::io::stdout().lock(), config.color);
            commands::rollback(rollback_config, &mut out, &apply::confirm::Terminal)
        }
        CommandConfig::Explain(explain_config) => explain(explain_config, config.color),
        CommandConfig::Profiles(profiles_config) => profiles(profiles_config),
    }
}

fn audit(config: &AuditConfig, color: anstream::ColorChoice) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    // A bad profile is reported before anything is read.
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let extra_keys = profile.as_ref().map(profile::Profile::keys).unwrap_or_default();
    let gather::Evidence { mut inspection, rates } = gather::gather(config, extra_keys)?;

    let thresholds = profile.as_ref().map(profile::Profile::thresholds).unwrap_or_default();
    let mut findings = rules::evaluate(&inspection, &thresholds);
    let summary = profile.map(|profile| {
        let (unmet, warnings) = profile::evaluate(&profile, &inspection);
        findings.extend(unmet);
        inspection.warnings.extend(warnings);
        ProfileSummary { name: profile.name, source: profile.source, chain: profile.chain }
    });
    rules::sort_findings(&mut findings);
    let report = Report::new(inspection, findings, summary, thresholds, rates);

    let failed = config.fail_on.is_some_and(|threshold| report.worst().is_some_and(|worst| worst >= threshold));
    let outcome = if failed { Outcome::Findings } else { Outcome::Clean };
    let mut out = anstream::AutoStream::new(std::io::stdout().lock(), color);
    match report.render(config.format, &mut out).and_then(|()| out.flush()) {
        // `twtune audit | head`: the reader left, but the verdict stands (pipefail users rely on it).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(outcome),
        Err(e) => Err(Error::Output(e)),
        Ok(()) => Ok(outcome),
    }
}

fn explain(config: &ExplainConfig, color: anstream::ColorChoice) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let explanation = explain::explain(&root, &config.key, profile.as_ref())?;
    let mut out = anstream::AutoStream::new(std::io::stdout().lock(), color);
    explanation.render(config.format, &mut out).and_then(|()| out.flush()).map_err(Error::Output)?;
    Ok(Outcome::Clean)
}

fn profiles(config: &ProfilesConfig) -> Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock, text: &str| out.write_all(text.as_bytes()).map_err(Error::Output);
    match config {
        ProfilesConfig::List { root } => {
            let (listed, errors) = Catalog::new(root).list();
            let width = listed.iter().map(|l| l.name.len()).max().unwrap_or(0);
            for profile in &listed {
                write(&mut out, &format!("{:<width$}  {}  ({})\n", profile.name, profile.description, profile.source))?;
            }
            report_errors(&errors)
        }
        ProfilesConfig::Show { profile, root } => {
            write(&mut out, &Catalog::new(root).load(profile)?.to_yaml()).map(|()| Outcome::Clean)
        }
        ProfilesConfig::Check { files, root } => {
            let catalog = Catalog::new(root);
            let mut errors = Vec::new();
            for file in files {
                match catalog.check_file(file) {
                    Ok(profile) => write(
                        &mut out,
                        &format!(
                            "{}: ok ({}, {} settings)\n",
                            file.display(),
                            profile.chain.join(" <- "),
                            profile.settings.len()
                        ),
                    )?,
                    Err(err) => errors.push(err),
                }
            }
            report_errors(&errors)
        }
    }
}

/// Prints every error but the last, which is returned to be printed like any other error (exit 2).
fn report_errors(errors: &[Error]) -> Result<Outcome> {
    match errors.split_last() {
        None => Ok(Outcome::Clean),
        Some((last, rest)) => {
            rest.iter().for_each(|err| anstream::eprintln!("twtune: {err}"));
            Err(Error::Reported(last.to_string()))
        }
    }
}
