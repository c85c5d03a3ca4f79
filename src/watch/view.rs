//! Draws the [`State`] on a ratatui frame: one namespace in detail (TIME_WAIT, rates with
//! sparklines, the fullest destinations and bind() budgets as bars, conntrack, findings), or with
//! `--all-netns` a table of namespaces. Pure: the same state and size give the same frame.
//!
//! Text read from the host (namespace labels, commands, container names) is escaped before it is
//! drawn, so that nothing in a process name can move the cursor or recolour the terminal.

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row as TableRow, Sparkline, Table, TableState};

use crate::error::printable;
use crate::model::connect::Bucket;
use crate::model::failures::Tracing;
use crate::report::Report;
use crate::rules::Severity;
use crate::watch::state::{BucketSort, Data, FailedTotals, History, Row, State};

/// The smallest terminal the view is drawn on; below it, a message asks for more room.
pub(crate) const MIN_WIDTH: u16 = 70;
pub(crate) const MIN_HEIGHT: u16 = 16;

/// Styles, or none at all when colours are off (`--color never`, `NO_COLOR`): the view is then
/// read from its text and bar shapes alone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Palette {
    pub color: bool,
}

impl Palette {
    fn fg(self, color: Color) -> Style {
        if self.color { Style::new().fg(color) } else { Style::new() }
    }
    fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }
    fn severity(self, severity: Severity) -> Style {
        match severity {
            Severity::Crit => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Severity::Warn => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Severity::Info => self.fg(Color::Blue),
        }
    }
    /// A share used, coloured by the report's port thresholds.
    fn usage(self, report: &Report, pct: f64) -> Style {
        if pct >= report.thresholds.port_crit_pct {
            self.severity(Severity::Crit)
        } else if pct >= report.thresholds.port_warn_pct {
            self.severity(Severity::Warn)
        } else {
            self.fg(Color::Green)
        }
    }
}

/// Draws the whole view; returns how many lines of findings lie beyond the last one shown (how far
/// they can scroll).
pub(crate) fn draw(frame: &mut Frame, state: &State, palette: Palette) -> u16 {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "twtune watch needs at least {MIN_WIDTH}x{MIN_HEIGHT} (this is {}x{}); enlarge the terminal or press q",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }), area);
        return 0;
    }
    let [title, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    frame.render_widget(title_line(state, palette), title);
    frame.render_widget(status_line(state, palette, status.width), status);
    let data = state.shown();
    let room = match state.detail() {
        _ if data.ticks == 0 => {
            frame.render_widget(Paragraph::new("reading..."), body);
            0
        }
        Some(row) => detail(frame, body, row, data.history.get(&row.inode), state, palette),
        None if state.all => namespaces(frame, body, state, palette),
        None => {
            frame.render_widget(Paragraph::new("nothing was read"), body);
            0
        }
    };
    if state.help {
        help(frame, area, state);
    }
    room
}

fn title_line(state: &State, palette: Palette) -> Paragraph<'static> {
    let data = state.shown();
    let what = match (state.all, state.detail()) {
        (_, Some(row)) => printable(&row.label).into_owned(),
        (true, None) => format!("{} network namespaces", data.rows.len()),
        (false, None) => String::new(),
    };
    let mut spans = vec![Span::styled("twtune watch", palette.title())];
    // First, where a narrow terminal or a long label cannot push it out of sight.
    if state.paused() {
        spans.push(Span::styled("  PAUSED", palette.severity(Severity::Warn).add_modifier(Modifier::REVERSED)));
    }
    spans.push(Span::raw(format!("  {what}  every {}", duration(state.interval.as_secs_f64()))));
    if let Some(at) = data.at {
        spans.push(Span::raw(format!("  {}", clock(at))));
    }
    let sort = if state.in_table() { state.namespace_sort.name() } else { state.bucket_sort.name() };
    spans.push(Span::styled(format!("  sort: {sort}"), palette.dim()));
    Paragraph::new(Line::from(spans))
}

fn status_line(state: &State, palette: Palette, width: u16) -> Paragraph<'static> {
    let data = state.shown();
    let pause = if state.paused() { "p resume" } else { "p pause" };
    let keys = if state.in_table() {
        format!("q quit  {pause}  s sort  Up/Down select  PgUp/PgDn findings  Enter open  ? help")
    } else if state.all {
        format!("q quit  {pause}  s sort  Up/Down findings  Esc back  ? help")
    } else {
        format!("q quit  {pause}  s sort  Up/Down findings  ? help")
    };
    let mut text = format!("{keys}   read in {} ms", data.took.as_millis());
    if data.took * 2 > state.interval {
        text.push_str(" (over half of --interval: each read is followed by a pause as long)");
    }
    let mut notes: Vec<String> = data.notes.clone();
    if let Some(row) = state.detail() {
        notes.extend(row.report.sockets.owners_unavailable.as_ref().map(|why| format!("owners: {why}")));
        notes.extend(tracing_notes(&row.report));
        match row.report.warnings.len() {
            0 => {}
            1 => notes.push(row.report.warnings[0].clone()),
            n => notes.push(format!("{n} warnings (twtune audit lists them)")),
        }
    }
    for note in notes {
        text.push_str("   ");
        text.push_str(&printable(&note));
    }
    Paragraph::new(Line::styled(clip(&text, usize::from(width)), palette.dim()))
}

/// One namespace in detail; returns how far its findings can scroll.
fn detail(frame: &mut Frame, area: Rect, row: &Row, history: Option<&History>, state: &State, palette: Palette) -> u16 {
    let report = &row.report;
    let inner_width = usize::from(area.width.saturating_sub(2));
    let brief = finding_lines(report, inner_width, false, palette).len() as u16;
    let failed = failed_lines(report, state.shown().failed.get(&row.inode), area.width.saturating_sub(2), palette);
    let failed_rows = failed.as_ref().map_or(0, |lines| lines.len() as u16 + 2);
    let heights = Heights::of(report, area.height, brief, failed_rows);
    let [top, failed_area, buckets_area, bind_area, conntrack_area, findings_area] = Layout::vertical([
        Constraint::Length(heights.top),
        Constraint::Length(heights.failed),
        Constraint::Length(heights.buckets),
        Constraint::Length(heights.bind),
        Constraint::Length(heights.conntrack),
        Constraint::Min(0),
    ])
    .areas(area);
    let [time_wait_area, rates_area] = Layout::horizontal([Constraint::Length(38), Constraint::Min(20)]).areas(top);
    frame.render_widget(time_wait(report, palette), time_wait_area);
    rates(frame, rates_area, report, history, palette);
    if let (Some(lines), true) = (failed, heights.failed > 0) {
        let title = " failed calls, traced: connect() EADDRNOTAVAIL, bind() EADDRINUSE ";
        frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), failed_area);
    }
    frame.render_widget(bucket_table(report, state, buckets_area.width, palette), buckets_area);
    if heights.bind > 0 {
        frame.render_widget(bind_budget(report, bind_area.width.saturating_sub(2), palette), bind_area);
    }
    if heights.conntrack > 0 {
        frame.render_widget(conntrack_block(report, conntrack_area.width.saturating_sub(2), palette), conntrack_area);
    }
    findings(frame, findings_area, report, state.findings_scroll, palette)
}

/// Rows of each part of the detail, most important first: the rates and the buckets get room
/// first, then the findings (as many rows as their messages take, up to [`Heights::FINDINGS`]),
/// then the bind() budget and conntrack; the findings take what is left.
#[derive(Debug, PartialEq, Eq)]
struct Heights {
    top: u16,
    /// The failed calls, where they are traced: right below the rates, the outage they prove
    /// comes before the buckets.
    failed: u16,
    buckets: u16,
    bind: u16,
    conntrack: u16,
}

impl Heights {
    /// Rows the findings keep before the bind() budget and conntrack get any (their border and six
    /// lines: two or three findings at 80 columns); more lines scroll.
    const FINDINGS: u16 = 8;

    /// `findings`: the lines the findings' messages take.
    fn of(report: &Report, height: u16, findings: u16, failed: u16) -> Heights {
        let top = 6.min(height);
        let mut left = height - top;
        // The buckets keep a border, the header and a row.
        let failed = if failed <= left.saturating_sub(4) { failed } else { 0 };
        left -= failed;
        // A border, the header and at least one row; a finding's line at least below.
        let wanted = report.sockets.buckets.len().max(1) as u16 + 3;
        let buckets = wanted.min(left.saturating_sub(3));
        left -= buckets;
        left = left.saturating_sub((findings.max(1) + 2).min(Self::FINDINGS));
        let addresses = report.sockets.local_ports.len().min(3) as u16;
        let bind = if addresses > 0 { (addresses + 2).min(left) } else { 0 };
        let bind = if bind >= 3 { bind } else { 0 };
        left -= bind;
        let conntrack = if report.conntrack.is_some() && left >= 4 { 4 } else { 0 };
        Heights { top, failed, buckets, bind, conntrack }
    }
}

fn time_wait(report: &Report, palette: Palette) -> Paragraph<'static> {
    let tw = report.sockets.time_wait;
    let max = report.settings.get("net.ipv4.tcp_max_tw_buckets").map(str::to_string).unwrap_or_else(|| "?".into());
    let line = |label: &str, value: u64, note: &str| {
        Line::from(vec![
            Span::raw(format!("{label:<12}{:>8}", number(value))),
            Span::styled(format!("  {note}"), palette.dim()),
        ])
    };
    Paragraph::new(vec![
        line("outbound", tw.outbound, "holds ports"),
        line("inbound", tw.inbound, "memory only"),
        line("no listener", tw.without_listener, ""),
        Line::raw(format!("{:<12}{:>8}  of {max} max", "total", number(tw.total))),
    ])
    .block(Block::bordered().title(" TIME_WAIT "))
}

/// The four rates, each with its sparkline of the last minutes.
fn rates(frame: &mut Frame, area: Rect, report: &Report, history: Option<&History>, palette: Palette) {
    let block = Block::bordered().title(" per second ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let empty = History::default();
    let history = history.unwrap_or(&empty);
    let series: [(&str, &VecDeque<f32>); 4] = [
        ("connects", &history.connects),
        ("accepts", &history.accepts),
        ("TIME_WAIT in", &history.time_wait_entries),
        ("TWRecycled", &history.time_wait_reused),
    ];
    let rows = Layout::vertical([Constraint::Length(1); 4]).split(inner);
    for ((label, values), row) in series.iter().zip(rows.iter()) {
        let [text, spark] = Layout::horizontal([Constraint::Length(24), Constraint::Min(0)]).areas(*row);
        let now = match (&report.rates, values.back()) {
            (Some(_), Some(value)) => rate(f64::from(*value)),
            _ => "-".into(),
        };
        frame.render_widget(Paragraph::new(format!("{label:<13}{now:>10} ")), text);
        // The newest samples that fit, in tenths so that slow rates still show.
        let shown = values.len().min(spark.width as usize);
        let tenths: Vec<u64> = values.range(values.len() - shown..).map(|v| (v * 10.0).round() as u64).collect();
        frame.render_widget(Sparkline::default().data(tenths).style(palette.fg(Color::Cyan)), spark);
    }
}

fn bucket_table(report: &Report, state: &State, width: u16, palette: Palette) -> Table<'static> {
    let s = &report.sockets;
    // The buckets shown are the fullest; another order sorts those, it does not pick others.
    let order = match state.bucket_sort {
        BucketSort::Fullest => String::new(),
        sort => format!(", by {}", sort.name()),
    };
    let title = format!(
        " the {} fullest of {} destinations{order} (held █, reusable ▒, free ░) ",
        s.buckets.len(),
        s.bucket_count,
    );
    let block = Block::bordered().title(title);
    if s.buckets.is_empty() {
        return Table::new([TableRow::new(["no outgoing connection holds an ephemeral port"])], [Constraint::Min(0)])
            .block(block);
    }
    let buckets = state.bucket_sort.sorted(&s.buckets);
    fitted(&bucket_columns(report, palette), &BUCKET_ORDER, &buckets, width, palette).block(block)
}

/// A column of a table of `T`s: its name, its narrowest width, and its cells. A `flexible`
/// column (text of any length) takes a share of the room the others leave, and its cell is given
/// that width to fit in (cut between words); the others hold numbers, and are as wide as their
/// widest, so that no number is ever cut.
struct Column<'r, T> {
    name: &'static str,
    width: u16,
    flexible: bool,
    cell: Cell<'r, T>,
}

/// A column's cell of an item, fitted to a width.
type Cell<'r, T> = Box<dyn Fn(&T, u16) -> Line<'static> + 'r>;

impl<'r, T> Column<'r, T> {
    fn new(name: &'static str, width: u16, cell: impl Fn(&T) -> Line<'static> + 'r) -> Column<'r, T> {
        Column { name, width, flexible: false, cell: Box::new(move |item, _| cell(item)) }
    }

    /// A column of text, cut between words to its width (the style of its line kept).
    fn flexible(name: &'static str, width: u16, text: impl Fn(&T) -> Line<'static> + 'r) -> Column<'r, T> {
        Column::fitted(name, width, move |item, width| {
            let line = text(item);
            let style = line.spans.first().map_or(line.style, |s| line.style.patch(s.style));
            Line::styled(clip(&line.to_string(), usize::from(width)), style)
        })
    }

    /// A column of text that `cell` fits to the width it is given.
    fn fitted(name: &'static str, width: u16, cell: impl Fn(&T, u16) -> Line<'static> + 'r) -> Column<'r, T> {
        Column { name, width, flexible: true, cell: Box::new(cell) }
    }

    /// The width the column needs for `items`: its name, its narrowest width and, unless flexible,
    /// its widest cell.
    fn needs(&self, items: &[&T]) -> u16 {
        let name = self.name.chars().count() as u16;
        self.width.max(name).max(if self.flexible { 0 } else { self.widest(items) })
    }

    /// The width of its widest cell, whole.
    fn widest(&self, items: &[&T]) -> u16 {
        let widest = items.iter().map(|i| self.cell(i, u16::MAX).width()).max().unwrap_or(0);
        u16::try_from(widest).unwrap_or(u16::MAX)
    }

    fn cell(&self, item: &T, width: u16) -> Line<'static> {
        (self.cell)(item, width)
    }
}

/// A table of `items` in an area `width` wide (its border included): the `columns` (most
/// important first) that fit, laid out in the reading `order` of their names, without a border.
fn fitted<T>(columns: &[Column<T>], order: &[&str], items: &[&T], width: u16, palette: Palette) -> Table<'static> {
    let shown = columns_that_fit(columns, order, items, width);
    let header = TableRow::new(shown.iter().map(|(c, _)| c.name).collect::<Vec<_>>()).style(palette.dim());
    let rows: Vec<TableRow> = items
        .iter()
        .map(|item| TableRow::new(shown.iter().map(|(c, w)| c.cell(item, *w)).collect::<Vec<_>>()))
        .collect();
    let widths: Vec<Constraint> = shown.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    Table::new(rows, widths).header(header)
}

/// The bucket table's columns, by importance: at 80 columns, the destination, what is free, how
/// soon it runs out and who holds it come before the other counts and the bar.
fn bucket_columns(report: &Report, palette: Palette) -> [Column<'_, Bucket>; 9] {
    let warn = palette.severity(Severity::Warn);
    [
        Column::flexible("local -> remote", 27, |b: &Bucket| Line::raw(format!("{} -> {}", b.local_ip, b.remote))),
        Column::new("free", 7, |b: &Bucket| Line::raw(number(u64::from(b.available)))),
        Column::new("used", 5, move |b: &Bucket| {
            Line::styled(format!("{:.0}%", b.usage_pct), palette.usage(report, b.usage_pct))
        }),
        Column::new("runs out", 8, move |b: &Bucket| {
            let soon = b.seconds_to_exhaustion.is_some() || b.available == 0;
            Line::styled(runs_out(b), if soon { warn } else { Style::new() })
        }),
        Column::flexible("owner", 13, |b: &Bucket| Line::raw(owner(b))),
        Column::new("held", 7, |b: &Bucket| Line::raw(number(u64::from(b.held)))),
        Column::new("new/s", 7, |b: &Bucket| Line::raw(b.churn.as_ref().map_or("-".into(), |c| rate(c.new_per_sec)))),
        Column::new("reuse", 7, |b: &Bucket| Line::raw(number(u64::from(b.reusable)))),
        Column::new("ports used", BAR, move |b: &Bucket| {
            bar(b.held, b.reusable, b.usable_ports, BAR, palette, report, b.usage_pct)
        }),
    ]
}

/// The bucket table in reading order: destination, bar, counts, then who.
const BUCKET_ORDER: [&str; 9] =
    ["local -> remote", "ports used", "held", "reuse", "free", "used", "new/s", "runs out", "owner"];

/// The columns that fit in a table `width` wide (its border included), in reading `order`, each
/// with its width.
fn columns_that_fit<'c, 'r, T>(
    columns: &'c [Column<'r, T>],
    order: &[&str],
    items: &[&T],
    width: u16,
) -> Vec<(&'c Column<'r, T>, u16)> {
    // Columns by importance, each shown only where the ones before it leave room (and a space).
    let mut room = width.saturating_sub(2);
    let mut shown: Vec<(&Column<T>, u16)> = Vec::new();
    for column in columns {
        let (needs, space) = (column.needs(items), u16::from(!shown.is_empty()));
        if room < needs + space {
            break;
        }
        room -= needs + space;
        shown.push((column, needs));
    }
    // What is left goes to the text columns: to each, the most important first, what its widest
    // cell wants; then what is still left, shared.
    for (column, width) in shown.iter_mut().filter(|(c, _)| c.flexible) {
        let more = column.widest(items).saturating_sub(*width).min(room);
        (*width, room) = (*width + more, room - more);
    }
    let flexible = shown.iter().filter(|(c, _)| c.flexible).count().max(1) as u16;
    for (i, (_, width)) in shown.iter_mut().filter(|(c, _)| c.flexible).enumerate() {
        *width += room / flexible + if i == 0 { room % flexible } else { 0 };
    }
    shown.sort_by_key(|(c, _)| order.iter().position(|o| *o == c.name));
    shown
}

/// Cells of a bucket's bar.
const BAR: u16 = 16;

/// A bar of `width` cells over `total`: `held` solid, `reusable` shaded, the rest free.
fn bar(held: u32, reusable: u32, total: u32, width: u16, palette: Palette, report: &Report, pct: f64) -> Line<'static> {
    let cells = |n: u32| -> usize {
        if total == 0 || n == 0 {
            0
        } else {
            ((f64::from(n) / f64::from(total) * f64::from(width)).round() as usize).max(1)
        }
    };
    let width = usize::from(width);
    let held_cells = cells(held).min(width);
    let reusable_cells = cells(reusable).min(width - held_cells);
    let free_cells = width - held_cells - reusable_cells;
    Line::from(vec![
        Span::styled("█".repeat(held_cells), palette.usage(report, pct)),
        Span::styled("▒".repeat(reusable_cells), palette.fg(Color::Blue)),
        Span::styled("░".repeat(free_cells), palette.dim()),
    ])
}

/// When the bucket runs out of ports: `now` when none is left (connect() to it is failing, as the
/// finding says), whatever its growth.
fn runs_out(bucket: &Bucket) -> String {
    match bucket.seconds_to_exhaustion {
        _ if bucket.available == 0 => "now".into(),
        Some(seconds) if seconds < 1.0 => "now".into(),
        Some(seconds) => duration(seconds),
        None if bucket.growth_per_sec.is_some() => "no".into(),
        None => "-".into(),
    }
}

fn owner(bucket: &Bucket) -> String {
    match bucket.owners.as_deref() {
        None => "?".into(),
        Some([]) if bucket.count == bucket.time_wait => "TIME_WAIT only".into(),
        Some([]) => "none found".into(),
        Some([first, rest @ ..]) => {
            let more = if rest.is_empty() { String::new() } else { format!(" +{}", rest.len()) };
            format!("{} {}{more}", first.pid, printable(&first.command))
        }
    }
}

/// Failed calls' processes shown (most failed calls first).
const FAILING_SHOWN: usize = 2;

/// The failed calls the tracepoints counted: the last interval's rates, the totals since the view
/// started, and the processes with most; `None` where the view does not trace (the status line
/// says why).
fn failed_lines(
    report: &Report,
    totals: Option<&FailedTotals>,
    width: u16,
    palette: Palette,
) -> Option<Vec<Line<'static>>> {
    let Some(Tracing::Tracepoints(f)) = &report.tracing else { return None };
    let empty = FailedTotals::default();
    let totals = totals.unwrap_or(&empty);
    let style = if f.connect + f.bind > 0 { palette.severity(Severity::Crit) } else { Style::new() };
    let now = format!("connect() {}/s  bind() {}/s", rate(f.connect_per_sec), rate(f.bind_per_sec));
    let since = format!("  since the start: {} connect(), {} bind()", number(totals.connect), number(totals.bind));
    let mut lines = vec![fit(vec![Span::styled(now, style), Span::styled(since, palette.dim())], width)];
    for (pid, p) in totals.worst().into_iter().take(FAILING_SHOWN) {
        let mut text = format!("pid {pid} {}:", printable(&p.command));
        if p.connect > 0 {
            text.push_str(&format!(" {} connect()", number(p.connect)));
            text.extend(p.remote.as_ref().map(|r| format!(" to {r}")));
        }
        if p.bind > 0 {
            text.push_str(&format!(" {} bind()", number(p.bind)));
        }
        lines.push(Line::raw(clip(&text, usize::from(width))));
    }
    Some(lines)
}

/// What the status line says of tracing: why it is off, or what its figures miss.
fn tracing_notes(report: &Report) -> Vec<String> {
    match &report.tracing {
        Some(Tracing::Untraced { reason }) => vec![format!("failed calls not traced: {reason}")],
        Some(Tracing::Tracepoints(f)) => crate::report::human::notes(f),
        None => Vec::new(),
    }
}

fn bind_budget(report: &Report, width: u16, palette: Palette) -> Paragraph<'static> {
    let bar_width = (width / 4).clamp(8, 24);
    let lines: Vec<Line> = report
        .sockets
        .local_ports
        .iter()
        .take(3)
        .map(|l| {
            let mut spans = vec![Span::raw(format!("{:<16} ", l.local_ip))];
            spans.extend(bar(l.ports_in_use, 0, l.usable_ports, bar_width, palette, report, l.usage_pct).spans);
            spans.push(Span::raw(format!(
                "  {} of {} ports in use, {} left for bind(addr, 0)",
                number(u64::from(l.ports_in_use)),
                number(u64::from(l.usable_ports)),
                number(u64::from(l.available))
            )));
            fit(spans, width)
        })
        .collect();
    Paragraph::new(lines).block(Block::bordered().title(" bind() budget per local address "))
}

fn conntrack_block(report: &Report, width: u16, palette: Palette) -> Paragraph<'static> {
    let Some(ct) = &report.conntrack else { return Paragraph::new("") };
    let mut lines = Vec::new();
    match (ct.count, ct.max) {
        (Some(count), Some(max)) if max > 0 => {
            let pct = count as f64 * 100.0 / max as f64;
            let mut spans = vec![Span::raw(format!("entries {:>9} of {:<9} {pct:>5.1}% ", number(count), number(max)))];
            let capped = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
            spans.extend(bar(capped(count), 0, capped(max), (width / 4).clamp(8, 24), palette, report, pct).spans);
            lines.push(Line::from(spans));
        }
        (Some(count), _) => lines.push(Line::raw(format!("entries {} (no limit)", number(count)))),
        _ => lines.push(Line::raw("entries: unreadable")),
    }
    match ct.table.as_ref().and_then(|t| t.snat_buckets.first()) {
        Some(b) => lines.push(fit(
            vec![
                Span::raw(format!("fullest NAT bucket {} -> {} {}: ", b.source_ip, b.remote, b.protocol)),
                Span::styled(format!("{:.0}% used", b.usage_pct), palette.usage(report, b.usage_pct)),
                Span::raw(format!(
                    ", {} left ({} free, {} TIME_WAIT)",
                    number(u64::from(b.available)),
                    number(u64::from(b.free)),
                    number(u64::from(b.reclaimable))
                )),
            ],
            width,
        )),
        None if ct.table.is_some() => lines.push(Line::raw("no source-NAT flow")),
        None => lines.push(fit(vec![Span::raw(ct.table_unavailable.clone().unwrap_or_default())], width)),
    }
    Paragraph::new(lines).block(Block::bordered().title(" conntrack "))
}

/// The findings in `area`, wrapped, from line `scroll` on; returns how many lines lie beyond the
/// last one shown. Where every finding fits with its change and its risk, those are shown too.
fn findings(frame: &mut Frame, area: Rect, report: &Report, scroll: u16, palette: Palette) -> u16 {
    let width = usize::from(area.width.saturating_sub(2));
    let rows = area.height.saturating_sub(2);
    let full = finding_lines(report, width, true, palette);
    let lines = if full.len() <= usize::from(rows) { full } else { finding_lines(report, width, false, palette) };
    let total = lines.len() as u16;
    let room = total.saturating_sub(rows);
    let scroll = scroll.min(room);
    let counts: Vec<String> = report.severity_counts().iter().map(|(s, n)| format!("{n} {}", s.name())).collect();
    let title = match (counts.is_empty(), room) {
        (true, _) => " findings ".to_string(),
        (false, 0) => format!(" findings: {} (twtune audit explains each) ", counts.join(", ")),
        (false, _) => format!(
            " findings: {}, lines {}-{} of {total} (Up/Down) ",
            counts.join(", "),
            scroll + 1,
            (scroll + rows).min(total)
        ),
    };
    let paragraph = Paragraph::new(lines).scroll((scroll, 0)).block(Block::bordered().title(title));
    frame.render_widget(paragraph, area);
    room
}

/// The lines of the findings at `width`: each one's severity, rule and message, wrapped under its
/// message; with `full`, the change it recommends and its risk under it.
fn finding_lines(report: &Report, width: usize, full: bool, palette: Palette) -> Vec<Line<'static>> {
    if report.findings.is_empty() {
        return vec![Line::raw("no findings")];
    }
    let mut lines = Vec::new();
    for f in &report.findings {
        let severity = format!("{:<5}", f.severity.name().to_uppercase());
        let head = format!("{severity}{} ", f.id);
        let mut wrapped = wrap(&format!("{head}{}", printable(&f.message)), width, 5).into_iter();
        if let Some(first) = wrapped.next() {
            lines.push(match first.strip_prefix(&head) {
                Some(rest) => Line::from(vec![
                    Span::styled(severity, palette.severity(f.severity)),
                    Span::styled(format!("{} ", f.id), palette.dim()),
                    Span::raw(rest.to_string()),
                ]),
                None => Line::raw(first),
            });
        }
        lines.extend(wrapped.map(Line::raw));
        if !full {
            continue;
        }
        if let (Some(key), Some(recommended)) = (&f.key, &f.recommended) {
            let now = f.current.as_deref().unwrap_or("?");
            lines.extend(wrap(&format!("     set {key}: {now} -> {recommended}"), width, 5).into_iter().map(Line::raw));
        }
        let risk = wrap(&format!("     risk: {}", printable(&f.risk)), width, 5);
        lines.extend(risk.into_iter().filter(|_| !f.risk.is_empty()).map(|l| Line::styled(l, palette.dim())));
    }
    lines
}

/// `--all-netns`: one row per namespace, and the findings of the selected one; returns how far they
/// can scroll.
fn namespaces(frame: &mut Frame, area: Rect, state: &State, palette: Palette) -> u16 {
    let data: &Data = state.shown();
    let rows = state.namespace_sort.sorted(&data.rows);
    let selected = state.selected_index();
    let [table_area, findings_area] =
        Layout::vertical([Constraint::Max(rows.len() as u16 + 3), Constraint::Min(3)]).areas(area);
    let title = format!(" network namespaces, by {} ", state.namespace_sort.name());
    let table = fitted(&namespace_columns(palette), &NAMESPACE_ORDER, &rows, table_area.width, palette)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    // The table scrolls to keep the highlighted namespace in view.
    let mut scroll = TableState::default().with_selected(Some(selected));
    frame.render_stateful_widget(table, table_area, &mut scroll);
    match rows.get(selected) {
        Some(row) => findings(frame, findings_area, &row.report, state.findings_scroll, palette),
        None => 0,
    }
}

/// The namespace table's columns, by importance: at 80 columns, the namespace, its findings, its
/// outbound TIME_WAIT and its fullest destination come before its rates, conntrack and inbound
/// TIME_WAIT.
fn namespace_columns(palette: Palette) -> [Column<'static, Row>; 8] {
    fn fullest(r: &Row) -> Option<&Bucket> {
        r.report.sockets.buckets.first()
    }
    [
        Column::flexible("namespace", 14, |r: &Row| Line::raw(printable(&r.label).into_owned())),
        Column::fitted("findings", 14, move |r: &Row, width| severity_counts(&r.report, width, palette)),
        Column::new("TW out", 6, |r: &Row| Line::raw(number(r.report.sockets.time_wait.outbound))),
        Column::new("used", 4, move |r: &Row| {
            fullest(r).map_or(Line::raw("-"), |b| {
                Line::styled(format!("{:.0}%", b.usage_pct), palette.usage(&r.report, b.usage_pct))
            })
        }),
        Column::flexible("fullest destination", 14, move |r: &Row| {
            Line::raw(fullest(r).map_or("-".into(), |b| printable(&b.remote).into_owned()))
        }),
        Column::new("new/s", 5, |r: &Row| {
            Line::raw(r.report.rates.as_ref().map_or("-".into(), |rates| rate(rates.active_opens_per_sec)))
        }),
        Column::new("conntrack", 9, |r: &Row| Line::raw(conntrack_use(&r.report))),
        Column::new("TW in", 5, |r: &Row| Line::raw(number(r.report.sockets.time_wait.inbound))),
    ]
}

/// The namespace table in reading order.
const NAMESPACE_ORDER: [&str; 8] =
    ["namespace", "TW out", "TW in", "fullest destination", "used", "new/s", "conntrack", "findings"];

/// How full the conntrack table is: a share of its limit, or a count where it has none.
fn conntrack_use(report: &Report) -> String {
    match report.conntrack.as_ref().map(|c| (c.count, c.max)) {
        Some((Some(count), Some(max))) if max > 0 => format!("{:.1}%", count as f64 * 100.0 / max as f64),
        Some((Some(count), _)) => number(count),
        _ => "-".into(),
    }
}

/// The findings by severity (`1 crit, 2 warn`) in at most `width` characters: as many whole
/// counts as fit, worst first, then `…`; coloured by the worst.
fn severity_counts(report: &Report, width: u16, palette: Palette) -> Line<'static> {
    let counts: Vec<String> = report.severity_counts().iter().map(|(s, n)| format!("{n} {}", s.name())).collect();
    let style = report.worst().map_or(Style::new(), |w| palette.severity(w));
    let width = usize::from(width);
    let text = (1..=counts.len())
        .rev()
        .map(|shown| counts[..shown].join(", ") + if shown < counts.len() { ", …" } else { "" })
        .find(|text| text.chars().count() <= width)
        .unwrap_or_else(|| clip(&counts.join(", "), width));
    Line::styled(if counts.is_empty() { "-".into() } else { text }, style)
}

fn help(frame: &mut Frame, area: Rect, state: &State) {
    let mut lines = vec![
        Line::raw("q, Ctrl-C   quit"),
        Line::raw("p, space    pause the view (reading goes on; p again shows the latest)"),
        Line::raw("s           next sort order"),
        Line::raw("?, h        this help (any key closes it)"),
        Line::raw("Ctrl-L      redraw; Ctrl-Z suspends (fg continues)"),
    ];
    if state.all {
        lines.push(Line::raw("Up/Down, k/j select a namespace; PgUp/PgDn scroll its findings"));
        lines.push(Line::raw("Enter       open it; Esc or Backspace goes back"));
    }
    if !state.in_table() {
        lines.push(Line::raw("Up/Down, k/j scroll the findings (PgUp/PgDn by ten lines)"));
    }
    lines.extend([
        Line::raw(""),
        Line::raw("held: ports connect() cannot hand out; reusable: TIME_WAIT connect() may take over;"),
        Line::raw("runs out: when free reaches 0 at the growth of the last interval."),
        Line::raw("Findings are the audit's rules; `twtune audit --sample 5s` explains each."),
    ]);
    let width = area.width.min(90);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height };
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" keys ")), popup);
}

/// `text` in lines of at most `width` characters, later lines indented by `indent` (the first
/// by the spaces it starts with), broken between
/// words but never inside a number (`28 232` stays on one line; see [`words`]); only a word longer
/// than a whole line is cut.
fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let width = width.max(indent + 1);
    let mut lines = Vec::new();
    // The first line keeps the spaces `text` starts with.
    let lead = (text.len() - text.trim_start_matches(' ').len()).min(width - 1);
    let (mut line, mut len, mut empty) = (" ".repeat(lead), lead, true);
    for word in words(text) {
        let mut word: Vec<char> = word.chars().collect();
        if !empty && len + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut line, " ".repeat(indent)));
            (len, empty) = (indent, true);
        }
        if !empty {
            line.push(' ');
            len += 1;
        }
        while len + word.len() > width {
            line.extend(word.drain(..width - len));
            lines.push(std::mem::replace(&mut line, " ".repeat(indent)));
            len = indent;
        }
        len += word.len();
        line.extend(word);
        empty = false;
    }
    lines.push(line);
    lines
}

/// The words of `text`, split at spaces except inside a number (`28 232`) and before a `%`.
fn words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for piece in text.split(' ').filter(|p| !p.is_empty()) {
        let joined = match words.last_mut() {
            Some(last)
                if last.ends_with(|c: char| c.is_ascii_digit()) && piece.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                Some(last)
            }
            Some(last) if piece.starts_with('%') => Some(last),
            _ => None,
        };
        match joined {
            Some(last) => {
                last.push(' ');
                last.push_str(piece);
            }
            None => words.push(piece.to_string()),
        }
    }
    words
}

/// `text` cut to `width` characters between words (never inside a number), with `…` where it was
/// cut; after a number, ` …`, so that the number reads as whole (`pid 4242 …`, not `pid 4242…`).
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let first = |width: usize| wrap(text, width, 0).into_iter().next().unwrap_or_default();
    let kept = first(width.saturating_sub(1));
    if !kept.ends_with(|c: char| c.is_ascii_digit()) {
        return format!("{kept}…");
    }
    let kept = first(width.saturating_sub(2));
    if kept.ends_with(|c: char| c.is_ascii_digit()) { format!("{kept} …") } else { format!("{kept}…") }
}

/// `spans` as a line of at most `width` characters: the last span cut between words to fit.
fn fit(mut spans: Vec<Span<'static>>, width: u16) -> Line<'static> {
    if let Some(last) = spans.pop() {
        let before: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        spans.push(Span::styled(clip(&last.content, usize::from(width).saturating_sub(before)), last.style));
    }
    Line::from(spans)
}

/// `12345` as `12 345`.
fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn rate(value: f64) -> String {
    if value >= 100.0 { number(value.round() as u64) } else { format!("{value:.1}") }
}

/// Seconds as `45s`, `4m05s`, `2h03m`; a day or more as `>1 day`.
fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        return format!("{:.0}ms", seconds * 1000.0);
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => ">1 day".into(),
    }
}

/// The time of day (UTC) of `at`.
fn clock(at: std::time::SystemTime) -> String {
    let s = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::state::Key;
    use crate::watch::state::tests::{Example, tick};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::time::{Duration, SystemTime};

    fn frame(state: &State, width: u16, height: u16, color: bool) -> (String, ratatui::buffer::Buffer) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|f| _ = draw(f, state, Palette { color })).expect("draw");
        let buffer = terminal.backend().buffer().clone();
        let text = (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n");
        (text, buffer)
    }

    #[test]
    fn the_detail_shows_time_wait_rates_buckets_budgets_and_findings() {
        let mut state = State::new(false, Duration::from_secs(1));
        state.update(tick(&[(1, "blue", &[(9, 25000), (2, 10)])], 120.0), SystemTime::UNIX_EPOCH);
        state.update(tick(&[(1, "blue", &[(9, 26000), (2, 10)])], 140.0), SystemTime::UNIX_EPOCH);
        let (text, _) = frame(&state, 140, 40, true);
        for piece in [
            "twtune watch  blue  every 1s  00:00:00 UTC",
            "outbound      26 010  holds ports",
            "connects            140 ▆█",
            "10.0.0.1 -> 10.0.0.9:80",
            "10.0.0.1 -> 10.0.0.2:80",
            "bind() budget",
            "findings: ",
            "CRIT",
            "q quit  p pause  s sort  Up/Down findings  ? help",
        ] {
            assert!(text.contains(piece), "{piece:?} missing from\n{text}");
        }
        let (crit, warn) = (text.find("CRIT").expect("crit"), text.find("WARN").expect("warn"));
        assert!(crit < warn, "worst first\n{text}");
        let nine = text.find("10.0.0.9:80").expect("bucket");
        let two = text.find("10.0.0.2:80").expect("bucket");
        assert!(nine < two, "fullest first\n{text}");
        state.key(Key::Char('s'));
        state.key(Key::Char('s'));
        state.key(Key::Char('s'));
        state.key(Key::Char('s'));
        let (text, _) = frame(&state, 140, 40, true);
        assert!(text.contains("by destination"), "{text}");
        assert!(text.find("10.0.0.2:80") < text.find("10.0.0.9:80"), "{text}");
    }

    /// A tick of namespace 1 whose tracepoints counted `connect` failed connect() of pid 4242 to
    /// 127.0.0.1:7201 over a second.
    fn traced_tick(connect: u64) -> crate::inspect::watch::Tick {
        use crate::model::failures::{FailingDestination, FailingProcess, Failures};
        let mut tick = tick(&[(1, "blue", &[(9, 25000)])], 120.0);
        let process = FailingProcess {
            pid: 4242,
            command: "python3".into(),
            container: None,
            connect,
            bind: 0,
            bind_local_ip: None,
        };
        let destination = FailingDestination {
            local_ip: "127.0.0.1".into(),
            remote: "127.0.0.1:7201".into(),
            connect,
            per_sec: connect as f64,
            pids: vec![4242],
        };
        let failures = Failures {
            seconds: 1.0,
            connect,
            connect_per_sec: connect as f64,
            processes: vec![process],
            destinations: vec![destination],
            lost: 3,
            ..Failures::default()
        };
        tick.namespaces[0].evidence.inspection.tracing = Some(Tracing::Tracepoints(failures));
        tick
    }

    #[test]
    fn traced_failures_show_their_rate_the_totals_since_the_start_and_the_process_at_80x24() {
        let mut state = State::new(false, Duration::from_secs(1));
        state.update(traced_tick(37), SystemTime::UNIX_EPOCH);
        state.update(traced_tick(3), SystemTime::UNIX_EPOCH);
        let (text, _) = frame(&state, 80, 24, false);
        for piece in [
            "failed calls, traced",
            "connect() 3.0/s  bind() 0.0/s  since the start: 40 connect(), 0 bind()",
            "pid 4242 python3: 40 connect() to 127.0.0.1:7201",
            "10.0.0.1 -> 10.0.0.9:80",
            "lost",
        ] {
            assert!(text.contains(piece), "{piece:?} missing from\n{text}");
        }
        assert!(text.find("failed calls") < text.find("10.0.0.9:80"), "the outage before the buckets\n{text}");

        let mut untraced = tick(&[(1, "blue", &[(9, 25000)])], 120.0);
        untraced.namespaces[0].evidence.inspection.tracing = Some(Tracing::Untraced { reason: "--no-trace".into() });
        state.update(untraced, SystemTime::UNIX_EPOCH);
        let (text, _) = frame(&state, 140, 24, false);
        assert!(text.contains("failed calls not traced: --no-trace"), "{text}");
        assert!(!text.contains("since the start"), "{text}");
    }

    #[test]
    fn colours_only_when_asked_for() {
        let mut state = State::new(false, Duration::from_secs(1));
        state.update(tick(&[(1, "blue", &[(9, 25000)])], 1.0), SystemTime::UNIX_EPOCH);
        let coloured = |color| {
            let (_, buffer) = frame(&state, 120, 30, color);
            buffer.content().iter().any(|cell| cell.fg != Color::Reset || cell.bg != Color::Reset)
        };
        assert!(coloured(true));
        assert!(!coloured(false));
    }

    #[test]
    fn a_small_terminal_gets_a_message_and_any_size_draws_without_panicking() {
        let mut state = State::new(true, Duration::from_secs(1));
        state.update(tick(&[(1, "a", &[(9, 100)]), (2, "b", &[])], 1.0), SystemTime::UNIX_EPOCH);
        let (text, _) = frame(&state, 40, 10, false);
        assert!(text.contains("needs at least 70x16"), "{text}");
        // Small but enough: the buckets and a finding keep their rows before the budgets do.
        state.key(Key::Enter);
        let (text, _) = frame(&state, 70, 20, false);
        assert!(text.contains("10.0.0.9:80") && text.contains("findings"), "{text}");
        state.key(Key::Back);
        for (w, h) in [(1, 1), (70, 16), (71, 17), (200, 60), (80, 24)] {
            frame(&state, w, h, false);
            state.key(Key::Enter);
            frame(&state, w, h, false);
            state.key(Key::Char('?'));
            frame(&state, w, h, true);
            state.key(Key::Back);
            state.key(Key::Back);
        }
    }

    #[test]
    fn at_80x24_the_owner_and_the_findings_fit_and_the_findings_scroll_and_at_200x50_they_are_whole() {
        let mut state = State::new(false, Duration::from_secs(1));
        state.update(tick(&[(1, "blue", &[(9, 25000), (2, 10)])], 120.0), SystemTime::UNIX_EPOCH);
        state.update(tick(&[(1, "blue", &[(9, 26000), (2, 10)])], 140.0), SystemTime::UNIX_EPOCH);
        let draw_at = |state: &State, width, height| {
            let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
            let mut room = 0;
            terminal.draw(|f| room = draw(f, state, Palette { color: false })).expect("draw");
            (frame(state, width, height, false).0, room)
        };
        let (small, room) = draw_at(&state, 80, 24);
        assert!(small.lines().all(|l| l.chars().count() == 80), "{small}");
        assert!(small.lines().any(|l| l.contains("owner") && l.contains("runs out")), "{small}");
        assert!(small.contains("lines 1-") && small.contains("(Up/Down)"), "{small}");
        assert!(room > 0, "more findings than rows at 80x24");
        // Down scrolls the findings by a line, up to their end.
        state.findings_room = room;
        let first = |text: &str| text.lines().skip_while(|l| !l.contains(" findings:")).nth(1).map(str::to_string);
        state.key(Key::Down);
        let (scrolled, _) = draw_at(&state, 80, 24);
        assert_ne!(first(&small), first(&scrolled), "{scrolled}");
        assert!(scrolled.contains("lines 2-"), "{scrolled}");
        for _ in 0..100 {
            state.key(Key::Down);
        }
        assert_eq!(state.findings_scroll, room);
        state.key(Key::PageUp);
        assert_eq!(state.findings_scroll, room.saturating_sub(10));

        // 200x50: every finding whole, with its risk, and no scrolling.
        state.findings_scroll = 0;
        let (large, room) = draw_at(&state, 200, 50);
        assert_eq!(room, 0, "{large}");
        assert!(large.contains("(twtune audit explains each)") && large.contains("risk: "), "{large}");
        for finding in &state.live.rows[0].report.findings {
            let words: Vec<&str> = finding.message.split_whitespace().collect();
            let shown: Vec<&str> = large.split(['│', ' ', '\n']).filter(|w| !w.is_empty()).collect();
            assert!(
                shown.windows(words.len()).any(|w| w == words.as_slice()),
                "{:?} not whole in\n{large}",
                finding.message
            );
        }
    }

    #[test]
    fn the_namespace_table_has_a_row_each_with_the_selection_highlighted() {
        let mut state = State::new(true, Duration::from_secs(1));
        state.update(
            tick(&[(1, "blue", &[(9, 25000)]), (2, "container 0123abcd\u{1b}[2J", &[])], 1.0),
            SystemTime::UNIX_EPOCH,
        );
        let (text, buffer) = frame(&state, 120, 30, false);
        assert!(text.contains("2 network namespaces"), "{text}");
        assert!(text.contains("blue"), "{text}");
        assert!(text.contains("container 0123abcd\\u{1b}[2J"), "escaped: {text}");
        let row = text.lines().position(|l| l.contains("blue")).expect("row") as u16;
        assert!(buffer[(2, row)].modifier.contains(Modifier::REVERSED), "the worst namespace is selected first");
        state.key(Key::Enter);
        let (text, _) = frame(&state, 120, 30, false);
        assert!(text.contains("Esc back") && text.contains("10.0.0.9:80"), "{text}");
    }

    /// The cells of the table whose header holds `first` of the column `names`: each column's name
    /// and each row's cells, cut at the columns' starts.
    fn table_cells(text: &str, names: &[&str]) -> Vec<Vec<(String, String)>> {
        let lines: Vec<Vec<char>> = text.lines().map(|l| l.chars().collect()).collect();
        let holds = |l: &Vec<char>| l.first() == Some(&'│') && l.iter().collect::<String>().contains(names[0]);
        let header = lines.iter().position(holds).expect("header");
        let head: String = lines[header].iter().collect();
        let mut starts: Vec<(usize, String)> = names
            .iter()
            .filter_map(|name| Some((head[..head.find(name)?].chars().count(), name.to_string())))
            .collect();
        starts.sort();
        let cells = |line: &Vec<char>| {
            let end = line.iter().rposition(|c| *c == '│').unwrap_or(line.len());
            let at = |i: usize| starts.get(i).map_or(end, |s: &(usize, String)| s.0);
            let cell = |i: usize| line[at(i)..at(i + 1)].iter().collect::<String>().trim().to_string();
            starts.iter().enumerate().map(|(i, (_, name))| (name.clone(), cell(i))).collect::<Vec<_>>()
        };
        lines[header + 1..].iter().take_while(|l| l.first() == Some(&'│')).map(cells).collect()
    }

    /// `shown` is `full`, or `full` cut between words with `…`.
    fn whole_or_cut_between_words(shown: &str, full: &str) -> bool {
        match shown.strip_suffix('…') {
            None => shown == full,
            Some(kept) => {
                let kept = kept.trim_end_matches([',', ' ']);
                full.starts_with(kept) && full[kept.len()..].starts_with([' ', ','])
            }
        }
    }

    #[test]
    fn the_namespace_table_drops_columns_by_importance_at_80x24_uses_200x50_and_never_cuts_a_number() {
        let mut state = State::new(true, Duration::from_secs(1));
        let long = "container 0123abcd (docker) web-frontend-production-eu-west";
        let namespaces: [Example; 3] =
            [(1, long, &[(9, 25000), (2, 10)]), (2, "pid 4242 (sleep)", &[(3, 700)]), (3, "blue", &[])];
        state.update(tick(&namespaces, 12345.0), SystemTime::UNIX_EPOCH);
        for (row, (outbound, inbound)) in state.live.rows.iter_mut().zip([(1234567, 98765), (700, 5), (0, 31337)]) {
            row.report.sockets.time_wait.outbound = outbound;
            row.report.sockets.time_wait.inbound = inbound;
        }
        let importance: Vec<&str> = namespace_columns(Palette { color: false }).iter().map(|c| c.name).collect();
        for (width, height) in [(80, 24), (200, 50)] {
            let (text, _) = frame(&state, width, height, false);
            assert!(text.lines().all(|l| l.chars().count() <= usize::from(width)), "{text}");
            let cut = text.match_indices('…').any(|(at, _)| text[..at].ends_with(|c: char| c.is_ascii_digit()));
            assert!(!cut, "a number cut:\n{text}");
            let table = table_cells(&text, &importance);
            let names: Vec<&str> = table[0].iter().map(|(name, _)| name.as_str()).collect();
            // Shown: the most important columns, whatever the order they are read in.
            let shown = importance.iter().take_while(|name| names.contains(name)).count();
            assert_eq!(shown, names.len(), "{names:?} are not the most important of {importance:?}:\n{text}");
            let rows = state.namespace_sort.sorted(&state.live.rows);
            assert_eq!(table.len(), rows.len(), "{text}");
            for (cells, row) in table.iter().zip(rows) {
                let r = &row.report;
                for (name, cell) in cells {
                    let digits = || cell.replace(' ', "").parse::<u64>().unwrap_or_else(|_| panic!("{cell:?}\n{text}"));
                    match name.as_str() {
                        "TW out" => assert_eq!(digits(), r.sockets.time_wait.outbound, "{text}"),
                        "TW in" => assert_eq!(digits(), r.sockets.time_wait.inbound, "{text}"),
                        "new/s" => assert_eq!(digits(), 12345, "{text}"),
                        "used" => {
                            let used = r.sockets.buckets.first().map_or("-".into(), |b| format!("{:.0}%", b.usage_pct));
                            assert_eq!(*cell, used, "{text}");
                        }
                        "conntrack" => assert_eq!(cell, "-", "{text}"),
                        "namespace" => assert!(whole_or_cut_between_words(cell, &row.label), "{cell:?}\n{text}"),
                        "fullest destination" => {
                            let remote = r.sockets.buckets.first().map_or("-", |b| b.remote.as_str());
                            assert!(whole_or_cut_between_words(cell, remote), "{cell:?}\n{text}");
                        }
                        "findings" => {
                            let counts: Vec<String> =
                                r.severity_counts().iter().map(|(s, n)| format!("{n} {}", s.name())).collect();
                            let counts = if counts.is_empty() { "-".into() } else { counts.join(", ") };
                            assert!(whole_or_cut_between_words(cell, &counts), "{cell:?}\n{text}");
                        }
                        other => panic!("unknown column {other:?}"),
                    }
                }
            }
            if width == 80 {
                assert!(names.len() >= 5 && names.len() < importance.len(), "{names:?}\n{text}");
            } else {
                assert_eq!(names.len(), importance.len(), "{text}");
                assert!(text.contains(long) && !text.contains('…'), "the room is used:\n{text}");
            }
        }
    }

    #[test]
    fn a_bucket_runs_out_in_a_time_now_or_not_at_all() {
        let mut state = State::new(false, Duration::from_secs(1));
        state.update(tick(&[(1, "a", &[(9, 100)])], 1.0), SystemTime::UNIX_EPOCH);
        let mut bucket = state.live.rows[0].report.sockets.buckets[0].clone();
        assert_eq!(runs_out(&bucket), "-", "not sampled");
        bucket.growth_per_sec = Some(0.0);
        assert_eq!(runs_out(&bucket), "no", "not growing");
        bucket.seconds_to_exhaustion = Some(245.0);
        assert_eq!(runs_out(&bucket), "4m05s");
        bucket.seconds_to_exhaustion = Some(0.0);
        assert_eq!(runs_out(&bucket), "now");
        // Nothing left: connect() is failing now, whether or not the bucket still grows.
        bucket.seconds_to_exhaustion = None;
        bucket.available = 0;
        assert_eq!(runs_out(&bucket), "now");
        bucket.growth_per_sec = None;
        assert_eq!(runs_out(&bucket), "now");
    }

    #[test]
    fn text_is_wrapped_and_cut_between_words_never_inside_a_number() {
        let text = "WARN ports.x 127.0.0.1 -> 127.0.0.1:7004 holds 300 of 28232 usable: 27 932 left (1.1 % gone)";
        for width in 6..=text.len() {
            let lines = wrap(text, width, 5);
            assert!(lines.iter().all(|l| l.chars().count() <= width), "{width}: {lines:?}");
            let letters = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            assert_eq!(letters(&lines.concat()), letters(text), "nothing lost at {width}");
            if width >= 13 {
                assert!(lines.iter().any(|l| l.contains("28232")), "{width}: {lines:?}");
                assert!(lines.iter().any(|l| l.contains("27 932")), "{width}: {lines:?}");
                assert!(lines.iter().any(|l| l.contains("1.1 %")), "{width}: {lines:?}");
            }
            let clipped = clip(text, width);
            assert!(clipped.chars().count() <= width, "{clipped:?}");
            assert!(!clipped.contains("2823…") && !clipped.contains("27 9…"), "{clipped:?}");
            // A number kept whole is set off from the `…`, so that it reads as whole.
            let digit_then_dots = clipped.ends_with('…') && clipped[..clipped.len() - 3].ends_with(char::is_numeric);
            assert!(!digit_then_dots, "{clipped:?}");
        }
        assert_eq!(wrap("  two leading", 40, 3), ["  two leading"]);
        assert_eq!(clip("  684 of 28 232 ports in use", 17), "  684 of 28 232 …");
        assert_eq!(clip("  684 of 28 232 ports in use", 16), "  684 of…");
    }

    #[test]
    fn numbers_and_durations_read_easily() {
        assert_eq!(number(0), "0");
        assert_eq!(number(1234567), "1 234 567");
        assert_eq!(duration(45.2), "45s");
        assert_eq!(duration(245.0), "4m05s");
        assert_eq!(duration(7380.0), "2h03m");
        assert_eq!(duration(1e9), ">1 day");
        assert_eq!(duration(0.5), "500ms");
        assert_eq!(rate(3.25), "3.2");
        assert_eq!(rate(1234.4), "1 234");
        assert_eq!(clock(SystemTime::UNIX_EPOCH + Duration::from_secs(86400 + 3723)), "01:02:03 UTC");
    }
}
