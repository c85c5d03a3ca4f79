//! The report as node_exporter textfile-collector metrics (Prometheus text exposition format
//! 0.0.4): TIME_WAIT totals and by direction, the fullest buckets, key settings, kernel counters,
//! finding counts by severity and, with `--sample`, rates.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::report::Report;
use crate::rules::Severity;

/// Kernel values that go up and down (so must not be typed counter).
const GAUGES: &[&str] = &["CurrEstab"];

/// Escapes a label value: backslash, double quote and newline.
/// Escapes a label value as the text format wants (backslash, double quote, line feed); any other
/// control character from a file (a carriage return, an escape) is shown as `?`.
fn label(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    escaped.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// One metric family: HELP, TYPE, then its samples (name suffix is empty for plain samples).
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(String, f64)>,
}

impl Family<'_> {
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
    let mut merged: Vec<Family<'static>> = Vec::new();
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

/// The metric families of one report, each sample carrying `scope` first.
fn families(report: &Report, scope: &[(&str, String)]) -> Vec<Family<'static>> {
    let scoped = |pairs: &[(&str, &str)]| -> String {
        let mut all: Vec<(&str, &str)> = scope.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(pairs);
        labels(&all)
    };
    let labels = scoped;
    let s = &report.sockets;
    let bucket_labels =
        |b: &crate::inspect::sockets::Bucket| labels(&[("local_ip", &b.local_ip), ("remote", &b.remote)]);
    let mut families = vec![
        Family {
            name: "twtune_info",
            kind: "gauge",
            help: "Always 1; the labels name the twtune version and the kernel release.",
            samples: vec![(labels(&[("version", report.twtune_version), ("kernel", &report.kernel)]), 1.0)],
        },
        Family {
            name: "twtune_time_wait_total",
            kind: "gauge",
            help: "TCP sockets in TIME_WAIT.",
            samples: vec![(labels(&[]), s.time_wait.total as f64)],
        },
        Family {
            name: "twtune_time_wait_sockets",
            kind: "gauge",
            help: "TIME_WAIT sockets by direction: outbound (this host closed first; each holds an ephemeral port), inbound (server side; memory only) or without_listener (a stopped server's port outside the range; no ephemeral port).",
            samples: vec![
                (labels(&[("direction", "outbound")]), s.time_wait.outbound as f64),
                (labels(&[("direction", "inbound")]), s.time_wait.inbound as f64),
                (labels(&[("direction", "without_listener")]), s.time_wait.without_listener as f64),
            ],
        },
        Family {
            name: "twtune_tcp_sockets",
            kind: "gauge",
            help: "TCP sockets by state.",
            samples: s.states.iter().map(|(state, n)| (labels(&[("state", state)]), *n as f64)).collect(),
        },
        Family {
            name: "twtune_ephemeral_usable_ports",
            kind: "gauge",
            help: "Ephemeral ports connect() can hand out per (local IP, remote IP, remote port): ip_local_port_range minus reserved ports and listeners in it.",
            samples: vec![(labels(&[]), f64::from(s.ephemeral.usable_ports))],
        },
        Family {
            name: "twtune_bucket_sockets",
            kind: "gauge",
            help: "Sockets holding an ephemeral port toward one destination, for the fullest buckets.",
            samples: s.buckets.iter().map(|b| (bucket_labels(b), f64::from(b.count))).collect(),
        },
        Family {
            name: "twtune_bucket_held_ports",
            kind: "gauge",
            help: "Ports a destination bucket holds: its sockets except the TIME_WAIT ones connect() may take over now.",
            samples: s.buckets.iter().map(|b| (bucket_labels(b), f64::from(b.held))).collect(),
        },
        Family {
            name: "twtune_bucket_available_ports",
            kind: "gauge",
            help: "Ports connect() can still get toward one destination (0 = connect() fails with EADDRNOTAVAIL now).",
            samples: s.buckets.iter().map(|b| (bucket_labels(b), f64::from(b.available))).collect(),
        },
        Family {
            name: "twtune_bucket_usage_ratio",
            kind: "gauge",
            help: "Share of the usable ephemeral ports a destination bucket holds (1 = connect() fails with EADDRNOTAVAIL).",
            samples: s
                .buckets
                .iter()
                .map(|b| {
                    (
                        bucket_labels(b),
                        if b.usable_ports == 0 { 1.0 } else { f64::from(b.held) / f64::from(b.usable_ports) },
                    )
                })
                .collect(),
        },
        Family {
            name: "twtune_local_address_available_ports",
            kind: "gauge",
            help: "Ports bind(addr, 0) can still get on one local address (0 = bind() fails with EADDRINUSE now).",
            samples: s
                .local_ports
                .iter()
                .map(|l| (labels(&[("local_ip", &l.local_ip)]), f64::from(l.available)))
                .collect(),
        },
        Family {
            name: "twtune_bucket_seconds_to_exhaustion",
            kind: "gauge",
            help: "With --sample: seconds until a growing bucket has no usable port left at the measured rate.",
            samples: s.buckets.iter().filter_map(|b| Some((bucket_labels(b), b.seconds_to_exhaustion?))).collect(),
        },
        Family {
            name: "twtune_sysctl",
            kind: "gauge",
            help: "Integer net sysctls the audit reads.",
            samples: report
                .settings
                .0
                .iter()
                .filter_map(|(key, value)| {
                    Some((labels(&[("key", key)]), value.as_deref()?.parse::<i64>().ok()? as f64))
                })
                .collect(),
        },
        Family {
            name: "twtune_kernel_counter_total",
            kind: "counter",
            help: "TCP counters of the kernel (TcpExt, Tcp), since boot or since the namespace was created.",
            samples: report
                .counters
                .iter()
                .filter(|(name, _)| !name.starts_with("sockstat_") && !GAUGES.contains(&name.as_str()))
                .map(|(name, v)| (labels(&[("name", name)]), *v as f64))
                .collect(),
        },
        Family {
            name: "twtune_kernel_gauge",
            kind: "gauge",
            help: "TCP gauges of the kernel: CurrEstab (established and close-wait connections) and the sockstat TCP line.",
            samples: report
                .counters
                .iter()
                .filter(|(name, _)| name.starts_with("sockstat_") || GAUGES.contains(&name.as_str()))
                .map(|(name, v)| (labels(&[("name", name)]), *v as f64))
                .collect(),
        },
        Family {
            name: "twtune_findings",
            kind: "gauge",
            help: "Findings of the audit by severity.",
            samples: [Severity::Crit, Severity::Warn, Severity::Info]
                .iter()
                .map(|sev| {
                    (
                        labels(&[("severity", sev.name())]),
                        report.findings.iter().filter(|f| f.severity == *sev).count() as f64,
                    )
                })
                .collect(),
        },
    ];
    if let Some(range) =
        report.settings.get("net.ipv4.ip_local_port_range").and_then(|r| crate::ports::PortRange::parse(r).ok())
    {
        families.push(Family {
            name: "twtune_ip_local_port_range",
            kind: "gauge",
            help: "Bounds of net.ipv4.ip_local_port_range.",
            samples: vec![
                (labels(&[("bound", "low")]), f64::from(range.low)),
                (labels(&[("bound", "high")]), f64::from(range.high)),
            ],
        });
    }
    if let Some(r) = &report.rates {
        families.push(Family {
            name: "twtune_rate_per_second",
            kind: "gauge",
            help: "With --sample: events per second over the sampling interval.",
            samples: [
                ("active_opens", r.active_opens_per_sec),
                ("passive_opens", r.passive_opens_per_sec),
                ("time_wait_entries", r.time_wait_entries_per_sec),
                ("time_wait_overflows", r.overflow_per_sec),
                ("time_wait_reused", r.time_wait_reused_per_sec),
            ]
            .iter()
            .map(|(name, v)| (labels(&[("event", name)]), *v))
            .collect(),
        });
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
