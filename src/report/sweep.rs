//! The report of `twtune audit --all-netns`: one audit [`Report`] per network namespace, worst
//! first, and a summary across them, rendered as a table and, per namespace, its fullest bucket
//! with who holds it, its fullest source-NAT bucket and its findings (human), one JSON document, or
//! the metrics of every namespace labelled with it (Prometheus).

use std::io::{self, Write};

use anstyle::Style;
use serde::Serialize;

use crate::inspect::netns::Namespace;
use crate::inspect::sweep::Note;
use crate::model::connect::Bucket;
use crate::model::failures::Tracing;
use crate::model::nat::SnatBucket;
use crate::report::fit::{columns_that_fit, width};
use crate::report::{Format, Report, SCHEMA_VERSION, human, prometheus};
use crate::rules::Severity;

/// Namespaces without findings listed in the human table before the rest are only counted.
const QUIET_ROWS: usize = 20;

/// One namespace and its audit.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct NamespaceReport {
    pub netns: Namespace,
    pub report: Report,
}

/// Across every namespace.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct SweepSummary {
    /// Namespaces audited.
    pub namespaces: usize,
    /// Namespaces found but not audited (they disappeared, or reading failed): see `notes`.
    pub not_audited: usize,
    pub crit: usize,
    pub warn: usize,
    pub info: usize,
    /// The worst finding of any namespace; `null` when there is none.
    pub worst: Option<Severity>,
    pub time_wait_outbound: u64,
    pub time_wait_inbound: u64,
    /// The fullest destination bucket of any namespace.
    pub fullest: Option<Fullest>,
    /// What happened to namespaces that were not audited, and other notes on the sweep.
    pub notes: Vec<String>,
    /// Namespaces owned by a user namespace other than the host's (`netns.user_namespace`).
    pub user_namespaces: usize,
    /// Whether their findings count toward the exit status (`false` with `--ignore-user-netns`).
    pub user_namespaces_counted: bool,
}

/// The fullest bucket of a sweep.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Fullest {
    pub netns: u64,
    pub local_ip: String,
    pub remote: String,
    pub usage_pct: f64,
}

/// The sweep's report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SweepReport {
    pub schema_version: u32,
    pub twtune_version: &'static str,
    /// Worst first: by worst finding, then by the usage of the fullest bucket.
    pub namespaces: Vec<NamespaceReport>,
    pub summary: SweepSummary,
}

fn fullest_usage(report: &Report) -> f64 {
    report.sockets.buckets.first().map_or(0.0, |b| b.usage_pct)
}

impl SweepReport {
    /// Orders the namespaces worst first and sums them up.
    pub(crate) fn new(mut namespaces: Vec<NamespaceReport>, notes: Vec<Note>) -> SweepReport {
        namespaces.sort_by(|a, b| {
            b.report
                .worst()
                .cmp(&a.report.worst())
                .then(fullest_usage(&b.report).total_cmp(&fullest_usage(&a.report)))
                .then(a.netns.inode.cmp(&b.netns.inode))
        });
        let mut summary = SweepSummary {
            namespaces: namespaces.len(),
            user_namespaces: namespaces.iter().filter(|ns| ns.netns.user_namespace.is_users()).count(),
            user_namespaces_counted: true,
            ..SweepSummary::default()
        };
        summary.not_audited = notes.iter().filter(|n| matches!(n, Note::Disappeared { .. })).count();
        summary.notes = notes.iter().map(ToString::to_string).collect();
        for ns in &namespaces {
            for finding in &ns.report.findings {
                match finding.severity {
                    Severity::Crit => summary.crit += 1,
                    Severity::Warn => summary.warn += 1,
                    Severity::Info => summary.info += 1,
                }
            }
            summary.worst = summary.worst.max(ns.report.worst());
            summary.time_wait_outbound += ns.report.sockets.time_wait.outbound;
            summary.time_wait_inbound += ns.report.sockets.time_wait.inbound;
            if let Some(bucket) = ns.report.sockets.buckets.first()
                && summary.fullest.as_ref().is_none_or(|f| bucket.usage_pct > f.usage_pct)
            {
                {
                    summary.fullest = Some(Fullest {
                        netns: ns.netns.inode,
                        local_ip: bucket.local_ip.clone(),
                        remote: bucket.remote.clone(),
                        usage_pct: bucket.usage_pct,
                    });
                }
            }
        }
        SweepReport { schema_version: SCHEMA_VERSION, twtune_version: env!("CARGO_PKG_VERSION"), namespaces, summary }
    }

    /// `--ignore-user-netns`: the findings of namespaces owned by users do not count toward the
    /// exit status.
    pub(crate) fn ignoring_user_namespaces(mut self, ignore: bool) -> SweepReport {
        self.summary.user_namespaces_counted = !ignore;
        self
    }

    /// Whether the findings of namespace `ns` count toward the exit status.
    fn counted(&self, ns: &NamespaceReport) -> bool {
        self.summary.user_namespaces_counted || !ns.netns.user_namespace.is_users()
    }

    /// Whether a finding of any namespace that counts reaches `threshold` (`--fail-on`).
    pub(crate) fn fails(&self, threshold: Option<Severity>) -> bool {
        self.namespaces.iter().any(|ns| self.counted(ns) && ns.report.fails(threshold))
    }

    /// Writes the sweep in `format`.
    pub(crate) fn render(&self, format: Format, out: &mut dyn Write) -> io::Result<()> {
        match format {
            Format::Human => self.human(out),
            Format::Json => {
                crate::json::to_writer_pretty(&mut *out, self)?;
                writeln!(out)
            }
            Format::Prometheus => {
                let scoped: Vec<(&Report, Vec<(&str, String)>)> = self
                    .namespaces
                    .iter()
                    .map(|ns| {
                        let mut scope = vec![("netns", ns.netns.inode.to_string())];
                        // Not a process's name: that would start a new series whenever it restarts.
                        if let Some(name) = ns.netns.stable_name() {
                            scope.push(("netns_name", name));
                        }
                        if let Some(id) = ns.netns.container.as_ref().and_then(|c| c.short_id.clone()) {
                            scope.push(("container", id));
                        }
                        if let Some(uid) = ns.netns.container.as_ref().and_then(|c| c.pod_uid.clone()) {
                            scope.push(("pod_uid", uid));
                        }
                        (&ns.report, scope)
                    })
                    .collect();
                prometheus::render_all(&scoped, out)
            }
        }
    }

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.summary;
        let bold = Style::new().bold();
        let with_findings = self.namespaces.iter().filter(|ns| !ns.report.findings.is_empty()).count();
        writeln!(
            out,
            "{bold}twtune audit --all-netns{bold:#}  {} network namespace{}, {with_findings} with findings{}",
            s.namespaces,
            if s.namespaces == 1 { "" } else { "s" },
            counts(s.crit, s.warn, s.info).map(|c| format!(": {c}")).unwrap_or_default(),
        )?;
        writeln!(out)?;
        let header =
            ["namespace", "name or container", "TW out", "TW in", "fullest bucket", "used", "conntrack", "findings"];
        let (shown, quiet_hidden) = self.shown();
        let rows: Vec<Vec<String>> = shown.iter().map(|ns| namespace_row(ns, self.counted(ns))).collect();
        // The conntrack count, the TIME_WAIT split and the fullest bucket's name go before the
        // namespace, its name, how full it is and its findings.
        table(out, &header, &rows, &[6, 3, 2, 4])?;
        if quiet_hidden > 0 {
            writeln!(out, "  and {quiet_hidden} more namespaces without findings (all are in --format json)")?;
        }
        if s.user_namespaces > 0 {
            let counted = if s.user_namespaces_counted {
                "the findings of such namespaces count toward the exit status (--ignore-user-netns leaves them out)"
            } else {
                "the findings of such namespaces do not count toward the exit status (--ignore-user-netns)"
            };
            let text = format!(
                "{} namespace{} owned by a user namespace other than the host's, marked with the uid that owns it: \
                 its owner can make it say anything; {counted}",
                s.user_namespaces,
                if s.user_namespaces == 1 { " is" } else { "s are" },
            );
            human::wrapped(out, "  ", "  ", &text)?;
        }
        self.tracing(out)?;
        for ns in shown {
            namespace_section(ns, self.counted(ns), out)?;
        }
        if !s.notes.is_empty() {
            writeln!(out, "\n{bold}Notes{bold:#}")?;
            for note in &s.notes {
                human::wrapped(out, "  - ", "    ", &crate::error::printable(note))?;
            }
        }
        Ok(())
    }

    /// With `--sample`: one window traced the whole host, and each namespace has the calls of
    /// the processes that were in it. What the window missed is the host's, said once.
    fn tracing(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(tracing) = self.namespaces.iter().find_map(|ns| ns.report.tracing.as_ref()) else { return Ok(()) };
        let f = match tracing {
            Tracing::Untraced { reason } => {
                let text = format!("failed calls: not traced ({})", crate::error::printable(reason));
                return human::wrapped(out, "  ", "    ", &text);
            }
            Tracing::Tracepoints(f) => f,
        };
        let traced = self.namespaces.iter().filter_map(|ns| match &ns.report.tracing {
            Some(Tracing::Tracepoints(f)) => Some((f.connect, f.bind)),
            _ => None,
        });
        let (connect, bind) = traced.fold((0, 0), |(c, b), (nc, nb)| (c + nc, b + nb));
        let text = format!(
            "failed calls (traced over {:.1} s, each given to the namespace its process was in): {connect} \
             connect() with EADDRNOTAVAIL, {bind} bind() with EADDRINUSE",
            f.seconds
        );
        human::wrapped(out, "  ", "    ", &text)?;
        for note in human::notes(f) {
            human::wrapped(out, "  ", "    ", &crate::error::printable(&note))?;
        }
        Ok(())
    }

    /// The namespaces the human table lists, in order: all with findings and the first
    /// [`QUIET_ROWS`] without; and how many without findings are only counted.
    fn shown(&self) -> (Vec<&NamespaceReport>, usize) {
        let mut shown = Vec::new();
        let mut quiet_shown = 0;
        let mut quiet_hidden = 0;
        for ns in &self.namespaces {
            if ns.report.findings.is_empty() {
                if quiet_shown >= QUIET_ROWS {
                    quiet_hidden += 1;
                    continue;
                }
                quiet_shown += 1;
            }
            shown.push(ns);
        }
        (shown, quiet_hidden)
    }
}

/// A namespace of the table under its own heading, when it has anything to show: its fullest
/// bucket and who holds it, its fullest source-NAT bucket, then its findings.
fn namespace_section(ns: &NamespaceReport, counted: bool, out: &mut dyn Write) -> io::Result<()> {
    let r = &ns.report;
    let bucket = r.sockets.buckets.first();
    let snat = r.conntrack.as_ref().and_then(|ct| ct.table.as_ref()?.snat_buckets.first());
    let failed = match &r.tracing {
        Some(Tracing::Tracepoints(f)) if f.connect + f.bind > 0 => Some(f),
        _ => None,
    };
    if r.findings.is_empty() && bucket.is_none() && snat.is_none() && failed.is_none() {
        return Ok(());
    }
    let bold = Style::new().bold();
    writeln!(out, "\n{bold}== net:[{}] {} =={bold:#}", ns.netns.inode, shown_label(ns, counted))?;
    if let Some(b) = bucket {
        fullest_bucket(r, b, out)?;
    }
    if let Some(b) = snat {
        fullest_snat(r, b, out)?;
    }
    if let Some(f) = failed {
        human::traced_counts(f, out)?;
    }
    human::findings_only(r, out)
}

/// `fullest bucket A -> B: held/usable H/U, P % used, N left`, then who holds its live sockets
/// (the single-namespace report's words), or why that is not known.
fn fullest_bucket(r: &Report, b: &Bucket, out: &mut dyn Write) -> io::Result<()> {
    let style = human::usage_style(r, b.usage_pct);
    let bound = r.sockets.ephemeral.bound_ports;
    writeln!(
        out,
        "  fullest bucket {} -> {}: held/usable {}{}, {style}{:.1} % used{style:#}, {} left{}",
        b.local_ip,
        b.remote,
        human::held_usable(b),
        if bound > 0 { format!(" +{bound} bound") } else { String::new() },
        b.usage_pct,
        b.available,
        human::bucket_outlook(b).map(|o| format!(" ({o})")).unwrap_or_default(),
    )?;
    let owners = match (&b.owners, &r.sockets.owners_unavailable) {
        (Some(owners), _) => human::owners_text(owners, b.count > b.time_wait),
        (None, Some(why)) => format!("owners not shown: {why}"),
        (None, None) => "owners not looked up".into(),
    };
    human::wrapped(out, "    ", "      ", &owners)
}

/// `fullest SNAT bucket S -> D tcp: entries/usable E/U, P % used, N left`, then its live and
/// TIME_WAIT entries and the rule it is judged by.
fn fullest_snat(r: &Report, b: &SnatBucket, out: &mut dyn Write) -> io::Result<()> {
    let style = human::usage_style(r, b.usage_pct);
    writeln!(
        out,
        "  fullest SNAT bucket {} -> {} {}: entries/usable {}/{}, {style}{:.1} % used{style:#}, {} left{}",
        b.source_ip,
        b.remote,
        b.protocol,
        b.count,
        b.usable_ports,
        b.usage_pct,
        b.available,
        if b.by_eviction > 0 { format!(" ({} free)", b.free) } else { String::new() },
    )?;
    let detail = format!(
        "{} live, {} TIME_WAIT ({} of them evicted for new flows); judged by {}",
        b.held, b.time_wait, b.by_eviction, b.nat_rule
    );
    human::wrapped(out, "    ", "      ", &detail)
}

/// The human table's row of one namespace: its name, TIME_WAIT, fullest bucket, conntrack entries
/// and findings.
fn namespace_row(ns: &NamespaceReport, counted: bool) -> Vec<String> {
    let r = &ns.report;
    let bucket = r.sockets.buckets.first();
    let severities = r.severity_counts();
    vec![
        format!("net:[{}]", ns.netns.inode),
        shown_label(ns, counted),
        r.sockets.time_wait.outbound.to_string(),
        r.sockets.time_wait.inbound.to_string(),
        bucket.map_or("-".into(), |b| format!("{} -> {}", b.local_ip, b.remote)),
        bucket.map_or("-".into(), |b| format!("{:.1} %", b.usage_pct)),
        r.conntrack.as_ref().and_then(|ct| ct.count).map_or("-".into(), |n| n.to_string()),
        if severities.is_empty() {
            "none".into()
        } else {
            severities.iter().map(|(s, n)| format!("{n} {}", s.name())).collect::<Vec<_>>().join(", ")
        },
    ]
}

/// The namespace's label, printable, with its owner where a user owns it: `pid 7 (sleep) (owned
/// by uid 1000)`, and `, not counted` when its findings do not count toward the exit status.
fn shown_label(ns: &NamespaceReport, counted: bool) -> String {
    let label = crate::error::printable(&ns.netns.label()).into_owned();
    let user = &ns.netns.user_namespace;
    if !user.is_users() {
        return label;
    }
    let owner = user.owner_uid.map_or("a user".to_string(), |uid| format!("uid {uid}"));
    format!("{label} (owned by {owner}{})", if counted { "" } else { ", not counted" })
}

fn counts(crit: usize, warn: usize, info: usize) -> Option<String> {
    let parts: Vec<String> = [(crit, "crit"), (warn, "warn"), (info, "info")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A left-aligned table: namespace tables hold names, which read better aligned left. Where it is
/// wider than the report, the columns of `drop_order` go first, and a line says which; where it
/// still is, the name column (the second) wraps within its cells, so that no line passes the
/// width and no name is cut.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>], drop_order: &[usize]) -> io::Result<()> {
    let mut widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(header[i].len()))
        .collect();
    let kept = columns_that_fit(&widths, drop_order);
    let total = 2 + kept.iter().map(|i| widths[*i] + 2).sum::<usize>() - 2;
    if total > width() && kept.contains(&1) {
        widths[1] = widths[1].saturating_sub(total - width()).max(header[1].len()).max(16);
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = kept.iter().map(|&i| format!("{:<w$}", cells[i], w = widths[i])).collect();
        padded.join("  ").trim_end().to_string()
    };
    let dim = Style::new().dimmed();
    writeln!(out, "  {dim}{}{dim:#}", line(header.iter().map(ToString::to_string).collect()))?;
    for row in rows {
        // The first piece of the name with the row, the others alone in the name's column.
        for (n, piece) in wrap_cell(&row[1], widths[1]).into_iter().enumerate() {
            let cells: Vec<String> = (0..row.len())
                .map(|i| match (i, n) {
                    (1, _) => piece.clone(),
                    (_, 0) => row[i].clone(),
                    _ => String::new(),
                })
                .collect();
            writeln!(out, "  {}", line(cells))?;
        }
    }
    let dropped: Vec<&str> = (0..header.len()).filter(|i| !kept.contains(i)).map(|i| header[i]).collect();
    if !dropped.is_empty() {
        writeln!(out, "  {dim}left out to fit {} columns: {}{dim:#}", width(), dropped.join(", "))?;
    }
    Ok(())
}

/// `text` in pieces of at most `width` characters, broken at spaces where it can be.
fn wrap_cell(text: &str, width: usize) -> Vec<String> {
    let mut pieces = vec![String::new()];
    for word in text.split(' ') {
        let last = pieces.last_mut().expect("one piece");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            pieces.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::TcpState;
    use crate::testing::Host;

    fn sweep() -> SweepReport {
        let quiet = Report::judge(Host::defaults().inspection(), None, None);
        // 95 of 100 ports held toward one destination: critical.
        let full = Host::defaults()
            .set("net.ipv4.ip_local_port_range", "40000 40099")
            .outbound(95, TcpState::Established, 40000, "10.0.0.2:443")
            .inspection();
        let full = Report::judge(full, None, None);
        assert_eq!(full.worst(), Some(Severity::Crit));
        let docker = crate::inspect::cgroup::from_path(&format!("/docker/{}", "ab".repeat(32)));
        SweepReport::new(
            vec![
                NamespaceReport { netns: Namespace::example(1, Some("host"), None, &[1, 2]), report: quiet },
                NamespaceReport { netns: Namespace::example(7, None, docker, &[300]), report: full },
            ],
            vec![Note::Disappeared { inode: 9, label: "blue".into() }, Note::Unreadable { processes: 1 }],
        )
    }

    #[test]
    fn the_worst_namespace_comes_first_and_the_summary_adds_them_up() {
        let sweep = sweep();
        assert_eq!(sweep.namespaces.iter().map(|ns| ns.netns.inode).collect::<Vec<_>>(), vec![7, 1]);
        let s = &sweep.summary;
        assert_eq!((s.namespaces, s.not_audited, s.worst), (2, 1, Some(Severity::Crit)));
        assert_eq!(s.notes[1], "the network namespace of 1 process could not be looked at");
        assert!(s.crit >= 1 && s.time_wait_outbound == 0);
        assert_eq!(s.fullest.as_ref().map(|f| (f.netns, f.remote.as_str())), Some((7, "10.0.0.2:443")));
        assert!(sweep.fails(Some(Severity::Crit)) && !sweep.fails(None));
    }

    #[test]
    fn human_a_table_then_each_namespace_with_findings() {
        let mut out = Vec::new();
        sweep().render(Format::Human, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf-8");
        let table = text.find("name or container").expect("table");
        let docker_row = text.find("docker abababababab").expect("docker row");
        let heading = text.find("== net:[7] docker abababababab ==").expect("its heading");
        assert!(table < docker_row && docker_row < heading, "{text}");
        assert!(
            !text.contains("== net:[1]"),
            "a namespace with no finding and no bucket takes one row, no heading: {text}"
        );
        assert!(text.contains("ports.bucket-exhaustion") && text.contains("disappeared"), "{text}");
    }

    fn human_text(sweep: &SweepReport) -> String {
        let mut out = Vec::new();
        sweep.render(Format::Human, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    /// A NAT's conntrack table whose fullest source-NAT bucket holds 55 of 64512 ports.
    fn nat_table() -> crate::inspect::conntrack::Conntrack {
        use crate::model::nat::{FlowSummary, NatRange};
        let bucket = SnatBucket {
            source_ip: "10.2.0.1".into(),
            remote: "10.2.0.2:80".into(),
            protocol: "tcp",
            count: 55,
            time_wait: 50,
            held: 5,
            usable_ports: 64512,
            free: 64457,
            available: 64507,
            by_eviction: 50,
            first_syn_dropped_pct: None,
            reclaimable: 50,
            usage_pct: 0.1,
            nat_range: NatRange::DEFAULT,
            nat_rule: "iptables-nft ip nat POSTROUTING handle 2: MASQUERADE".into(),
        };
        crate::inspect::conntrack::Conntrack {
            count: Some(55),
            max: Some(262144),
            statistics: Default::default(),
            tcp_timeouts: Default::default(),
            nat_range: NatRange::DEFAULT,
            nat_range_source: "the kernel's default 1024-65535 (no source-NAT rule sets a port range)".into(),
            nat_rules: Vec::new(),
            statistics_growth: None,
            table: Some(FlowSummary {
                entries: 55,
                tcp_states: Default::default(),
                snat_bucket_count: 1,
                snat_buckets: vec![bucket],
                untracked_buckets: 0,
                eviction: Default::default(),
            }),
            table_unavailable: None,
        }
    }

    #[test]
    fn human_each_namespace_shows_its_fullest_bucket_with_its_owner_and_its_fullest_nat_bucket() {
        let mut host = Host::defaults().set("net.ipv4.ip_local_port_range", "40000 40099").outbound(
            95,
            TcpState::Established,
            40000,
            "10.0.0.2:443",
        );
        host.conntrack = Some(nat_table());
        let mut report = Report::judge(host.inspection(), None, None);
        let docker = crate::inspect::cgroup::from_path(&format!("/docker/{}", "ab".repeat(32)));
        // A process may name itself anything, escape sequences included.
        report.sockets.buckets[0].owners = Some(vec![crate::model::records::Owner {
            pid: 4242,
            command: "curl\x1b[2J".into(),
            container: docker.clone(),
            sockets: 95,
            identity: None,
        }]);
        let sweep = SweepReport::new(
            vec![NamespaceReport { netns: Namespace::example(7, None, docker, &[4242]), report }],
            Vec::new(),
        );
        let raw = human_text(&sweep);
        assert!(!raw.contains("\x1b[2J"), "no escape sequence of the host reaches the terminal: {raw:?}");
        // As `--color never` prints it.
        let text = anstream::adapter::strip_str(&raw).to_string();
        let section = &text[text.find("== net:[7] docker abababababab ==").expect("its heading")..];
        let lines: Vec<&str> = section.lines().collect();
        assert_eq!(
            lines[1], "  fullest bucket 10.0.0.1 -> 10.0.0.2:443: held/usable 95/100, 95.0 % used, 5 left",
            "{text}"
        );
        assert_eq!(lines[2], "    held by pid 4242 curl\\u{1b}[2J (docker abababababab) 95 sockets", "{text}");
        assert_eq!(
            lines[3],
            "  fullest SNAT bucket 10.2.0.1 -> 10.2.0.2:80 tcp: entries/usable 55/64512, 0.1 % used, 64507 left \
             (64457 free)",
            "{text}"
        );
        assert_eq!(
            lines[4..6].join("\n"),
            "    5 live, 50 TIME_WAIT (50 of them evicted for new flows); judged by\n      \
             iptables-nft ip nat POSTROUTING handle 2: MASQUERADE",
            "{text}"
        );
        assert!(section.contains("CRIT ports.bucket-exhaustion"), "then its findings: {text}");
    }

    #[test]
    fn human_says_why_a_bucket_has_no_owner() {
        // Closed by their process: owners were looked up, and there are none.
        let mut time_wait = Report::judge(
            Host::defaults().outbound(3, TcpState::TimeWait, 40000, "10.0.0.3:80").inspection(),
            None,
            None,
        );
        time_wait.sockets.buckets[0].owners = Some(Vec::new());
        let mut unknown = Report::judge(
            Host::defaults().outbound(2, TcpState::Established, 40000, "10.0.0.4:80").inspection(),
            None,
            None,
        );
        unknown.sockets.owners_unavailable = Some("the processes of the namespace could not be listed".into());
        let sweep = SweepReport::new(
            vec![
                NamespaceReport { netns: Namespace::example(3, Some("tw"), None, &[]), report: time_wait },
                NamespaceReport { netns: Namespace::example(4, Some("unknown"), None, &[]), report: unknown },
            ],
            Vec::new(),
        );
        let text = anstream::adapter::strip_str(&human_text(&sweep)).to_string();
        let after = |heading: &str| text[text.find(heading).expect(heading)..].lines().nth(2).unwrap_or("").to_string();
        assert_eq!(after("== net:[3] tw =="), "    no owner: TIME_WAIT sockets belong to no process", "{text}");
        assert_eq!(
            after("== net:[4] unknown =="),
            "    owners not shown: the processes of the namespace could not be listed",
            "{text}"
        );
    }

    #[test]
    fn a_users_namespace_is_marked_and_counts_unless_ignored() {
        let mut sweep = sweep();
        sweep.namespaces[0].netns.user_namespace =
            crate::inspect::netns::UserNamespace { initial: Some(false), owner_uid: Some(65534) };
        let sweep = SweepReport::new(sweep.namespaces, Vec::new());
        assert_eq!(sweep.summary.user_namespaces, 1);
        assert!(sweep.fails(Some(Severity::Crit)), "counted by default");
        let text = anstream::adapter::strip_str(&human_text(&sweep)).to_string();
        assert!(text.contains("docker abababababab (owned by uid 65534)"), "{text}");
        assert!(text.contains("== net:[7] docker abababababab (owned by uid 65534) =="), "{text}");
        let value = serde_json::to_value(&sweep).expect("json");
        assert_eq!(
            value["namespaces"][0]["netns"]["user_namespace"],
            serde_json::json!({"initial": false, "owner_uid": 65534})
        );
        assert_eq!(
            value["namespaces"][1]["netns"]["user_namespace"],
            serde_json::json!({"initial": true, "owner_uid": 0})
        );
        let ignoring = sweep.ignoring_user_namespaces(true);
        assert!(!ignoring.fails(Some(Severity::Crit)) && !ignoring.fails(Some(Severity::Info)));
        assert!(!ignoring.summary.user_namespaces_counted);
        let text = anstream::adapter::strip_str(&human_text(&ignoring)).to_string();
        assert!(text.contains("(owned by uid 65534, not counted)"), "{text}");
    }

    #[test]
    fn json_and_prometheus_carry_the_namespace() {
        let sweep = sweep();
        let value = serde_json::to_value(&sweep).expect("json");
        assert_eq!(value["namespaces"][0]["netns"]["container"]["runtime"], "docker");
        assert_eq!(
            (&value["namespaces"][1]["netns"]["name"], &value["namespaces"][1]["netns"]["host"]),
            (&serde_json::Value::Null, &serde_json::Value::Bool(true))
        );
        assert!(value["namespaces"][0]["report"]["findings"].is_array());
        let mut out = Vec::new();
        sweep.render(Format::Prometheus, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.matches("# TYPE twtune_time_wait_sockets gauge").count(), 1, "{text}");
        assert!(
            text.contains(
                "twtune_time_wait_sockets{netns=\"7\",netns_name=\"docker abababababab\",container=\"abababababab\",direction=\"outbound\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("twtune_time_wait_sockets{netns=\"1\",netns_name=\"host\",direction=\"outbound\"} 0"),
            "{text}"
        );
    }
}
