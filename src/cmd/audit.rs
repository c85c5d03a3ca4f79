//! `twtune audit`: the evidence, the rules and the profile's findings, as one report.

use std::io::Write;

use crate::config::AuditConfig;
use crate::error::{Error, Outcome, Result};
use crate::inspect::evidence::{self, Evidence};
use crate::profile::{self, catalog::Catalog};
use crate::report::Report;
use crate::root::Root;

pub(crate) fn run(config: &AuditConfig, out: &mut dyn Write) -> Result<Outcome> {
    let root = Root::open(&config.request.root)?;
    // A bad profile is reported before anything is read.
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let extra_keys = profile.as_ref().map(profile::Profile::keys).unwrap_or_default();
    let Evidence { inspection, rates } = evidence::collect(&config.request, extra_keys)?;
    let report = Report::judge(inspection, profile, rates);
    let outcome = if report.fails(config.fail_on) { Outcome::Findings } else { Outcome::Clean };
    // `twtune audit | head`: the reader left, but the verdict stands (pipefail users rely on it).
    match report.render(config.format, out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(outcome),
        Err(e) => Err(Error::Output(e)),
        Ok(()) => Ok(outcome),
    }
}
