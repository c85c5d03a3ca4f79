//! Everything that decides whether and how a sysctl write happens: the [`Plan`] (which keys, from
//! what to what, checked against what the kernel would refuse), the checks before any write
//! ([`preflight`]: privileges, a read-only `/proc/sys`, signal handling), consent ([`confirm`]),
//! the file the values are persisted to ([`persist_file`]), the journal and lock ([`journal`]), the
//! transaction that writes, reads back and restores ([`transaction`]), and the text shown on the
//! way ([`show`]). The commands in `crate::cmd` only glue these together.

pub(crate) mod confirm;
pub(crate) mod journal;
pub(crate) mod persist_file;
pub(crate) mod preflight;
pub(crate) mod show;
pub(crate) mod transaction;

use crate::error::{Error, Result};
use crate::inspect::Inspection;
use crate::ports::PortRange;
use crate::profile::Profile;
use crate::root::Root;
use crate::rules::{self, Finding, Thresholds};
use crate::sysctl::keys::spec_of;
use crate::sysctl::{SysctlKey, fold_whitespace};

/// One key to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub key: SysctlKey,
    pub current: String,
    pub new: String,
    pub why: String,
    pub risk: String,
}

/// The changes an apply would make, and where they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// `profile NAME` or `recommended`.
    pub source: String,
    pub changes: Vec<Change>,
}

impl Plan {
    /// The plan for findings that name a key and a value to set: the first finding per key wins
    /// (findings come most severe first), and keys already at that value are left out.
    /// `why` gives the reason to show for a finding (a profile's `why` rather than the message).
    pub(crate) fn from_findings(source: &str, findings: &[Finding], why: impl Fn(&Finding) -> String) -> Result<Plan> {
        let mut changes: Vec<Change> = Vec::new();
        for f in findings {
            let (Some(key), Some(current), Some(new)) = (&f.key, &f.current, &f.recommended) else { continue };
            if fold_whitespace(current) == fold_whitespace(new) || changes.iter().any(|c| c.key.as_str() == key) {
                continue;
            }
            changes.push(Change {
                key: SysctlKey::parse(key)?,
                current: current.clone(),
                new: fold_whitespace(new),
                why: why(f),
                risk: fold_whitespace(&f.risk),
            });
        }
        Ok(Plan { source: source.to_string(), changes })
    }

    /// Refuses what the kernel would refuse, before anything is written: values outside a key's
    /// range, and a port range below the unprivileged port start (current or new).
    pub(crate) fn check(&self, current_value: impl Fn(&str) -> Option<String>) -> Result<()> {
        let refuse = |key: &SysctlKey, problem: String| Error::Refused { key: key.to_string(), problem };
        for change in &self.changes {
            if let Some(spec) = spec_of(change.key.as_str()) {
                spec.check_value(&change.new).map_err(|p| refuse(&change.key, p))?;
                if spec.read_only {
                    return Err(refuse(&change.key, "the kernel does not allow writing it".into()));
                }
            }
        }
        let after = |key: &str| {
            self.changes.iter().find(|c| c.key.as_str() == key).map(|c| c.new.clone()).or_else(|| current_value(key))
        };
        if let (Some(range), Some(start)) =
            (after("net.ipv4.ip_local_port_range"), after("net.ipv4.ip_unprivileged_port_start"))
            && let (Ok(range), Ok(start)) = (PortRange::parse(&range), start.parse::<i64>())
            && range.starts_below(start)
        {
            let key = SysctlKey::parse("net.ipv4.ip_local_port_range")?;
            return Err(refuse(
                &key,
                format!("{range} would start below ip_unprivileged_port_start {start}, which the kernel refuses"),
            ));
        }
        Ok(())
    }

    /// The changes in the order to write them: the kernel checks ip_local_port_range against
    /// ip_unprivileged_port_start on each write, so a lowered start goes first and a raised one last.
    pub(crate) fn write_order(&self) -> Vec<&Change> {
        let start = "net.ipv4.ip_unprivileged_port_start";
        let lowering = self
            .changes
            .iter()
            .find(|c| c.key.as_str() == start)
            .is_some_and(|c| c.new.parse::<i64>().ok() < c.current.parse::<i64>().ok());
        let mut ordered: Vec<&Change> = self.changes.iter().collect();
        ordered.sort_by_key(|c| match (c.key.as_str() == start, lowering) {
            (true, true) => 0,
            (true, false) => 2,
            (false, _) => 1,
        });
        ordered
    }

    /// Keeps only the changes at these indexes (from a multi-select).
    pub(crate) fn select(&mut self, indexes: &[usize]) {
        let mut index = 0;
        self.changes.retain(|_| {
            let keep = indexes.contains(&index);
            index += 1;
            keep
        });
    }
}

impl Plan {
    /// The plan that meets `profile` on the inspected system: one change per unmet setting that has
    /// a value to set, with the setting's own `why`.
    pub(crate) fn from_profile(profile: &Profile, inspection: &Inspection) -> Result<Plan> {
        let (findings, _) = crate::profile::evaluate(profile, inspection);
        let unmet: Vec<Finding> = findings.into_iter().filter(|f| f.id.starts_with("profile.")).collect();
        Plan::from_findings(&format!("profile {}", profile.name), &unmet, |f| {
            let setting = f.key.as_ref().and_then(|k| profile.settings.get(k));
            setting.map_or_else(|| f.message.clone(), |s| fold_whitespace(&s.why))
        })
    }

    /// The plan of the audit's recommendations for the system beneath `root` (for `apply
    /// --recommended` and `export --recommended`), checked against the current values.
    pub(crate) fn recommended(root: &Root) -> Result<Plan> {
        let inspection = crate::inspect::evidence::read_default(root, &[])?;
        let findings = rules::evaluate(&inspection, &Thresholds::default());
        let plan = Plan::from_findings("recommended", &findings, |f| f.message.clone())?;
        plan.check(|key| inspection.settings.get(key).map(str::to_string))?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests;
