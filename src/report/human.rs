//! The human-readable report: a summary line, the TIME_WAIT breakdown, the port arithmetic (the
//! fullest destination buckets with what they hold, what reuse frees and what is left; the bind()
//! budget of each local address; which runs out first), then the findings by severity with their
//! risk and advice.
//!
//! Styles are written as ANSI sequences; the caller's `anstream` writer strips them when colour is
//! off (`--color never`, `NO_COLOR`, not a terminal).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use crate::error::printable;
use crate::inspect::conntrack::Conntrack;
use crate::model::connect::Bucket;
use crate::model::failures::Tracing;
use crate::report::Report;
use crate::report::fit::{columns_that_fit, glued, visible_len, width};
use crate::rules::{Finding, Severity};
use crate::words::{count, plural};

const HEADING: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const CRIT: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();
const INFO: Style = AnsiColor::Cyan.on_default();
const OK: Style = AnsiColor::Green.on_default().bold();

fn severity_style(severity: Severity) -> Style {
    match severity {
        Severity::Crit => CRIT,
        Severity::Warn => WARN,
        Severity::Info => INFO,
    }
}

/// Writes `report` for people.
pub(crate) fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    summary(report, out)?;
    time_wait(report, out)?;
    buckets(report, out)?;
    conntrack(report, out)?;
    sysctl_d(report, out)?;
    findings(report, out)?;
    warnings(report, out)?;
    other_namespaces(report, out)
}

fn other_namespaces(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    match report.other_namespaces {
        Some(others) if others.count > 0 => writeln!(
            out,
            "
{DIM}{}{} other network namespace{} on this host (containers, pods, ip netns): \
             `twtune audit --all-netns` audits them{DIM:#}",
            if others.complete { "" } else { "at least " },
            others.count,
            plural(others.count),
        ),
        _ => Ok(()),
    }
}

fn summary(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    write!(out, "{HEADING}twtune audit{HEADING:#}  kernel {}  ", printable(&report.kernel))?;
    let counts = report.severity_counts();
    if counts.is_empty() {
        writeln!(out, "{OK}no findings{OK:#}")?;
    } else {
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        let parts: Vec<String> = counts
            .iter()
            .map(|(s, n)| {
                let style = severity_style(*s);
                format!("{style}{n} {}{style:#}", s.name())
            })
            .collect();
        writeln!(out, "{total} finding{}: {}", plural(total), parts.join(", "))?;
    }
    // On a line of its own: a chain of local profiles is long.
    if let Some(profile) = &report.profile {
        writeln!(out, "  profile {} ({})", printable(&profile.chain.join(" <- ")), printable(&profile.source))?;
    }
    Ok(())
}

fn time_wait(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &report.sockets;
    let tw = s.time_wait;
    writeln!(out, "\n{HEADING}TIME_WAIT{HEADING:#}")?;
    let width = tw.total.to_string().len();
    writeln!(
        out,
        "  {:>width$} sockets in TIME_WAIT ({} TCP sockets in all, read from {})",
        tw.total, s.total, s.source
    )?;
    writeln!(
        out,
        "  {:>width$} outbound: this host connected out and closed first; each holds an ephemeral port for 60 s",
        tw.outbound
    )?;
    writeln!(out, "  {:>width$} inbound: server side (local port is a listening port); memory only", tw.inbound)?;
    if tw.without_listener > 0 {
        writeln!(
            out,
            "  {:>width$} without a listener, on ports outside the ephemeral range: probably the server side of a \
             listener that stopped or restarted (or clients that bound their port); they hold no ephemeral port",
            tw.without_listener
        )?;
    }
    let counter = |name: &str| report.counters.get(name).map_or("-".to_string(), i64::to_string);
    writeln!(
        out,
        "  {DIM}since boot: TW {}, TWRecycled {}, TCPTimeWaitOverflow {}, ActiveOpens {}, PassiveOpens {}{DIM:#}",
        counter("TW"),
        counter("TWRecycled"),
        counter("TCPTimeWaitOverflow"),
        counter("ActiveOpens"),
        counter("PassiveOpens")
    )?;
    sampled_rates(report, out)?;
    ephemeral_ports(report, out)
}

/// Writes the rates measured with `--sample`, if any, and what they cannot show.
fn sampled_rates(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &report.sockets;
    let Some(r) = &report.rates else {
        return Ok(());
    };
    writeln!(
        out,
        "  measured over {:.1} s: {} connects/s, {} accepts/s, {} TIME_WAIT entries/s, {} reused/s, {} \
         overflows/s",
        r.interval_seconds,
        r.active_opens_per_sec,
        r.passive_opens_per_sec,
        r.time_wait_entries_per_sec,
        r.time_wait_reused_per_sec,
        r.overflow_per_sec
    )?;
    if r.time_wait_reused_per_sec > 0.0 {
        writeln!(
            out,
            "  connect() took over {} TIME_WAIT tuples per second (TWRecycled): reuse is at work",
            r.time_wait_reused_per_sec
        )?;
    }
    let stalled = if r.syn_retransmits_per_sec > 0.0 {
        ": each one a connect (or a listener's SYN-ACK) that waited 1 s or more for an answer"
    } else {
        ""
    };
    let text = format!("SYN retransmits: {}/s (TCPSynRetrans){stalled}", r.syn_retransmits_per_sec);
    wrapped(out, "  ", "    ", &text)?;
    if let Some(tracing) = &report.tracing {
        return traced_failures(tracing, out);
    }
    if s.buckets.iter().any(|b| b.available == 0) || s.local_ports.iter().any(|l| l.available == 0) {
        writeln!(
            out,
            "  a budget below is empty: connect() or bind() to it fails now, and the kernel counts no failed \
             call, so these rates do not show the failures"
        )?;
    }
    Ok(())
}

/// Writes the failed connect() and bind() calls the tracepoints counted in the window, or why
/// they were not traced.
fn traced_failures(tracing: &Tracing, out: &mut dyn Write) -> io::Result<()> {
    let f = match tracing {
        Tracing::Untraced { reason } => {
            let text = format!(
                "failed calls: not traced ({}); the kernel counts no failed connect() or bind(), so these \
                 rates do not show them",
                printable(reason)
            );
            return wrapped(out, "  ", "    ", &text);
        }
        Tracing::Tracepoints(f) => f,
    };
    traced_counts(f, out)?;
    for note in notes(f) {
        wrapped(out, "  ", "    ", &format!("{WARN}{}{WARN:#}", printable(&note)))?;
    }
    Ok(())
}

/// The failed calls of a traced window, per process and per destination.
pub(crate) fn traced_counts(f: &crate::model::failures::Failures, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "  failed calls (traced over {:.1} s): {} connect()/s with EADDRNOTAVAIL ({}), {} bind()/s with \
         EADDRINUSE ({})",
        f.seconds, f.connect_per_sec, f.connect, f.bind_per_sec, f.bind
    )?;
    for p in &f.processes {
        let container = p.container.as_ref().map(|c| format!(" ({})", printable(&c.label()))).unwrap_or_default();
        let on = p.bind_local_ip.as_ref().map(|ip| format!(" on {ip}")).unwrap_or_default();
        let text = format!(
            "pid {} {}{container}: {} failed connect(), {} failed bind(){on}",
            p.pid,
            printable(&p.command),
            p.connect,
            p.bind
        );
        wrapped(out, "    ", "      ", &text)?;
    }
    for d in &f.destinations {
        let pids: Vec<String> = d.pids.iter().map(u32::to_string).collect();
        let text = format!(
            "{} -> {}: {} failed connect() ({}/s), pid {}",
            d.local_ip,
            d.remote,
            d.connect,
            d.per_sec,
            pids.join(", ")
        );
        wrapped(out, "    ", "      ", &text)?;
    }
    Ok(())
}

/// What the figures of a traced window miss, and why.
pub(crate) fn notes(f: &crate::model::failures::Failures) -> Vec<String> {
    let mut notes = f.unarmed.clone();
    if f.lost > 0 {
        notes.push(format!(
            "{} records lost (the kernel's buffers were full): the failure counts miss up to that many",
            f.lost
        ));
    }
    if f.lifetimes_dropped > 0 {
        notes.push(format!(
            "{} connections were not followed for want of room (twtune's table or the kernel's buffers): the \
             lifetimes miss up to that many",
            f.lifetimes_dropped
        ));
    }
    if f.unattributed > 0 {
        notes.push(format!(
            "{} failed calls of processes that ended before their namespace could be read are not counted",
            f.unattributed
        ));
    }
    notes
}

/// Writes the ephemeral port arithmetic: the range, what it loses, and what reuse does.
fn ephemeral_ports(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let e = &report.sockets.ephemeral;
    writeln!(out, "\n{HEADING}Ephemeral ports{HEADING:#}")?;
    writeln!(
        out,
        "  ip_local_port_range {}: {} ports - {} reserved - {} listening{} = {} usable per destination",
        e.range,
        e.size,
        e.reserved_in_range,
        e.listeners_in_range.len(),
        match e.stopped_listeners_in_range.len() {
            0 => String::new(),
            n => format!(" - {n} of servers that stopped listening (their connections hold them)"),
        },
        e.usable_ports
    )?;
    if e.bound_ports > 0 {
        writeln!(
            out,
            "  {} of them are held by clients that bind before they connect (inferred): connect() skips them for \
             every destination, so a new destination gets {}",
            e.bound_ports,
            e.usable_ports.saturating_sub(e.bound_ports)
        )?;
    }
    writeln!(out, "  {}", reuse_summary(report))
}

/// What TIME_WAIT reuse does for connect() in this namespace, in one line.
fn reuse_summary(report: &Report) -> String {
    let settings = &report.settings;
    let mode = settings.int("net.ipv4.tcp_tw_reuse");
    let delay = settings.int("net.ipv4.tcp_tw_reuse_delay").map_or("about 1000 ms".to_string(), |d| format!("{d} ms"));
    let scope = match mode {
        Some(1) => "every destination",
        Some(2) => "loopback destinations only",
        Some(_) => return "TIME_WAIT reuse: off (tcp_tw_reuse=0): connect() skips every port a TIME_WAIT holds".into(),
        None => return "TIME_WAIT reuse: tcp_tw_reuse is absent; taken as off".into(),
    };
    if settings.int("net.ipv4.tcp_timestamps") == Some(0) {
        return format!("TIME_WAIT reuse for {scope} cannot work: tcp_timestamps=0 (the old connection needs them)");
    }
    format!("TIME_WAIT reuse: connect() may take over TIME_WAIT older than {delay}, for {scope}")
}

fn sysctl_d(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let c = &report.sysctl_d;
    writeln!(
        out,
        "\n{HEADING}Persisted configuration{HEADING:#}\n  {} for systemd-sysctl at boot, {} for `sysctl --system`{}",
        count(c.systemd.len(), "file"),
        c.procps.len(),
        if c.procps.is_empty() { " (no sysctl.d files: runtime changes are lost at reboot)" } else { "" }
    )
}

fn buckets(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &report.sockets;
    if s.buckets.is_empty() {
        return writeln!(out, "  no outgoing connection holds an ephemeral port");
    }
    writeln!(
        out,
        "\n{HEADING}Fullest destinations{HEADING:#} ({} of {} of local IP -> remote IP:port; held = sockets - \
         TIME_WAIT that connect() may take over)",
        s.buckets.len(),
        count(s.bucket_count, "bucket")
    )?;
    // Ports bound before connect() are gone for every destination: a column of their own, when any.
    let bound = s.ephemeral.bound_ports;
    let mut header = vec!["destination", "sockets", "TIME_WAIT", "reusable", "held/usable"];
    if bound > 0 {
        header.push("+bound");
    }
    header.extend(["used", "left"]);
    let rows: Vec<Vec<String>> = s.buckets.iter().map(|b| bucket_row(b, bound)).collect();
    let styles: Vec<Style> = s.buckets.iter().map(|b| usage_style(report, b.usage_pct)).collect();
    // What reuse frees and the raw counts go before what is held and left.
    table(out, &header, &rows, &styles, &[3, 1, 2])?;
    bucket_details(report, out)?;

    local_addresses(report, out)?;
    if let Some(first) = runs_out_first(report) {
        writeln!(out, "  {first}")?;
    }
    Ok(())
}

/// The table row of one destination bucket; `bound` ports, when any, get a column of their own.
fn bucket_row(b: &Bucket, bound: u32) -> Vec<String> {
    let mut row = vec![
        format!("{} -> {}", b.local_ip, b.remote),
        b.count.to_string(),
        b.time_wait.to_string(),
        b.reusable.to_string(),
        held_usable(b),
    ];
    if bound > 0 {
        row.push(format!("+{bound}"));
    }
    row.extend([format!("{:.1} %", b.usage_pct), bucket_left(b)]);
    row
}

/// A bucket's `held/usable`: `0/N` for clients that bind first, whose ports the bound count holds.
pub(crate) fn held_usable(b: &Bucket) -> String {
    format!("{}/{}", if b.bound_first { 0 } else { b.held }, b.usable_ports)
}

/// The ports left to a bucket, with its forecast or growth when sampled: `5  (none in 40 s)`.
pub(crate) fn bucket_left(b: &Bucket) -> String {
    match bucket_outlook(b) {
        Some(outlook) => format!("{}  ({outlook})", b.available),
        None => b.available.to_string(),
    }
}

/// With `--sample`: when the bucket runs out, or where it levels off (or, without a forecast, how
/// what it spends grows).
pub(crate) fn bucket_outlook(b: &Bucket) -> Option<String> {
    match (&b.forecast, b.growth_per_sec, b.seconds_to_exhaustion) {
        (_, _, Some(eta)) => Some(format!("none in {eta:.0} s")),
        (Some(forecast), _, None) => Some(format!("levels off at ~{} of {}", forecast.level, forecast.room)),
        (None, Some(growth), None) => Some(format!("{growth:+}/s")),
        (None, None, None) => None,
    }
}

/// Writes the bind() budget of each local address, when there are any.
fn local_addresses(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &report.sockets;
    if s.local_ports.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{HEADING}Local addresses{HEADING:#} (bind(addr, 0) needs a port no socket on the address holds)")?;
    let header = vec!["local address", "ports in use/usable", "used", "left"];
    let rows: Vec<Vec<String>> = s
        .local_ports
        .iter()
        .map(|l| {
            vec![
                l.local_ip.clone(),
                format!("{}/{}", l.ports_in_use, l.usable_ports),
                format!("{:.1} %", l.usage_pct),
                l.available.to_string(),
            ]
        })
        .collect();
    let styles: Vec<Style> = s.local_ports.iter().map(|l| usage_style(report, l.usage_pct)).collect();
    table(out, &header, &rows, &styles, &[])
}

fn conntrack(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let Some(ct) = &report.conntrack else {
        return writeln!(out, "\n{HEADING}Connection tracking{HEADING:#}: nf_conntrack is not loaded here");
    };
    writeln!(out, "\n{HEADING}Connection tracking{HEADING:#}")?;
    let count = ct.count.unwrap_or(0);
    let share = match ct.max {
        Some(max) if max > 0 => {
            format!(" of nf_conntrack_max {max} ({:.1} %, the limit is global)", count as f64 * 100.0 / max as f64)
        }
        _ => String::new(),
    };
    let stat = |name: &str| ct.statistics.get(name).copied().unwrap_or(0);
    writeln!(
        out,
        "  {count} entries{share}; since boot: insert_failed {}, drop {}, early_drop {}, clashres {}",
        stat("insert_failed"),
        stat("drop"),
        stat("early_drop"),
        stat("clashres")
    )?;
    if let Some(growth) = &ct.statistics_growth {
        let g = |name: &str| growth.get(name).copied().unwrap_or(0);
        writeln!(
            out,
            "  during the sample: insert_failed +{}, drop +{}, early_drop +{}",
            g("insert_failed"),
            g("drop"),
            g("early_drop")
        )?;
    }
    let timeouts: Vec<String> = ct.tcp_timeouts.iter().map(|(k, v)| format!("{} {v} s", k.to_uppercase())).collect();
    if !timeouts.is_empty() {
        writeln!(out, "  TCP timeouts: {}", timeouts.join(", "))?;
    }
    conntrack_table(report, ct, out)
}

/// Writes what the dump of the conntrack table holds: entries by TCP state, then the source-NAT
/// buckets; or why the table was not read.
fn conntrack_table(report: &Report, ct: &Conntrack, out: &mut dyn Write) -> io::Result<()> {
    let Some(dump) = &ct.table else {
        return writeln!(
            out,
            "  {DIM}table not read: {}{DIM:#}",
            printable(ct.table_unavailable.as_deref().unwrap_or("?"))
        );
    };
    let states: Vec<String> = dump.tcp_states.iter().map(|(k, v)| format!("{k} {v}")).collect();
    writeln!(
        out,
        "  {} dumped; TCP: {}",
        count(dump.entries as usize, "entry"),
        if states.is_empty() { "none".into() } else { states.join(", ") }
    )?;
    if dump.snat_buckets.is_empty() {
        return writeln!(out, "  no source-NAT flow");
    }
    writeln!(out, "  source NAT, port ranges from {}:", printable(&ct.nat_range_source))?;
    // `left` is what a patient client gets, evictions included; `free` what a new flow gets for sure.
    let header = ["translated source -> destination", "live", "TIME_WAIT", "free", "used", "left"];
    let rows: Vec<Vec<String>> = dump
        .snat_buckets
        .iter()
        .map(|b| {
            vec![
                format!("{} -> {} {}", b.source_ip, b.remote, b.protocol),
                b.held.to_string(),
                b.time_wait.to_string(),
                b.free.to_string(),
                format!("{:.1} % of {}", b.usage_pct, b.usable_ports),
                b.available.to_string(),
            ]
        })
        .collect();
    let styles: Vec<Style> = dump.snat_buckets.iter().map(|b| usage_style(report, b.usage_pct)).collect();
    table(out, &header, &rows, &styles, &[1, 3, 2])?;
    // Each rule that judged a bucket shown, once: the table would not fit 80 columns with it.
    let mut rules: Vec<&str> = dump.snat_buckets.iter().map(|b| b.nat_rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    for rule in rules {
        wrapped(out, "  judged by ", "    ", rule)?;
    }
    Ok(())
}

/// Per bucket, who holds it and how fast its connections turn over (with `--sample`).
fn bucket_details(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &report.sockets;
    if let Some(why) = &s.owners_unavailable {
        // Owners found in part (the lookup's budget) are shown, with what was left out.
        let lead = if s.buckets.iter().any(|b| b.owners.is_some()) { "owners" } else { "owners not shown:" };
        writeln!(out, "  {DIM}{lead} {why}{DIM:#}")?;
    }
    for b in &s.buckets {
        let mut parts = Vec::new();
        if let Some(owners) = &b.owners {
            parts.push(owners_text(owners, b.count > b.time_wait));
        }
        if let Some(c) = &b.churn {
            let mut text = format!("{} new/s", c.new_per_sec);
            if let Some(share) = c.closed_here_share {
                text.push_str(&format!(", {:.0} % closed here first", share * 100.0));
            }
            // The reads' estimate (Little's law on the sockets live at one read) is said only where
            // the tracepoints did not follow the bucket's connections: it reads 0 when none was
            // live at that read, beside lifetimes the tracepoints measured.
            if let Some(life) = c.mean_lifetime_seconds.filter(|_| b.closes.is_none()) {
                text.push_str(&format!(", mean life {}", seconds(life)));
            }
            parts.push(text);
        }
        if let Some(c) = &b.closes {
            parts.push(closes_text(c));
        }
        if !parts.is_empty() {
            wrapped(out, &format!("  {DIM}{} -> {}:{DIM:#} ", b.local_ip, b.remote), "      ", &parts.join("; "))?;
        }
    }
    Ok(())
}

/// `pid 4242 curl (docker 0123456789ab) 37 sockets, ...`.
pub(crate) fn owners_text(owners: &[crate::model::records::Owner], live: bool) -> String {
    if owners.is_empty() {
        return if live {
            "no owner found: its live sockets are orphans (closed by their process, still finishing) or held \
             from another namespace"
                .into()
        } else {
            "no owner: TIME_WAIT sockets belong to no process".into()
        };
    }
    let list: Vec<String> = owners
        .iter()
        .map(|o| {
            let container = o.container.as_ref().map(|c| format!(" ({})", printable(&c.label()))).unwrap_or_default();
            format!(
                "pid {} {}{container} {} socket{}{}",
                o.pid,
                printable(&o.command),
                o.sockets,
                plural(o.sockets as usize),
                o.identity.as_ref().map(identity_text).unwrap_or_default()
            )
        })
        .collect();
    format!("held by {}", list.join(", "))
}

/// What the tracepoints followed of a bucket's connections: who closed first, how long they
/// lived, and who opened them.
fn closes_text(c: &crate::model::histogram::BucketCloses) -> String {
    let mean = |m: Option<f64>| m.map(|s| format!(" (mean {})", seconds(s))).unwrap_or_default();
    let mut text = format!(
        "traced: {} closed here first{}, {} by the peer{}, {} reset",
        c.closed_here,
        mean(c.closed_here_mean_seconds),
        c.closed_by_peer,
        mean(c.closed_by_peer_mean_seconds),
        c.reset
    );
    if let Some((at, share)) = c.peer_typical().filter(|(_, share)| *share >= 0.7) {
        text.push_str(&format!(", the peer closing {:.0} % at {}", share * 100.0, seconds(at)));
    }
    let bins: Vec<String> = c
        .histogram
        .iter()
        .map(|bin| {
            let limit = bin.up_to_seconds.map_or_else(|| "longer".to_string(), |s| format!("<{}", seconds(s)));
            format!("{limit} {}/{}", bin.closed_here, bin.closed_by_peer)
        })
        .collect();
    text.push_str(&format!("; lifetimes (here/peer) {}", bins.join(", ")));
    let by: Vec<String> = c.processes.iter().map(|p| format!("pid {} {}", p.pid, printable(&p.command))).collect();
    if !by.is_empty() {
        text.push_str(&format!("; opened by {}", by.join(", ")));
    }
    text
}

/// ` [Go go1.19.8 with github.com/valyala/fasthttp v1.31.0]`, or why it is unknown.
fn identity_text(identity: &crate::model::records::Identity) -> String {
    match crate::rules::fixes::describe(identity) {
        Some(runs) => format!(" [{}]", printable(&runs)),
        None => format!(" [runtime unknown: {}]", identity.unknown.as_deref().unwrap_or("not identified")),
    }
}

fn seconds(value: f64) -> String {
    crate::words::duration(value)
}

/// Which budget of the fullest bucket's address runs out first: connect() to the bucket, or, for
/// clients that bind before they connect, bind(addr, 0) on its address.
fn runs_out_first(report: &Report) -> Option<String> {
    let bucket = report.sockets.buckets.first()?;
    let local = report.sockets.local_ports.iter().find(|l| l.local_ip == bucket.local_ip)?;
    Some(if bucket.bound_first {
        format!(
            "First to run out: the ports of {}, whose clients probably bind before they connect: bind(addr, 0) \
             has {} left (EADDRINUSE), and connect() skips bound ports for every destination ({} left toward {})",
            local.local_ip, local.available, bucket.available, bucket.remote
        )
    } else {
        format!(
            "First to run out: connect() to {} from {} ({} left; EADDRNOTAVAIL). bind(addr, 0) on the address has \
             {} left, which matters only to clients that bind() first",
            bucket.remote, bucket.local_ip, bucket.available, local.available
        )
    })
}

pub(crate) fn usage_style(report: &Report, usage_pct: f64) -> Style {
    if usage_pct >= report.thresholds.port_crit_pct {
        CRIT
    } else if usage_pct >= report.thresholds.port_warn_pct {
        WARN
    } else {
        Style::new()
    }
}

/// A table: the first column left-aligned, the others right-aligned, the second-to-last (the
/// share used) in the row's style.
/// A table, numbers right-aligned, its second-last column (the use) styled by severity. Where it is
/// wider than the report, the columns of `drop_order` go first, and a line says which.
fn table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
    styles: &[Style],
    drop_order: &[usize],
) -> io::Result<()> {
    let n = header.len();
    let widths: Vec<usize> =
        (0..n).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(header[i].len())).collect();
    let kept = columns_that_fit(&widths, drop_order);
    let line = |cells: &[String], style: Style| -> String {
        let mut text = format!("{:<w$}", cells[kept[0]], w = widths[kept[0]]);
        for &i in kept.iter().skip(1) {
            let cell = format!("{:>w$}", cells[i], w = widths[i]);
            if i == n - 2 {
                text.push_str(&format!("  {style}{cell}{style:#}"));
            } else {
                text.push_str(&format!("  {cell}"));
            }
        }
        text
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    writeln!(out, "  {DIM}{}{DIM:#}", line(&header, Style::new()))?;
    for (row, style) in rows.iter().zip(styles) {
        writeln!(out, "  {}", line(row, *style))?;
    }
    let dropped: Vec<&str> = (0..n).filter(|i| !kept.contains(i)).map(|i| header[i].as_str()).collect();
    if !dropped.is_empty() {
        writeln!(out, "  {DIM}left out to fit {} columns: {}{DIM:#}", width(), dropped.join(", "))?;
    }
    Ok(())
}

fn findings(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    if report.findings.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{HEADING}Findings{HEADING:#}")?;
    for finding in &report.findings {
        one_finding(finding, out)?;
    }
    Ok(())
}

/// Only the findings, for a namespace of a sweep.
pub(crate) fn findings_only(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for finding in &report.findings {
        one_finding(finding, out)?;
    }
    Ok(())
}

fn one_finding(f: &Finding, out: &mut dyn Write) -> io::Result<()> {
    let style = severity_style(f.severity);
    write!(out, "\n  {style}{:<4}{style:#} {HEADING}{}{HEADING:#}", f.severity.name().to_uppercase(), f.id)?;
    if let Some(key) = &f.key {
        let current = shown(f.current.as_deref());
        match &f.recommended {
            Some(recommended) => write!(out, "  {key}: {current} -> {}", shown(Some(recommended)))?,
            None => write!(out, "  {key} = {current}")?,
        }
    }
    writeln!(out)?;
    let indent = "       ";
    wrapped(out, indent, indent, &f.message)?;
    wrapped(out, &format!("{indent}{DIM}risk:{DIM:#} "), &format!("{indent}      "), &f.risk)?;
    if !f.advice.is_empty() {
        writeln!(out, "{indent}{DIM}what to do, best first:{DIM:#}")?;
        for (n, advice) in f.advice.iter().enumerate() {
            let first = format!("{indent}  {}. ", n + 1);
            let rest = " ".repeat(first.len());
            wrapped(out, &first, &rest, &advice.action)?;
            wrapped(out, &format!("{rest}{DIM}risk:{DIM:#} "), &format!("{rest}      "), &advice.risk)?;
        }
    }
    Ok(())
}

fn warnings(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    if report.warnings.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{HEADING}Warnings{HEADING:#} (the audit went on without these)")?;
    for warning in &report.warnings {
        wrapped(out, "  - ", "    ", warning)?;
    }
    Ok(())
}

/// Writes `text` word-wrapped to the report's [`width`], the first line after `first`, later ones after `rest`.
/// Prefixes may hold style sequences, which take no columns.
pub(crate) fn wrapped(out: &mut dyn Write, first: &str, rest: &str, text: &str) -> io::Result<()> {
    let mut line = String::new();
    let mut prefix = first;
    for word in text.split_whitespace() {
        // The words come from files and the kernel: no control character reaches the terminal.
        let word = crate::error::printable(word);
        let used = visible_len(prefix) + line.len();
        if !line.is_empty() && used + 1 + word.len() > width() && !glued(&word) {
            writeln!(out, "{prefix}{line}")?;
            line.clear();
            prefix = rest;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    writeln!(out, "{prefix}{line}")
}

/// A value as shown next to its key: absent and empty values are named, not left blank.
fn shown(value: Option<&str>) -> &str {
    match value {
        None => "(absent)",
        Some("") => "(empty)",
        Some(text) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_whole_and_indents() {
        let mut out = Vec::new();
        let text = "word ".repeat(40);
        wrapped(&mut out, "  * ", "    ", &text).expect("write to memory");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines[0].starts_with("  * word"));
        assert!(lines[1..].iter().all(|l| l.starts_with("    word")));
        assert!(lines.iter().all(|l| l.len() <= width()), "{lines:?}");
    }

    #[test]
    fn style_sequences_take_no_columns() {
        assert_eq!(visible_len(&format!("{CRIT}CRIT{CRIT:#}")), 4);
        assert_eq!(visible_len("plain"), 5);
    }
}
