//! `twtune audit`: the evidence, the rules and the profile's findings, as one report.

use std::io::Write;

use crate::config::AuditConfig;
use crate::error::{Error, Outcome, Result};
use crate::inspect::evidence::{self, Evidence};
use crate::profile::{self, catalog::Catalog};
use crate::report::{ProfileSummary, Report};
use crate::root::Root;
use crate::rules;

pub(crate) fn run(config: &AuditConfig, out: &mut dyn Write) -> Result<Outcome> {
    let root = Root::open(&config.request.root)?;
    // A bad profile is reported before anything is read.
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let extra_keys = profile.as_ref().map(profile::Profile::keys).unwrap_or_default();
    let Evidence { mut inspection, rates } = evidence::collect(&config.request, extra_keys)?;

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
    match report.render(config.format, out).and_then(|()| out.flush()) {
        // `twtune audit | head`: the reader left, but the verdict stands (pipefail users rely on it).
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(outcome),
        Err(e) => Err(Error::Output(e)),
        Ok(()) => Ok(outcome),
    }
}
