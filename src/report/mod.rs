//! The one report model of an audit, and its renderers. Everything that prints a report takes a
//! [`Report`] and a writer; nothing here reads the system.

pub(crate) mod fit;
pub(crate) mod human;
pub(crate) mod prometheus;
pub(crate) mod sweep;

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::inspect::Inspection;
use crate::inspect::evidence::OtherNamespaces;
use crate::model::churn::Rates;
use crate::model::table::SocketSummary;
use crate::profile::Profile;
use crate::rules::{self, Finding, Severity, Thresholds};
use crate::sysctl::keys::Settings;

/// Version of the JSON document; raised whenever a field changes meaning or disappears.
pub(crate) const SCHEMA_VERSION: u32 = 6;

/// How a report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// A readable report for people.
    Human,
    /// One JSON object (documented in docs/json-schema.md).
    Json,
    /// Prometheus text format for the node_exporter textfile collector (audit only).
    Prometheus,
}

/// The sysctl.d files, in the order each tool applies them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct SysctlDFiles {
    pub systemd: Vec<String>,
    pub procps: Vec<String>,
}

/// Which profile an audit used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ProfileSummary {
    pub name: String,
    /// `built-in` or the file.
    pub source: String,
    /// The profile, then the profiles it extends.
    pub chain: Vec<String>,
}

/// An audit's result: the evidence and what the rules made of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Report {
    pub schema_version: u32,
    /// The twtune version that wrote the report.
    pub twtune_version: &'static str,
    /// The kernel release.
    pub kernel: String,
    /// The profile the host was checked against, if any.
    pub profile: Option<ProfileSummary>,
    pub settings: Settings,
    pub counters: BTreeMap<String, i64>,
    pub sockets: SocketSummary,
    /// The sysctl configuration files each boot order reads, in order (`config` in JSON, as
    /// documented).
    #[serde(rename = "config")]
    pub sysctl_d: SysctlDFiles,
    /// Connection tracking, where `nf_conntrack` is loaded; `null` where it is not.
    pub conntrack: Option<crate::inspect::conntrack::Conntrack>,
    /// The rule thresholds in force (the built-in ones, or a profile's).
    pub thresholds: Thresholds,
    /// With `--sample`: rates over the interval; `null` otherwise.
    pub rates: Option<Rates>,
    /// With `--sample`: the failed connect() and bind() calls of the window (`method`
    /// `tracepoints`), or why they were not traced (`untraced`); `null` otherwise.
    pub tracing: Option<crate::model::failures::Tracing>,
    pub findings: Vec<Finding>,
    /// Things read with trouble; the audit went on without them.
    pub warnings: Vec<String>,
    /// How many other network namespaces the host has (`--all-netns` audits them); `null` for an
    /// offline tree and within a sweep.
    pub other_namespaces: Option<OtherNamespaces>,
}

impl Report {
    /// The audit's verdict on an inspection: the built-in rules (with the profile's thresholds),
    /// then the profile's own findings and warnings, most severe first.
    pub(crate) fn judge(mut inspection: Inspection, profile: Option<Profile>, rates: Option<Rates>) -> Report {
        let thresholds = profile.as_ref().map(Profile::thresholds).unwrap_or_default();
        let mut findings = rules::evaluate(&inspection, &thresholds);
        let summary = profile.map(|profile| {
            let (unmet, warnings) = crate::profile::evaluate(&profile, &inspection);
            findings.extend(unmet);
            inspection.warnings.extend(warnings);
            ProfileSummary { name: profile.name, source: profile.source, chain: profile.chain }
        });
        rules::sort_findings(&mut findings);
        Report::new(inspection, findings, summary, thresholds, rates)
    }

    /// Assembles a report from an inspection and the findings about it.
    fn new(
        inspection: Inspection,
        findings: Vec<Finding>,
        profile: Option<ProfileSummary>,
        thresholds: Thresholds,
        rates: Option<Rates>,
    ) -> Report {
        let (systemd, procps) = inspection.sysctl_d.file_lists();
        Report {
            sysctl_d: SysctlDFiles { systemd, procps },
            thresholds,
            rates,
            schema_version: SCHEMA_VERSION,
            twtune_version: env!("CARGO_PKG_VERSION"),
            kernel: inspection.kernel,
            profile,
            settings: inspection.settings,
            counters: inspection.counters,
            sockets: inspection.sockets,
            conntrack: inspection.conntrack,
            tracing: inspection.tracing,
            findings,
            warnings: inspection.warnings,
            other_namespaces: None,
        }
    }

    /// Whether a finding reaches `threshold` (`--fail-on`; `None`: never).
    pub(crate) fn fails(&self, threshold: Option<Severity>) -> bool {
        threshold.is_some_and(|threshold| self.worst().is_some_and(|worst| worst >= threshold))
    }

    /// The most severe finding, if any.
    pub(crate) fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Findings per severity, most severe first, severities with none left out.
    pub(crate) fn severity_counts(&self) -> Vec<(Severity, usize)> {
        [Severity::Crit, Severity::Warn, Severity::Info]
            .into_iter()
            .map(|s| (s, self.findings.iter().filter(|f| f.severity == s).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Writes the report in `format`.
    pub(crate) fn render(&self, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
        match format {
            Format::Human => human::render(self, out),
            Format::Json => {
                crate::json::to_writer_pretty(&mut *out, self)?;
                writeln!(out)
            }
            Format::Prometheus => prometheus::render(self, out),
        }
    }
}
