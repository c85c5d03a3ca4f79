//! Lifetimes of connections by who closed first, as the tracepoints measure them
//! ([`crate::model::closes`] follows the connections): a histogram of fine bins (four per doubling
//! of the lifetime) to find one lifetime most share, and the report's bins. Pure.

use serde::Serialize;

use crate::model::churn::{Lifetimes, LifetimesMethod, SHORT_LIFETIME_MS};
use crate::model::records::Container;

/// Processes named per bucket in a report.
const MAX_NAMED: usize = 5;
/// Fine bins: four per doubling of the lifetime in microseconds, from 16 µs (bin 0 holds shorter
/// ones) to 2^32 µs (71 min; the last bin holds longer ones).
const BINS: usize = 117;
/// The report's bins: under 1 ms, 10 ms, 100 ms, 1 s, 10 s, 60 s, and longer.
const COARSE_US: [u64; 6] = [1_000, 10_000, 100_000, 1_000_000, 10_000_000, 60_000_000];
/// With traced lifetimes, the shortest that may be a timeout's: below, a connection served a
/// request or a few (a timeout under a quarter of a second is rare; a request over it is slow).
pub(crate) const MIN_TIMEOUT_MS: u64 = 250;

/// The fine bin of a lifetime of `us` microseconds.
fn bin(us: u64) -> usize {
    if us < 16 {
        return 0;
    }
    let log = u64::from(63 - us.leading_zeros());
    let quarter = (us >> (log - 2)) & 3;
    (((log - 4) * 4 + quarter + 1) as usize).min(BINS - 1)
}

/// The shortest lifetime of fine bin `b`, in microseconds.
fn bin_start(b: usize) -> u64 {
    if b == 0 {
        return 0;
    }
    let (log, quarter) = ((b - 1) / 4 + 4, (b - 1) % 4);
    ((4 + quarter) as u64) << (log - 2)
}

/// Lifetimes of one side's closes: counts and the sum of lifetimes per fine bin, and counts per
/// report bin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Histogram {
    counts: [u32; BINS],
    sum_us: [u64; BINS],
    coarse: [u32; COARSE_US.len() + 1],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: [0; BINS], sum_us: [0; BINS], coarse: [0; COARSE_US.len() + 1] }
    }
}

impl Histogram {
    pub(crate) fn add(&mut self, us: u64) {
        let b = bin(us);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.sum_us[b] = self.sum_us[b].saturating_add(us);
        let c = COARSE_US.iter().position(|&limit| us < limit).unwrap_or(COARSE_US.len());
        self.coarse[c] = self.coarse[c].saturating_add(1);
    }

    fn merge(&mut self, other: &Histogram) {
        for b in 0..BINS {
            self.counts[b] = self.counts[b].saturating_add(other.counts[b]);
            self.sum_us[b] = self.sum_us[b].saturating_add(other.sum_us[b]);
        }
        for (c, n) in self.coarse.iter_mut().zip(other.coarse) {
            *c = c.saturating_add(n);
        }
    }

    fn total(&self) -> u32 {
        self.coarse.iter().sum()
    }

    /// The mean lifetime, in seconds.
    fn mean_seconds(&self) -> Option<f64> {
        let n = self.total();
        let sum: u64 = self.sum_us.iter().sum();
        (n > 0).then(|| sum as f64 / f64::from(n) / 1e6)
    }

    /// The most common lifetime of at least `floor_us`: the fine bin with the most closes within
    /// a bin either side of it (a span of 1.7 times), the mean of those closes in seconds, and how
    /// many there were.
    fn typical(&self, floor_us: u64) -> Option<(f64, u32)> {
        let first = (0..BINS).find(|&b| bin_start(b) >= floor_us)?;
        let around = |b: usize| b.saturating_sub(1).max(first)..=(b + 1).min(BINS - 1);
        let count = |b: usize| -> u32 { around(b).map(|i| self.counts[i]).sum() };
        let (b, n) = (first..BINS).map(|b| (b, count(b))).filter(|(_, n)| *n > 0).max_by_key(|(_, n)| *n)?;
        let sum: u64 = around(b).map(|i| self.sum_us[i]).sum();
        Some((sum as f64 / f64::from(n) / 1e6, n))
    }
}

/// One report bin: connections that lived less than `up_to_seconds` (and at least the bin
/// before's; `null`: the longest), by who closed first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct LifetimeBin {
    pub up_to_seconds: Option<f64>,
    pub closed_here: u32,
    pub closed_by_peer: u32,
}

/// A process whose connections of a bucket the tracepoints followed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Closer {
    pub pid: u32,
    pub command: String,
    pub container: Option<Container>,
    pub closed_here: u32,
    pub closed_by_peer: u32,
    pub reset: u32,
}

/// The connections of one bucket that this namespace's processes opened and that ended in the
/// window, followed by the tracepoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct BucketCloses {
    /// Closed by this host first (ESTABLISHED -> FIN_WAIT1), by the peer first (-> CLOSE_WAIT),
    /// or reset (-> CLOSE).
    pub closed_here: u32,
    pub closed_by_peer: u32,
    pub reset: u32,
    pub closed_here_per_sec: f64,
    /// Mean lifetime of those closed here, and of those the peer closed (`null`: none).
    pub closed_here_mean_seconds: Option<f64>,
    pub closed_by_peer_mean_seconds: Option<f64>,
    /// By lifetime, from the handshake's end to the first close.
    pub histogram: Vec<LifetimeBin>,
    /// The processes that opened them, most first.
    pub processes: Vec<Closer>,
    #[serde(skip)]
    here: Histogram,
    #[serde(skip)]
    peer: Histogram,
}

impl BucketCloses {
    /// Adds the connections of process `pid` (`command`, in `container`): those closed here and
    /// by the peer by lifetime, and how many were reset.
    pub(crate) fn add(
        &mut self,
        (pid, command, container): (u32, &str, Option<&Container>),
        here: &Histogram,
        peer: &Histogram,
        reset: u32,
    ) {
        self.here.merge(here);
        self.peer.merge(peer);
        self.reset = self.reset.saturating_add(reset);
        self.processes.push(Closer {
            pid,
            command: command.to_string(),
            container: container.cloned(),
            closed_here: here.total(),
            closed_by_peer: peer.total(),
            reset,
        });
    }

    /// Sums up, once every process is in: `seconds` is the window's length.
    pub(crate) fn seal(&mut self, seconds: f64) {
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        self.closed_here = self.here.total();
        self.closed_by_peer = self.peer.total();
        self.closed_here_per_sec = round(f64::from(self.closed_here) / seconds.max(0.001), 1);
        self.closed_here_mean_seconds = self.here.mean_seconds().map(|s| round(s, 6));
        self.closed_by_peer_mean_seconds = self.peer.mean_seconds().map(|s| round(s, 6));
        self.histogram = (0..=COARSE_US.len())
            .map(|c| LifetimeBin {
                up_to_seconds: COARSE_US.get(c).map(|&us| us as f64 / 1e6),
                closed_here: self.here.coarse[c],
                closed_by_peer: self.peer.coarse[c],
            })
            .collect();
        let ended = |c: &Closer| c.closed_here + c.closed_by_peer + c.reset;
        self.processes.sort_by(|a, b| ended(b).cmp(&ended(a)).then(a.pid.cmp(&b.pid)));
        self.processes.truncate(MAX_NAMED);
    }

    /// The lifetimes of the connections closed here, as the rules read them.
    pub(crate) fn lifetimes(&self) -> Lifetimes {
        let under = COARSE_US.iter().position(|&us| us == u64::from(SHORT_LIFETIME_MS) * 1000).map_or(0, |c| c + 1);
        let short: u32 = self.here.coarse[..under].iter().sum();
        let typical = self.here.typical(MIN_TIMEOUT_MS * 1000);
        let share = |n: u32| ((f64::from(n) / f64::from(self.closed_here.max(1))) * 100.0).round() / 100.0;
        Lifetimes {
            method: LifetimesMethod::Tracepoints,
            closed_here: self.closed_here,
            timed: self.closed_here,
            short_share: share(short),
            typical_seconds: typical.map(|(s, _)| (s * 100.0).round() / 100.0),
            typical_share: typical.map(|(_, n)| share(n)),
        }
    }

    /// The most common lifetime of the connections the peer closed (of a quarter of a second or
    /// more), in seconds, and its share of them.
    pub(crate) fn peer_typical(&self) -> Option<(f64, f64)> {
        let (seconds, n) = self.peer.typical(MIN_TIMEOUT_MS * 1000)?;
        Some(((seconds * 100.0).round() / 100.0, f64::from(n) / f64::from(self.closed_by_peer.max(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_hold_what_they_say() {
        for us in (0..5_000_000u64).step_by(7).chain([1 << 31, 1 << 33]) {
            let b = bin(us);
            assert!(bin_start(b) <= us, "{us} in bin {b}");
            assert!(b == BINS - 1 || us < bin_start(b + 1), "{us} in bin {b}");
        }
        assert_eq!(bin(15), 0);
        assert_eq!(bin_start(bin(500_000)), 458_752, "a bin spans at most a quarter of its start");
    }
}
