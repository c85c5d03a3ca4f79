//! The human-readable report: a summary line, the TIME_WAIT breakdown, the fullest destination
//! buckets, then the findings by severity with their risk and advice.
//!
//! Styles are written as ANSI sequences; the caller's `anstream` writer strips them when colour is
//! off (`--color never`, `NO_COLOR`, not a terminal).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use crate::report::Report;
use crate::rules::{Finding, Severity};

const HEADING: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const CRIT: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();
const INFO: Style = AnsiColor::Cyan.on_default();
const OK: Style = AnsiColor::Green.on_default().bold();
/// Text is wrapped to this many columns, which reads well and survives an 80-column terminal's
/// own wrapping no worse than unwrapped text would.
const WIDTH: usize = 100;

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
    persisted(report, out)?;
    findings(report, out)?;
    warnings(report, out)
}

fn summary(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    write!(out, "{HEADING}twtune audit{HEADING:#}  kernel {}  ", report.kernel)?;
    if let Some(profile) = &report.profile {
        write!(out, "profile {} ({})  ", profile.chain.join(" <- "), profile.source)?;
    }
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
    if let Some(r) = &report.rates {
        writeln!(
            out,
            "  measured over {:.1} s: {} connects/s, {} accepts/s, {} TIME_WAIT entries/s, {} overflows/s",
            r.interval_seconds,
            r.active_opens_per_sec,
            r.passive_opens_per_sec,
            r.time_wait_entries_per_sec,
            r.overflow_per_sec
        )?;
    }
    let e = &s.ephemeral;
    writeln!(out, "\n{HEADING}Ephemeral ports{HEADING:#}")?;
    writeln!(
        out,
        "  ip_local_port_range {}: {} ports - {} reserved - {} listening = {} usable per destination",
        e.range,
        e.size,
        e.reserved_in_range,
        e.listeners_in_range.len(),
        e.usable_ports
    )
}

fn persisted(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let c = &report.sysctl_d;
    writeln!(
        out,
        "\n{HEADING}Persisted configuration{HEADING:#}\n  {} files for systemd-sysctl at boot, {} for `sysctl --system`{}",
        c.systemd.len(),
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
        "\n{HEADING}Fullest destinations{HEADING:#} ({} of {} buckets of local IP -> remote IP:port)",
        s.buckets.len(),
        s.bucket_count
    )?;
    let rows: Vec<(String, String, String, String)> = s
        .buckets
        .iter()
        .map(|b| {
            let time_wait = match (b.growth_per_sec, b.seconds_to_exhaustion) {
                (_, Some(eta)) => format!("{}  (full in {eta:.0} s)", b.time_wait),
                (Some(growth), None) => format!("{}  ({growth:+}/s)", b.time_wait),
                (None, None) => b.time_wait.to_string(),
            };
            (
                format!("{} -> {}", b.local_ip, b.remote),
                format!("{}/{}", b.count, b.usable_ports),
                format!("{:.1} %", b.usage_pct),
                time_wait,
            )
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max("destination".len());
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max("ports".len());
    writeln!(out, "  {DIM}{:<w0$}  {:>w1$}  {:>7}  {:>9}{DIM:#}", "destination", "ports", "used", "TIME_WAIT")?;
    for (row, bucket) in rows.iter().zip(&s.buckets) {
        let style = if bucket.usage_pct >= report.thresholds.port_crit_pct {
            CRIT
        } else if bucket.usage_pct >= report.thresholds.port_warn_pct {
            WARN
        } else {
            Style::new()
        };
        writeln!(out, "  {:<w0$}  {:>w1$}  {style}{:>7}{style:#}  {:>9}", row.0, row.1, row.2, row.3)?;
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

/// Writes `text` word-wrapped to [`WIDTH`], the first line after `first`, later ones after `rest`.
/// Prefixes may hold style sequences, which take no columns.
pub(crate) fn wrapped(out: &mut dyn Write, first: &str, rest: &str, text: &str) -> io::Result<()> {
    let mut line = String::new();
    let mut prefix = first;
    for word in text.split_whitespace() {
        let used = visible_len(prefix) + line.len();
        if !line.is_empty() && used + 1 + word.len() > WIDTH {
            writeln!(out, "{prefix}{line}")?;
            line.clear();
            prefix = rest;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    writeln!(out, "{prefix}{line}")
}

/// Columns a string takes on screen, ignoring ANSI style sequences.
fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

/// A value as shown next to its key: absent and empty values are named, not left blank.
fn shown(value: Option<&str>) -> &str {
    match value {
        None => "(absent)",
        Some("") => "(empty)",
        Some(text) => text,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
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
        assert!(lines.iter().all(|l| l.len() <= WIDTH), "{lines:?}");
    }

    #[test]
    fn style_sequences_take_no_columns() {
        assert_eq!(visible_len(&format!("{CRIT}CRIT{CRIT:#}")), 4);
        assert_eq!(visible_len("plain"), 5);
    }
}
