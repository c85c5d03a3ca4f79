//! `twtune audit`: the evidence, the rules and the profile's findings, as one report; with
//! `--all-netns`, one per network namespace.

use std::io::Write;

use crate::config::AuditConfig;
use crate::error::{Error, Outcome, Result};
use crate::files::write_atomically;
use crate::inspect::evidence::{self, Evidence, NetnsTarget};
use crate::inspect::sweep;
use crate::profile::{self, Profile, catalog::Catalog};
use crate::report::Report;
use crate::report::sweep::{NamespaceReport, SweepReport};
use crate::root::Root;

pub(crate) fn run(config: &AuditConfig, out: &mut dyn Write) -> Result<Outcome> {
    let root = Root::open(&config.request.root)?;
    // A bad profile is reported before anything is read.
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let extra_keys = profile.as_ref().map(profile::Profile::keys).unwrap_or_default();
    if config.request.netns == NetnsTarget::All {
        return sweep(config, profile, extra_keys, out);
    }
    let Evidence { inspection, rates, other_namespaces } = evidence::collect(&config.request, extra_keys)?;
    let mut report = Report::judge(inspection, profile, rates);
    report.other_namespaces = other_namespaces;
    let outcome = if report.fails(config.fail_on) { Outcome::Findings } else { Outcome::Clean };
    deliver(config, outcome, |w| report.render(config.format, w), out)
}

fn sweep(
    config: &AuditConfig,
    profile: Option<Profile>,
    extra_keys: Vec<String>,
    out: &mut dyn Write,
) -> Result<Outcome> {
    let swept = sweep::sweep(&config.request, &extra_keys)?;
    let namespaces = swept
        .namespaces
        .into_iter()
        .map(|s| NamespaceReport {
            netns: s.namespace,
            report: Report::judge(s.evidence.inspection, profile.clone(), s.evidence.rates),
        })
        .collect();
    let report = SweepReport::new(namespaces, swept.notes).ignoring_user_namespaces(config.ignore_user_netns);
    let outcome = if report.fails(config.fail_on) { Outcome::Findings } else { Outcome::Clean };
    deliver(config, outcome, |w| report.render(config.format, w), out)
}

/// Renders the report to stdout, or with `--output` into memory first and then atomically over
/// the file: a report cut short by an error is never half-written there, and the last one stays.
/// The file is for tools and for reading later, so it carries no styles.
fn deliver(
    config: &AuditConfig,
    outcome: Outcome,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    out: &mut dyn Write,
) -> Result<Outcome> {
    let Some(path) = &config.output else {
        return finish(outcome, render(out));
    };
    let mut text = Vec::new();
    render(&mut anstream::StripStream::new(&mut text)).map_err(Error::Output)?;
    write_atomically(path, &String::from_utf8_lossy(&text))
        .map_err(|source| Error::Write { path: path.clone(), source })?;
    Ok(outcome)
}

/// The outcome, unless writing the report failed. `twtune audit | head`: the reader left, but the
/// verdict stands (pipefail users rely on it).
fn finish(outcome: Outcome, written: std::io::Result<()>) -> Result<Outcome> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(outcome),
        Err(e) => Err(Error::Output(e)),
        Ok(()) => Ok(outcome),
    }
}
