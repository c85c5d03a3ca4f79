//! What the live view shows and how keys change it: the latest report of each namespace, the
//! history of its rates for the sparklines, the sort order, the selection, pause and help. Pure:
//! ticks and keys go in, nothing is read or drawn here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::inspect::watch::Tick;
use crate::model::connect::Bucket;
use crate::model::failures::{Failures, Tracing};
use crate::report::Report;

/// Rate samples kept per series: ten minutes at the default interval.
pub(crate) const HISTORY: usize = 600;

/// One namespace as the view shows it.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub inode: u64,
    pub label: String,
    pub report: Report,
}

/// The recent values of the four rates, oldest first (single precision: about 10 KiB a namespace).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct History {
    pub connects: VecDeque<f32>,
    pub accepts: VecDeque<f32>,
    pub time_wait_entries: VecDeque<f32>,
    pub time_wait_reused: VecDeque<f32>,
}

impl History {
    fn push(&mut self, report: &Report) {
        let Some(rates) = &report.rates else { return };
        for (series, value) in [
            (&mut self.connects, rates.active_opens_per_sec),
            (&mut self.accepts, rates.passive_opens_per_sec),
            (&mut self.time_wait_entries, rates.time_wait_entries_per_sec),
            (&mut self.time_wait_reused, rates.time_wait_reused_per_sec),
        ] {
            if series.len() == HISTORY {
                series.pop_front();
            }
            series.push_back(value as f32);
        }
    }
}

/// Processes whose failed calls a namespace's totals name; the calls of any others still count
/// in the totals.
pub(crate) const MAX_FAILING: usize = 64;

/// The failed connect() and bind() calls of one namespace since the view started: each tick
/// traced the interval since the one before, so the totals are exact where each tick's are.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FailedTotals {
    pub connect: u64,
    pub bind: u64,
    /// Per pid: its command, its failed calls, and where its last failed connect() went.
    pub processes: BTreeMap<u32, FailingTotal>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FailingTotal {
    pub command: String,
    pub connect: u64,
    pub bind: u64,
    pub remote: Option<String>,
}

impl FailedTotals {
    fn add(&mut self, f: &Failures) {
        self.connect += f.connect;
        self.bind += f.bind;
        for p in &f.processes {
            if self.processes.len() >= MAX_FAILING && !self.processes.contains_key(&p.pid) {
                continue;
            }
            let total = self.processes.entry(p.pid).or_default();
            total.command.clone_from(&p.command);
            total.connect += p.connect;
            total.bind += p.bind;
            if let Some(d) = f.destinations.iter().find(|d| d.pids.contains(&p.pid)) {
                total.remote = Some(d.remote.clone());
            }
        }
    }

    /// The processes, most failed calls first.
    pub(crate) fn worst(&self) -> Vec<(u32, &FailingTotal)> {
        let mut listed: Vec<(u32, &FailingTotal)> = self.processes.iter().map(|(pid, t)| (*pid, t)).collect();
        listed.sort_by(|a, b| (b.1.connect + b.1.bind).cmp(&(a.1.connect + a.1.bind)).then(a.0.cmp(&b.0)));
        listed
    }
}

/// What was read: the rows and their history.
#[derive(Clone, Debug, Default)]
pub(crate) struct Data {
    pub rows: Vec<Row>,
    pub history: HashMap<u64, History>,
    /// Per namespace, the failed calls the tracepoints counted since the view started.
    pub failed: HashMap<u64, FailedTotals>,
    pub notes: Vec<String>,
    /// When the last tick arrived, and how long its read took.
    pub at: Option<SystemTime>,
    pub took: Duration,
    pub ticks: u64,
}

/// How destination buckets are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BucketSort {
    /// Fewest ports left first (the audit's order).
    Fullest,
    TimeWait,
    /// Most new connections per second first.
    Churn,
    /// Soonest to run out first.
    Exhaustion,
    Destination,
}

impl BucketSort {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BucketSort::Fullest => "fullest",
            BucketSort::TimeWait => "TIME_WAIT",
            BucketSort::Churn => "new/s",
            BucketSort::Exhaustion => "runs out",
            BucketSort::Destination => "destination",
        }
    }

    fn next(self) -> BucketSort {
        match self {
            BucketSort::Fullest => BucketSort::TimeWait,
            BucketSort::TimeWait => BucketSort::Churn,
            BucketSort::Churn => BucketSort::Exhaustion,
            BucketSort::Exhaustion => BucketSort::Destination,
            BucketSort::Destination => BucketSort::Fullest,
        }
    }

    /// The buckets in this order (ties keep the audit's order).
    pub(crate) fn sorted(self, buckets: &[Bucket]) -> Vec<&Bucket> {
        let mut sorted: Vec<&Bucket> = buckets.iter().collect();
        let new = |b: &Bucket| b.churn.as_ref().map_or(0.0, |c| c.new_per_sec);
        let eta = |b: &Bucket| b.seconds_to_exhaustion.unwrap_or(f64::INFINITY);
        match self {
            BucketSort::Fullest => {}
            BucketSort::TimeWait => sorted.sort_by_key(|b| std::cmp::Reverse(b.time_wait)),
            BucketSort::Churn => sorted.sort_by(|a, b| new(b).total_cmp(&new(a))),
            BucketSort::Exhaustion => sorted.sort_by(|a, b| eta(a).total_cmp(&eta(b))),
            BucketSort::Destination => {
                sorted.sort_by(|a, b| (&a.remote, &a.local_ip).cmp(&(&b.remote, &b.local_ip)));
            }
        }
        sorted
    }
}

/// How namespaces are ordered (`--all-netns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NamespaceSort {
    /// Worst finding first, then most findings.
    Findings,
    /// Most outbound TIME_WAIT first.
    TimeWait,
    /// Fullest destination bucket first.
    Fullest,
    Name,
}

impl NamespaceSort {
    pub(crate) fn name(self) -> &'static str {
        match self {
            NamespaceSort::Findings => "findings",
            NamespaceSort::TimeWait => "TIME_WAIT",
            NamespaceSort::Fullest => "fullest",
            NamespaceSort::Name => "name",
        }
    }

    fn next(self) -> NamespaceSort {
        match self {
            NamespaceSort::Findings => NamespaceSort::TimeWait,
            NamespaceSort::TimeWait => NamespaceSort::Fullest,
            NamespaceSort::Fullest => NamespaceSort::Name,
            NamespaceSort::Name => NamespaceSort::Findings,
        }
    }

    /// The rows in this order.
    pub(crate) fn sorted(self, rows: &[Row]) -> Vec<&Row> {
        let mut sorted: Vec<&Row> = rows.iter().collect();
        let usage = |r: &Row| r.report.sockets.buckets.first().map_or(0.0, |b| b.usage_pct);
        match self {
            NamespaceSort::Findings => sorted.sort_by(|a, b| {
                (b.report.worst(), b.report.findings.len()).cmp(&(a.report.worst(), a.report.findings.len()))
            }),
            NamespaceSort::TimeWait => {
                sorted.sort_by_key(|r| std::cmp::Reverse(r.report.sockets.time_wait.outbound));
            }
            NamespaceSort::Fullest => sorted.sort_by(|a, b| usage(b).total_cmp(&usage(a))),
            NamespaceSort::Name => sorted.sort_by(|a, b| a.label.cmp(&b.label)),
        }
        sorted
    }
}

/// What a key asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Redraw,
    /// Clear the terminal, then draw.
    Repaint,
    /// Give the terminal back and stop until continued.
    Suspend,
    Quit,
    Nothing,
}

/// A key, as the view understands it (the loop maps terminal events to these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Enter,
    Back,
    Interrupt,
    /// Ctrl-L: draw everything again (something else wrote on the terminal).
    Redraw,
    /// Ctrl-Z: stop as a job, the terminal given back.
    Suspend,
}

/// The whole state of the view.
#[derive(Clone, Debug)]
pub(crate) struct State {
    /// `--all-netns`: a table of namespaces first.
    pub all: bool,
    pub interval: Duration,
    pub live: Data,
    /// While paused, the data as it was when `p` was pressed; reading goes on into `live`.
    pub frozen: Option<Data>,
    pub bucket_sort: BucketSort,
    pub namespace_sort: NamespaceSort,
    /// The highlighted namespace of the table: it stays highlighted when the order changes.
    pub selected: Option<u64>,
    /// The namespace opened with Enter (`--all-netns`).
    pub opened: Option<u64>,
    pub help: bool,
    /// The first line of the findings shown, and how far they can scroll (as the last frame
    /// drawn found: it depends on the terminal's size).
    pub findings_scroll: u16,
    pub findings_room: u16,
}

impl State {
    pub(crate) fn new(all: bool, interval: Duration) -> State {
        State {
            all,
            interval,
            live: Data::default(),
            frozen: None,
            bucket_sort: BucketSort::Fullest,
            namespace_sort: NamespaceSort::Findings,
            selected: None,
            opened: None,
            help: false,
            findings_scroll: 0,
            findings_room: 0,
        }
    }

    /// What the view draws: the frozen data while paused, else the latest.
    pub(crate) fn shown(&self) -> &Data {
        self.frozen.as_ref().unwrap_or(&self.live)
    }

    pub(crate) fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    /// Takes in a tick: each namespace judged by the rules, its rates added to its history.
    /// Namespaces that are gone lose their history.
    pub(crate) fn update(&mut self, tick: Tick, at: SystemTime) {
        let rows: Vec<Row> = tick
            .namespaces
            .into_iter()
            .map(|w| Row {
                inode: w.inode,
                label: w.label,
                report: Report::judge(w.evidence.inspection, None, w.evidence.rates),
            })
            .collect();
        let data = &mut self.live;
        data.history.retain(|inode, _| rows.iter().any(|r| r.inode == *inode));
        data.failed.retain(|inode, _| rows.iter().any(|r| r.inode == *inode));
        for row in &rows {
            data.history.entry(row.inode).or_default().push(&row.report);
            if let Some(Tracing::Tracepoints(f)) = &row.report.tracing {
                data.failed.entry(row.inode).or_default().add(f);
            }
        }
        data.rows = rows;
        data.notes = tick.notes;
        data.at = Some(at);
        data.took = tick.took;
        data.ticks += 1;
        if !self.paused() {
            self.forget_gone();
        }
    }

    /// Closes an opened namespace that is gone, and highlights the first row when none is (so
    /// that the row under Enter does not change as the order does).
    fn forget_gone(&mut self) {
        let rows = &self.shown().rows;
        let listed = |inode: Option<u64>| inode.is_some_and(|inode| rows.iter().any(|r| r.inode == inode));
        let opened_gone = self.opened.is_some() && !listed(self.opened);
        let first =
            (self.all && !listed(self.selected)).then(|| self.namespace_sort.sorted(rows).first().map(|r| r.inode));
        if opened_gone {
            self.opened = None;
        }
        if let Some(first) = first {
            self.selected = first;
        }
    }

    /// The position of the highlighted namespace in the table's order (the first when none is, or
    /// it is gone).
    pub(crate) fn selected_index(&self) -> usize {
        let rows = self.namespace_sort.sorted(&self.shown().rows);
        self.selected.and_then(|inode| rows.iter().position(|r| r.inode == inode)).unwrap_or(0)
    }

    /// Highlights the namespace `step` rows away from the highlighted one, within the table; its
    /// findings are shown from their first line.
    fn select(&mut self, step: isize) {
        let rows = self.namespace_sort.sorted(&self.shown().rows);
        let at = self.selected_index().saturating_add_signed(step).min(rows.len().saturating_sub(1));
        self.selected = rows.get(at).map(|r| r.inode);
        self.findings_scroll = 0;
    }

    /// The namespace the detailed view shows: the only one, or the one opened.
    pub(crate) fn detail(&self) -> Option<&Row> {
        let rows = &self.shown().rows;
        match (self.all, self.opened) {
            (false, _) => rows.first(),
            (true, Some(inode)) => rows.iter().find(|r| r.inode == inode),
            (true, None) => None,
        }
    }

    /// Reacts to a key.
    pub(crate) fn key(&mut self, key: Key) -> Action {
        if self.help {
            // Any key closes the help; q and Ctrl-C still quit.
            self.help = false;
            return if matches!(key, Key::Char('q') | Key::Interrupt) { Action::Quit } else { Action::Redraw };
        }
        match key {
            Key::Char('q') | Key::Interrupt => return Action::Quit,
            Key::Char('?' | 'h') => self.help = true,
            Key::Char('p' | ' ') => {
                self.frozen = if self.paused() { None } else { Some(self.live.clone()) };
                self.forget_gone();
            }
            Key::Redraw => return Action::Repaint,
            Key::Suspend => return Action::Suspend,
            Key::Char('s') if self.in_table() => self.namespace_sort = self.namespace_sort.next(),
            Key::Char('s') => self.bucket_sort = self.bucket_sort.next(),
            Key::Up | Key::Char('k') if self.in_table() => self.select(-1),
            Key::Down | Key::Char('j') if self.in_table() => self.select(1),
            Key::Up | Key::Char('k') => self.scroll(-1),
            Key::Down | Key::Char('j') => self.scroll(1),
            Key::PageUp => self.scroll(-10),
            Key::PageDown => self.scroll(10),
            Key::Enter if self.in_table() => {
                let rows = self.namespace_sort.sorted(&self.shown().rows);
                match rows.get(self.selected_index()) {
                    Some(row) => self.opened = Some(row.inode),
                    None => return Action::Nothing,
                }
                self.findings_scroll = 0;
            }
            Key::Back if self.all && self.opened.is_some() => {
                self.opened = None;
                self.findings_scroll = 0;
            }
            _ => return Action::Nothing,
        }
        Action::Redraw
    }

    /// Scrolls the findings by `lines`, within what the last frame had beyond its last line.
    fn scroll(&mut self, lines: i32) {
        let to = i32::from(self.findings_scroll).saturating_add(lines).clamp(0, i32::from(self.findings_room));
        self.findings_scroll = u16::try_from(to).unwrap_or(0);
    }

    /// Whether the namespace table is on screen (`--all-netns`, none opened).
    pub(crate) fn in_table(&self) -> bool {
        self.all && self.detail().is_none()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inspect::evidence::Evidence;
    use crate::inspect::watch::Watched;
    use crate::model::churn::Rates;
    use crate::model::records::TcpState;
    use crate::testing::Host;

    fn rates(connects: f64) -> Rates {
        Rates {
            interval_seconds: 1.0,
            active_opens_per_sec: connects,
            passive_opens_per_sec: 0.0,
            time_wait_entries_per_sec: connects,
            overflow_per_sec: 0.0,
            time_wait_reused_per_sec: 0.0,
            syn_retransmits_per_sec: 0.0,
        }
    }

    /// A namespace of a test tick: inode, label, and (n, count): `count` TIME_WAIT sockets toward
    /// 10.0.0.<n>:80.
    pub(crate) type Example<'a> = (u64, &'a str, &'a [(u8, u16)]);

    /// A tick of these namespaces, each connecting at `connects` per second.
    pub(crate) fn tick(namespaces: &[Example], connects: f64) -> Tick {
        Tick {
            namespaces: namespaces
                .iter()
                .map(|(inode, label, buckets)| {
                    let mut host = Host::defaults();
                    for (i, (n, count)) in buckets.iter().enumerate() {
                        let first_port = 33000 + 1000 * i as u16;
                        host = host.outbound(*count, TcpState::TimeWait, first_port, &format!("10.0.0.{n}:80"));
                    }
                    Watched {
                        inode: *inode,
                        label: (*label).to_string(),
                        evidence: Evidence {
                            inspection: host.inspection(),
                            rates: Some(rates(connects)),
                            other_namespaces: None,
                        },
                    }
                })
                .collect(),
            notes: Vec::new(),
            took: Duration::from_millis(3),
        }
    }

    #[test]
    fn history_keeps_the_last_ten_minutes_of_each_namespace_and_forgets_the_gone() {
        let mut state = State::new(true, Duration::from_secs(1));
        for i in 0..(HISTORY + 5) {
            state.update(tick(&[(1, "a", &[]), (2, "b", &[])], i as f64), SystemTime::now());
        }
        let history = &state.live.history[&1];
        assert_eq!(history.connects.len(), HISTORY);
        assert_eq!(history.connects.front().copied(), Some(5.0));
        assert_eq!(history.connects.back().copied(), Some((HISTORY + 4) as f32));
        state.update(tick(&[(2, "b", &[])], 1.0), SystemTime::now());
        assert!(!state.live.history.contains_key(&1));
        assert_eq!(state.live.ticks, HISTORY as u64 + 6);
    }

    #[test]
    fn pause_freezes_what_is_shown_while_reading_goes_on() {
        let mut state = State::new(false, Duration::from_secs(1));
        state.update(tick(&[(1, "a", &[(1, 5)])], 1.0), SystemTime::now());
        assert_eq!(state.key(Key::Char('p')), Action::Redraw);
        state.update(tick(&[(1, "a", &[(1, 9)])], 2.0), SystemTime::now());
        assert_eq!(state.shown().rows[0].report.sockets.time_wait.total, 5);
        assert_eq!(state.live.rows[0].report.sockets.time_wait.total, 9);
        state.key(Key::Char('p'));
        assert_eq!(state.shown().rows[0].report.sockets.time_wait.total, 9);
        assert_eq!(state.shown().history[&1].connects, [1.0, 2.0]);
    }

    #[test]
    fn s_cycles_the_order_of_buckets_and_of_namespaces() {
        let mut single = State::new(false, Duration::from_secs(1));
        single.update(tick(&[(1, "a", &[(9, 30), (2, 10)])], 0.0), SystemTime::now());
        let order = |s: &State| -> Vec<String> {
            s.bucket_sort.sorted(&s.shown().rows[0].report.sockets.buckets).iter().map(|b| b.remote.clone()).collect()
        };
        assert_eq!(order(&single), ["10.0.0.9:80", "10.0.0.2:80"]);
        let mut seen = vec![single.bucket_sort];
        for _ in 0..5 {
            single.key(Key::Char('s'));
            seen.push(single.bucket_sort);
        }
        assert_eq!(seen.first(), seen.last(), "the order comes round again: {seen:?}");
        while single.bucket_sort != BucketSort::Destination {
            single.key(Key::Char('s'));
        }
        assert_eq!(order(&single), ["10.0.0.2:80", "10.0.0.9:80"]);

        let mut all = State::new(true, Duration::from_secs(1));
        all.update(tick(&[(1, "zeta", &[(1, 50)]), (2, "alpha", &[(1, 5)])], 0.0), SystemTime::now());
        let names = |s: &State| -> Vec<String> {
            s.namespace_sort.sorted(&s.shown().rows).iter().map(|r| r.label.clone()).collect()
        };
        all.key(Key::Char('s'));
        assert_eq!(all.namespace_sort, NamespaceSort::TimeWait);
        assert_eq!(names(&all), ["zeta", "alpha"]);
        while all.namespace_sort != NamespaceSort::Name {
            all.key(Key::Char('s'));
        }
        assert_eq!(names(&all), ["alpha", "zeta"]);
        assert_eq!(all.bucket_sort, BucketSort::Fullest, "the table's key leaves the buckets' order alone");
    }

    #[test]
    fn enter_opens_the_selected_namespace_and_back_returns_to_the_table() {
        let mut state = State::new(true, Duration::from_secs(1));
        state.update(tick(&[(1, "a", &[]), (2, "b", &[]), (3, "c", &[])], 0.0), SystemTime::now());
        state.namespace_sort = NamespaceSort::Name;
        assert_eq!(state.key(Key::Up), Action::Redraw);
        assert_eq!(state.selected_index(), 0);
        state.key(Key::Down);
        state.key(Key::Char('j'));
        state.key(Key::Down);
        assert_eq!(state.selected_index(), 2, "the selection stops at the last row");
        // Another order: the same namespace stays highlighted.
        state.namespace_sort = NamespaceSort::Findings;
        let rows = state.namespace_sort.sorted(&state.shown().rows);
        assert_eq!(rows[state.selected_index()].label, "c");
        state.namespace_sort = NamespaceSort::Name;
        state.key(Key::Enter);
        assert_eq!(state.detail().map(|r| r.label.as_str()), Some("c"));
        assert!(!state.in_table());
        assert_eq!(state.key(Key::Back), Action::Redraw);
        assert!(state.detail().is_none());
        // A namespace that went away closes its view.
        state.key(Key::Enter);
        state.update(tick(&[(1, "a", &[])], 0.0), SystemTime::now());
        assert!(state.detail().is_none());
        assert_eq!(state.selected_index(), 0);
    }

    #[test]
    fn a_namespace_gone_while_paused_closes_on_resume_and_the_keys_are_the_table_s_again() {
        let mut state = State::new(true, Duration::from_secs(1));
        state.update(tick(&[(1, "a", &[(9, 5)]), (2, "b", &[])], 0.0), SystemTime::now());
        state.namespace_sort = NamespaceSort::Name;
        state.selected = Some(1);
        state.key(Key::Enter);
        assert_eq!(state.detail().map(|r| r.inode), Some(1));
        state.key(Key::Char('p'));
        state.update(tick(&[(2, "b", &[])], 0.0), SystemTime::now());
        assert_eq!(state.detail().map(|r| r.inode), Some(1), "paused: still shown as it was");
        state.key(Key::Char('p'));
        assert!(state.detail().is_none() && state.in_table(), "resumed: back to the table");
        assert_eq!(state.selected, Some(2), "the highlight moves to a namespace that is there");
        state.key(Key::Char('s'));
        assert_eq!(state.namespace_sort, NamespaceSort::Findings, "s orders the table");
    }

    #[test]
    fn the_highlight_starts_on_the_first_row_and_stays_on_its_namespace() {
        let mut state = State::new(true, Duration::from_secs(1));
        state.namespace_sort = NamespaceSort::Name;
        state.update(tick(&[(1, "b", &[]), (2, "c", &[])], 0.0), SystemTime::now());
        assert_eq!(state.selected, Some(1));
        // A namespace sorted before it appears: the highlight stays on "b".
        state.update(tick(&[(1, "b", &[]), (2, "c", &[]), (3, "a", &[])], 0.0), SystemTime::now());
        assert_eq!(state.selected, Some(1));
        assert_eq!(state.selected_index(), 1);
        assert_eq!(state.key(Key::Redraw), Action::Repaint);
        assert_eq!(state.key(Key::Suspend), Action::Suspend);
    }

    #[test]
    fn help_is_closed_by_any_key_and_q_or_ctrl_c_quit_from_anywhere() {
        let mut state = State::new(false, Duration::from_secs(1));
        assert_eq!(state.key(Key::Char('?')), Action::Redraw);
        assert!(state.help);
        assert_eq!(state.key(Key::Char('x')), Action::Redraw);
        assert!(!state.help);
        assert_eq!(state.key(Key::Char('x')), Action::Nothing);
        state.key(Key::Char('?'));
        assert_eq!(state.key(Key::Char('q')), Action::Quit);
        assert_eq!(state.key(Key::Interrupt), Action::Quit);
    }
}
