//! The report as node_exporter textfile-collector metrics (Prometheus text exposition format
//! 0.0.4), named after the Prometheus naming guide: one quantity per metric, units and `_total` at
//! the end, counters as counters. What node_exporter already exports for the host (sockstat, most
//! of netstat) is left to it, but for the TIME_WAIT, connect and SYN retransmit counters, which
//! twtune exports per network namespace (node_exporter sees only its own). What only twtune knows
//! is here: TIME_WAIT by direction, the destination buckets, the bind() budget, source-NAT buckets,
//! findings. The list is in the README.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::report::Report;
use crate::rules::Severity;

/// Kernel counters exported per namespace: (kernel name, metric, help).
const COUNTERS: &[(&str, &str, &str)] = &[
    (
        "TW",
        "twtune_tcp_time_wait_entered_total",
        "TCP connections that entered TIME_WAIT (TcpExt TW; node_netstat_TcpExt_TW for the host).",
    ),
    ("TWRecycled", "twtune_tcp_time_wait_reused_total", "TIME_WAIT tuples connect() took over (TcpExt TWRecycled)."),
    (
        "TCPTimeWaitOverflow",
        "twtune_tcp_time_wait_overflows_total",
        "Connections that skipped TIME_WAIT because the table was full (TcpExt TCPTimeWaitOverflow).",
    ),
    ("ActiveOpens", "twtune_tcp_active_opens_total", "connect() calls that sent a SYN (Tcp ActiveOpens)."),
    ("PassiveOpens", "twtune_tcp_passive_opens_total", "Connections accepted (Tcp PassiveOpens)."),
    (
        "TCPSynRetrans",
        "twtune_tcp_syn_retransmits_total",
        "SYNs (and listeners' SYN-ACKs) sent again after a timeout, each one a connect that waited 1 s or more (TcpExt TCPSynRetrans).",
    ),
];

/// Escapes a label value as the text format wants (backslash, double quote, line feed); any other
/// control character from a file (a carriage return, an escape) is shown as `?`.
fn label(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    escaped.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// One metric family: HELP, TYPE, then its samples.
struct Family {
    name: String,
    kind: &'static str,
    help: String,
    samples: Vec<(String, f64)>,
}

fn gauge(name: &str, help: &str, samples: Vec<(String, f64)>) -> Family {
    Family { name: name.to_string(), kind: "gauge", help: help.to_string(), samples }
}

impl Family {
    fn render(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{}{labels} {value}", self.name);
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
    format!("{{{}}}", inner.join(","))
}

/// Writes the metrics of `report`.
pub(crate) fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    render_all(&[(report, Vec::new())], out)
}

/// Writes the metrics of several reports, each sample labelled with its report's `scope` labels
/// (`netns`, ...), every family once (the text format wants a family's samples together).
pub(crate) fn render_all(reports: &[(&Report, Vec<(&str, String)>)], out: &mut dyn Write) -> io::Result<()> {
    let mut merged: Vec<Family> = Vec::new();
    for (report, scope) in reports {
        for family in families(report, scope) {
            match merged.iter_mut().find(|f| f.name == family.name) {
                Some(existing) => existing.samples.extend(family.samples),
                None => merged.push(family),
            }
        }
    }
    let mut text = String::new();
    merged.iter().for_each(|f| f.render(&mut text));
    out.write_all(text.as_bytes())
}

/// A sysctl key as a metric name: `twtune_sysctl_net_ipv4_tcp_tw_reuse`, as node_exporter's sysctl
/// collector names them (`node_sysctl_...`).
fn sysctl_metric(key: &str) -> Option<String> {
    let name: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_')).then(|| format!("twtune_sysctl_{name}"))
}

/// Makes a sample's labels from its own pairs, the report's scope first.
type Labeller<'a> = dyn Fn(&[(&str, &str)]) -> String + 'a;

/// The metric families of one report, each sample carrying `scope` first.
fn families(report: &Report, scope: &[(&str, String)]) -> Vec<Family> {
    let labels = |pairs: &[(&str, &str)]| -> String {
        let mut all: Vec<(&str, &str)> = scope.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(pairs);
        labels(&all)
    };
    let mut families = socket_families(report, &labels);
    families.extend(bucket_families(report, &labels));
    families.push(findings_family(report, &labels));
    families.extend(setting_families(report, &labels));
    families.extend(counter_families(report, &labels));
    families.extend(conntrack_families(report, &labels));
    families
}

/// The families of the whole namespace's sockets: the twtune info, TIME_WAIT by direction, the
/// usable ephemeral ports.
fn socket_families(report: &Report, labels: &Labeller) -> Vec<Family> {
    let s = &report.sockets;
    vec![
        gauge(
            "twtune_info",
            "Always 1; the labels name the twtune version and the kernel release.",
            vec![(labels(&[("version", report.twtune_version), ("kernel", &report.kernel)]), 1.0)],
        ),
        gauge(
            "twtune_time_wait_sockets",
            "TIME_WAIT sockets by direction: outbound (this host closed first; each holds an ephemeral port), inbound (server side; memory only) or without_listener (a stopped server's port outside the range; no ephemeral port). Their sum is node_sockstat_TCP_tw.",
            vec![
                (labels(&[("direction", "outbound")]), s.time_wait.outbound as f64),
                (labels(&[("direction", "inbound")]), s.time_wait.inbound as f64),
                (labels(&[("direction", "without_listener")]), s.time_wait.without_listener as f64),
            ],
        ),
        gauge(
            "twtune_ephemeral_usable_ports",
            "Ephemeral ports connect() can hand out per (local IP, remote IP, remote port): ip_local_port_range minus reserved ports and listeners in it.",
            vec![(labels(&[]), f64::from(s.ephemeral.usable_ports))],
        ),
    ]
}

/// The families of the destination buckets and of the local addresses' bind() budgets.
fn bucket_families(report: &Report, labels: &Labeller) -> Vec<Family> {
    let s = &report.sockets;
    let bucket = |b: &crate::model::connect::Bucket| labels(&[("local_ip", &b.local_ip), ("remote", &b.remote)]);
    let per_bucket = |value: &dyn Fn(&crate::model::connect::Bucket) -> Option<f64>| -> Vec<(String, f64)> {
        s.buckets.iter().filter_map(|b| Some((bucket(b), value(b)?))).collect()
    };
    vec![
        gauge(
            "twtune_bucket_sockets",
            "Sockets holding an ephemeral port toward one destination, for the fullest buckets.",
            per_bucket(&|b| Some(f64::from(b.count))),
        ),
        gauge(
            "twtune_bucket_held_ports",
            "Ports a destination bucket holds: its sockets except the TIME_WAIT ones connect() may take over now.",
            per_bucket(&|b| Some(f64::from(b.held))),
        ),
        gauge(
            "twtune_bucket_available_ports",
            "Ports connect() can still get toward one destination (0 = connect() fails with EADDRNOTAVAIL now).",
            per_bucket(&|b| Some(f64::from(b.available))),
        ),
        gauge(
            "twtune_bucket_usage_ratio",
            "Share of the usable ephemeral ports a destination cannot get (1 = connect() fails with EADDRNOTAVAIL).",
            per_bucket(&|b| Some(b.usage_pct / 100.0)),
        ),
        gauge(
            "twtune_bucket_exhaustion_seconds",
            "With --sample: seconds until a growing bucket has no usable port left at the measured rate.",
            per_bucket(&|b| b.seconds_to_exhaustion),
        ),
        gauge(
            "twtune_local_address_available_ports",
            "Ports bind(addr, 0) can still get on one local address (0 = bind() fails with EADDRINUSE now).",
            s.local_ports.iter().map(|l| (labels(&[("local_ip", &l.local_ip)]), f64::from(l.available))).collect(),
        ),
    ]
}

/// The family of the audit's findings, counted by severity.
fn findings_family(report: &Report, labels: &Labeller) -> Family {
    gauge(
        "twtune_findings",
        "Findings of the audit by severity.",
        [Severity::Crit, Severity::Warn, Severity::Info]
            .iter()
            .map(|sev| {
                let n = report.findings.iter().filter(|f| f.severity == *sev).count();
                (labels(&[("severity", sev.name())]), n as f64)
            })
            .collect(),
    )
}

/// The families of the settings: the bounds of the ephemeral port range, then one per integer
/// sysctl.
fn setting_families(report: &Report, labels: &Labeller) -> Vec<Family> {
    let mut families = Vec::new();
    if let Some(range) =
        report.settings.get("net.ipv4.ip_local_port_range").and_then(|r| crate::ports::PortRange::parse(r).ok())
    {
        families.push(gauge(
            "twtune_ephemeral_port_range_low",
            "The low bound of net.ipv4.ip_local_port_range.",
            vec![(labels(&[]), f64::from(range.low))],
        ));
        families.push(gauge(
            "twtune_ephemeral_port_range_high",
            "The high bound of net.ipv4.ip_local_port_range.",
            vec![(labels(&[]), f64::from(range.high))],
        ));
    }
    // One metric per integer setting: they are unrelated quantities.
    for (key, value) in &report.settings.0 {
        let (Some(name), Some(value)) = (sysctl_metric(key), value.as_deref().and_then(|v| v.parse::<i64>().ok()))
        else {
            continue;
        };
        families
            .push(Family { help: format!("The sysctl {key}."), ..gauge(&name, "", vec![(labels(&[]), value as f64)]) });
    }
    families
}

/// The families of the kernel counters in [`COUNTERS`] the namespace has.
fn counter_families(report: &Report, labels: &Labeller) -> Vec<Family> {
    let mut families = Vec::new();
    for (counter, name, help) in COUNTERS {
        if let Some(value) = report.counters.get(*counter) {
            families.push(Family { kind: "counter", ..gauge(name, help, vec![(labels(&[]), *value as f64)]) });
        }
    }
    families
}

/// The families of connection tracking: entries, their limit, and the source-NAT buckets when the
/// table was read; none where nf_conntrack is not loaded.
fn conntrack_families(report: &Report, labels: &Labeller) -> Vec<Family> {
    let mut families = Vec::new();
    let Some(ct) = &report.conntrack else {
        return families;
    };
    if let Some(count) = ct.count {
        families.push(gauge(
            "twtune_conntrack_entries",
            "Connection-tracking entries of the namespace (nf_conntrack_count).",
            vec![(labels(&[]), count as f64)],
        ));
    }
    if let Some(max) = ct.max {
        families.push(gauge(
            "twtune_conntrack_entries_limit",
            "nf_conntrack_max: the limit each namespace's entries are held against, one value for the host.",
            vec![(labels(&[]), max as f64)],
        ));
    }
    if let Some(dump) = &ct.table {
        let nat = |b: &crate::model::nat::SnatBucket| {
            labels(&[("source_ip", &b.source_ip), ("remote", &b.remote), ("protocol", b.protocol)])
        };
        families.push(gauge(
            "twtune_snat_bucket_available_ports",
            "New flows toward one destination from one translated address that the NAT admits to a client waiting through its SYN retransmissions: the free ports and the TIME_WAIT entries new flows evict (Linux 6.5+).",
            dump.snat_buckets.iter().map(|b| (nat(b), f64::from(b.available))).collect(),
        ));
        families.push(gauge(
            "twtune_snat_bucket_free_ports",
            "Source-NAT ports no entry holds toward one destination from one translated address: what a new flow gets for sure.",
            dump.snat_buckets.iter().map(|b| (nat(b), f64::from(b.free))).collect(),
        ));
        families.push(gauge(
            "twtune_snat_bucket_usage_ratio",
            "Share of the NAT's port range a source-NAT bucket uses.",
            dump.snat_buckets.iter().map(|b| (nat(b), b.usage_pct / 100.0)).collect(),
        ));
    }
    families
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label("x\ry\u{1b}[2J"), "x?y?[2J");
        assert_eq!(labels(&[("k", "v"), ("x", "[::1]:443")]), "{k=\"v\",x=\"[::1]:443\"}");
        assert_eq!(labels(&[]), "");
    }
}
