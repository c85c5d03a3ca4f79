//! Churn and lifetimes (docs/port-model.md, "Churn, lifetimes and forecasts"): what two reads an
//! interval apart say of connections that one read cannot. Which connections of the second read
//! are new (by the kernel's cookie, else by local port), how fast each bucket's connections come
//! and go and how long they live, and the counters' rates. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::records::TIME_WAIT_MS;
use crate::ports::PortSet;

/// Cookies kept from a read for the next (16 bytes each while a read is counted, 8 between reads:
/// 12 MiB at most); beyond, new connections are told by port.
pub(crate) const MAX_COOKIES: usize = 1 << 19;

/// Width of one bin of [`Ages`], in milliseconds.
const AGE_BIN_MS: u32 = 5_000;
/// Bins of [`Ages`]: TIME_WAIT lasts 60 s.
const AGE_BINS: usize = (TIME_WAIT_MS / AGE_BIN_MS) as usize;

/// The TIME_WAIT sockets of a bucket by age, in bins of 5 s, and the oldest's age (28 bytes a
/// bucket): when they entered TIME_WAIT, so how many closes the bucket had in each of the last
/// 60 s (without reuse none is taken over), and when each will free its port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ages {
    bins: [u16; AGE_BINS],
    oldest_ms: u32,
}

impl Ages {
    /// Counts a TIME_WAIT socket whose timer fires in `expires_ms`.
    pub(crate) fn add(&mut self, expires_ms: u32) {
        let age = TIME_WAIT_MS.saturating_sub(expires_ms);
        let bin = ((age / AGE_BIN_MS) as usize).min(AGE_BINS - 1);
        self.bins[bin] = self.bins[bin].saturating_add(1);
        self.oldest_ms = self.oldest_ms.max(age);
    }

    /// How many were counted.
    pub(crate) fn total(&self) -> u32 {
        self.bins.iter().map(|n| u32::from(*n)).sum()
    }

    /// The age of the oldest, in seconds (0 when there is none): how long the bucket has been
    /// closing connections, up to the 60 s TIME_WAIT remembers.
    pub(crate) fn oldest_seconds(&self) -> f64 {
        f64::from(self.oldest_ms) / 1000.0
    }

    /// How many entered TIME_WAIT within the last `seconds` (bins counted in proportion).
    pub(crate) fn younger_than(&self, seconds: f64) -> f64 {
        self.fraction_sum(|start, end| ((seconds - start) / (end - start)).clamp(0.0, 1.0))
    }

    /// How many are still in TIME_WAIT `seconds` from now (bins counted in proportion).
    pub(crate) fn still_held_after(&self, seconds: f64) -> f64 {
        let limit = f64::from(TIME_WAIT_MS) / 1000.0 - seconds;
        self.fraction_sum(|start, end| ((limit - start) / (end - start)).clamp(0.0, 1.0))
    }

    /// Each bin's count times the part of it `part(start, end)` says, taking its ages (in seconds)
    /// as spread evenly from its start to its end or to the oldest age, whichever comes first.
    fn fraction_sum(&self, part: impl Fn(f64, f64) -> f64) -> f64 {
        let width = f64::from(AGE_BIN_MS) / 1000.0;
        let oldest = self.oldest_seconds();
        let spread = |bin: usize| {
            let start = bin as f64 * width;
            let end = ((bin + 1) as f64 * width).min(oldest.max(start));
            if end > start { part(start, end) } else { part(start - 1e-9, start) }
        };
        self.bins.iter().enumerate().map(|(bin, n)| f64::from(*n) * spread(bin)).sum()
    }
}

/// The local ports of one bucket's sockets: a sorted list while short, a bitmap (8 KiB) beyond, so a
/// bucket costs at most 8 KiB and small buckets two bytes a socket.
#[derive(Clone, Debug)]
pub(crate) enum SeenPorts {
    Few(Vec<u16>),
    Many(Box<PortSet>),
}

impl SeenPorts {
    const FEW: usize = 4096;

    pub(crate) fn insert(&mut self, port: u16) {
        match self {
            SeenPorts::Few(ports) if ports.len() < SeenPorts::FEW => ports.push(port),
            SeenPorts::Few(ports) => {
                let mut set = PortSet::default();
                ports.iter().for_each(|p| set.insert(*p));
                set.insert(port);
                *self = SeenPorts::Many(Box::new(set));
            }
            SeenPorts::Many(set) => set.insert(port),
        }
    }

    /// Makes the list searchable, once every port is in.
    pub(crate) fn seal(&mut self) {
        if let SeenPorts::Few(ports) = self {
            ports.sort_unstable();
        }
    }

    pub(crate) fn contains(&self, port: u16) -> bool {
        match self {
            SeenPorts::Few(ports) => ports.binary_search(&port).is_ok(),
            SeenPorts::Many(set) => set.contains(port),
        }
    }
}

/// The new connections of each bucket (by bucket id, `buckets` of them): the cookies of this read
/// (sorted, with their bucket's id) that the previous read (sorted) did not have. One merge of two
/// sorted lists: a search per socket missed the cache at every step.
pub(crate) fn new_by_cookie(cookies: &[(u64, u32)], previous: &[u64], buckets: usize) -> Vec<u32> {
    let mut new_by_id = vec![0; buckets];
    let mut before = previous.iter().peekable();
    for (cookie, id) in cookies {
        while before.next_if(|b| *b < cookie).is_some() {}
        if before.peek() != Some(&cookie) {
            new_by_id[*id as usize] += 1;
        }
    }
    new_by_id
}

/// Connections of a bucket over a `--sample` interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Churn {
    /// New connections per second: sockets of the second read whose connection the first did not
    /// have (a connection that opened and closed in between without leaving a TIME_WAIT here is
    /// not seen).
    pub new_per_sec: f64,
    /// Connections this host closed first, per second: sockets that entered TIME_WAIT in the interval.
    pub closed_here_per_sec: f64,
    /// `closed_here_per_sec / new_per_sec`, at most 1; `null` without new connections.
    pub closed_here_share: Option<f64>,
    /// Mean lifetime of a connection in seconds by Little's law: live sockets / new per second;
    /// `null` without new connections.
    pub mean_lifetime_seconds: Option<f64>,
}

/// Counter rates over the sampling interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Rates {
    pub interval_seconds: f64,
    /// connect() calls per second (`ActiveOpens`): the demand on ephemeral ports.
    pub active_opens_per_sec: f64,
    /// Accepted connections per second (`PassiveOpens`).
    pub passive_opens_per_sec: f64,
    /// Sockets entering TIME_WAIT per second (`TW`): closes on this side.
    pub time_wait_entries_per_sec: f64,
    /// Connections that skipped TIME_WAIT per second because the table was full (`TCPTimeWaitOverflow`).
    pub overflow_per_sec: f64,
    /// TIME_WAIT tuples connect() took over per second (`TWRecycled`): reuse at work.
    pub time_wait_reused_per_sec: f64,
    /// SYNs retransmitted per second (`TCPSynRetrans`, SYN-ACKs of listeners included): each one a
    /// connect (or a handshake) that waited a whole retransmission timeout, 1 s at first.
    pub syn_retransmits_per_sec: f64,
}

/// Counters by name, as read.
type Counters = BTreeMap<String, i64>;

fn per_second(first: &Counters, second: &Counters, counter: &str, seconds: f64) -> f64 {
    let (Some(a), Some(b)) = (first.get(counter), second.get(counter)) else { return 0.0 };
    // Counters only grow; a smaller second value means a wrap or a reset: no rate.
    rate(b.saturating_sub(*a), seconds)
}

/// A counter's growth `delta` over `seconds` as a rate per second, to a tenth, as [`Rates`] gives
/// it (0 for a negative growth).
pub(crate) fn rate(delta: i64, seconds: f64) -> f64 {
    (delta.max(0) as f64 / seconds * 10.0).round() / 10.0
}

/// The counters' rates between two reads `seconds` apart.
pub(crate) fn rates(first: &Counters, second: &Counters, seconds: f64) -> Rates {
    Rates {
        interval_seconds: seconds,
        active_opens_per_sec: per_second(first, second, "ActiveOpens", seconds),
        passive_opens_per_sec: per_second(first, second, "PassiveOpens", seconds),
        time_wait_entries_per_sec: per_second(first, second, "TW", seconds),
        overflow_per_sec: per_second(first, second, "TCPTimeWaitOverflow", seconds),
        time_wait_reused_per_sec: per_second(first, second, "TWRecycled", seconds),
        syn_retransmits_per_sec: per_second(first, second, "TCPSynRetrans", seconds),
    }
}

/// How much each counter of `second` grew since `first` (0 for one `first` did not have, or one
/// that went backwards).
pub(crate) fn counter_growth(first: &Counters, second: &Counters) -> Counters {
    second
        .iter()
        .map(|(name, value)| (name.clone(), value.saturating_sub(first.get(name).copied().unwrap_or(*value)).max(0)))
        .collect()
}

/// How fast a bucket's connections come and go (see [`Churn`]), from what the second read counted
/// against the first, `seconds` before: `new` connections, `closed_here` (sockets that entered
/// TIME_WAIT since) and `live` sockets (neither TIME_WAIT nor listening).
pub(crate) fn churn(new: u32, closed_here: u32, live: u32, seconds: f64) -> Churn {
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let new_per_sec = f64::from(new) / seconds;
    let closed_here_per_sec = f64::from(closed_here) / seconds;
    let live = f64::from(live);
    Churn {
        new_per_sec: round(new_per_sec),
        closed_here_per_sec: round(closed_here_per_sec),
        closed_here_share: (new > 0).then(|| ((closed_here_per_sec / new_per_sec).min(1.0) * 100.0).round() / 100.0),
        // Little's law: the live sockets are the arrivals times how long each stays.
        mean_lifetime_seconds: (new > 0).then(|| (live / new_per_sec * 1000.0).round() / 1000.0),
    }
}

/// Width of a bin of [`LifetimeCounts`], in milliseconds, and how many there are (the last holds
/// every longer lifetime).
const LIFETIME_BIN_MS: u32 = 250;
const LIFETIME_BINS: usize = 121;
/// A connection living shorter than this served a request or a few at most.
pub(crate) const SHORT_LIFETIME_MS: u32 = 1_000;

/// The connections of one bucket this host closed during a window of reads, by how long each lived
/// (250 B a bucket that closed any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LifetimeCounts {
    /// Closes seen: a TIME_WAIT that entered TIME_WAIT since the read before.
    pub closed: u32,
    /// Of those, closes of connections no read saw live, between two reads under a second apart.
    short_unseen: u32,
    /// Of those, closes of connections live at the window's first read: how long they lived is
    /// not known.
    untimed: u32,
    /// The others by lifetime (the middle of what the reads allow), in bins of 250 ms.
    bins: [u16; LIFETIME_BINS],
}

impl Default for LifetimeCounts {
    fn default() -> Self {
        LifetimeCounts { closed: 0, short_unseen: 0, untimed: 0, bins: [0; LIFETIME_BINS] }
    }
}

impl LifetimeCounts {
    /// Counts a close of a connection that lived about `lifetime_ms`.
    pub(crate) fn lived(&mut self, lifetime_ms: u32) {
        self.closed += 1;
        let bin = ((lifetime_ms / LIFETIME_BIN_MS) as usize).min(LIFETIME_BINS - 1);
        self.bins[bin] = self.bins[bin].saturating_add(1);
    }

    /// Counts a close of a connection whose start is not known.
    pub(crate) fn untimed(&mut self) {
        self.closed += 1;
        self.untimed += 1;
    }

    /// Counts a close of a connection that opened and closed between two reads `gap_ms` apart: it
    /// lived less than the gap, so short when the gap is; else how long is not known.
    pub(crate) fn unseen(&mut self, gap_ms: u32) {
        if gap_ms <= SHORT_LIFETIME_MS {
            self.closed += 1;
            self.short_unseen += 1;
        } else {
            self.untimed();
        }
    }

    /// What the counts say, as the report shows it.
    pub(crate) fn summary(&self) -> Lifetimes {
        let short_bins = (SHORT_LIFETIME_MS / LIFETIME_BIN_MS) as usize;
        let short = self.short_unseen + self.bins[..short_bins].iter().map(|n| u32::from(*n)).sum::<u32>();
        let timed = self.closed - self.untimed;
        let typical = self.typical();
        Lifetimes {
            method: LifetimesMethod::Reads,
            closed_here: self.closed,
            timed,
            short_share: share(short, timed),
            typical_seconds: typical.map(|(seconds, _)| (seconds * 10.0).round() / 10.0),
            typical_share: typical.map(|(_, n)| share(n, timed)),
        }
    }

    /// The most common lifetime of a second or more, in seconds, and how many lived about that
    /// long: the bin with the most closes within a bin either side of it (the reads place a close
    /// within about a bin), and the mean of those three.
    fn typical(&self) -> Option<(f64, u32)> {
        let long = (SHORT_LIFETIME_MS / LIFETIME_BIN_MS) as usize..LIFETIME_BINS - 1;
        let around = |bin: usize| bin.saturating_sub(1).max(long.start)..=(bin + 1).min(LIFETIME_BINS - 2);
        let count = |bin: usize| -> u32 { around(bin).map(|b| u32::from(self.bins[b])).sum() };
        let (bin, n) = long.clone().map(|bin| (bin, count(bin))).filter(|(_, n)| *n > 0).max_by_key(|(_, n)| *n)?;
        let width = f64::from(LIFETIME_BIN_MS) / 1000.0;
        let sum: f64 = around(bin).map(|b| f64::from(self.bins[b]) * (b as f64 + 0.5) * width).sum();
        Some((sum / f64::from(n), n))
    }
}

fn share(part: u32, whole: u32) -> f64 {
    if whole == 0 { 0.0 } else { round(f64::from(part) / f64::from(whole)) }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// How [`Lifetimes`] were measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LifetimesMethod {
    Tracepoints,
    Reads,
}

/// How long the connections a bucket closed itself lived, over a window of reads (`--sample`):
/// the signature of a client that closes on a timeout (one lifetime) or after one request (short).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Lifetimes {
    /// How they were measured: each connection from connect() to close by the kernel's
    /// tracepoints, or the reads of the window following the connections' cookies (the fallback
    /// without tracing: not root, no perf events or tracefs, `--no-trace`).
    pub method: LifetimesMethod,
    /// Connections this host closed in the window (TIME_WAIT that entered it between reads).
    pub closed_here: u32,
    /// Of those, the ones whose lifetime the reads tell (not those live at the window's first read).
    pub timed: u32,
    /// Share of those that lived under a second (opened and closed between two reads, or seen
    /// live for less).
    pub short_share: f64,
    /// The most common lifetime of a second or more, in seconds (within a quarter of a second or
    /// so); `null` when none lived that long.
    pub typical_seconds: Option<f64>,
    /// Share of the timed closes that lived about `typical_seconds`.
    pub typical_share: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_bucket_records_its_ports_in_a_bitmap() {
        let mut ports = SeenPorts::Few(Vec::new());
        (1000..1000 + 5000u16).rev().for_each(|p| ports.insert(p));
        assert!(matches!(ports, SeenPorts::Many(_)));
        ports.seal();
        assert!(ports.contains(1000) && ports.contains(5999) && !ports.contains(6000) && !ports.contains(999));
        let mut few = SeenPorts::Few(vec![]);
        [7, 3, 5].iter().for_each(|p| few.insert(*p));
        few.seal();
        assert!(few.contains(3) && few.contains(7) && !few.contains(4));
    }
}
