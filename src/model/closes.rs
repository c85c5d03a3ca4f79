//! Connection lifetimes and who closed first, from the kernel's state changes
//! (`sock:inet_sock_set_state`, docs/port-model.md "Lifetimes from the tracepoints"). A connection
//! this host opens goes CLOSE -> SYN_SENT inside connect(), in the caller's context (so the record
//! names the process), then SYN_SENT -> ESTABLISHED, and ends one of three ways:
//! - ESTABLISHED -> FIN_WAIT1: this host closed first (its TIME_WAIT, its port held 60 s);
//! - ESTABLISHED -> CLOSE_WAIT: the peer closed first (the TIME_WAIT is the peer's);
//! - ESTABLISHED -> CLOSE: reset (either side aborted).
//!
//! Each socket is known by its kernel address (`skaddr`) from its connect() to its end. Memory is
//! bounded: at most [`MAX_OPEN`] connections followed at once and [`MAX_KEYS`] (bucket, process)
//! pairs counted; what does not fit is counted as dropped, never grown into, as are the state
//! changes the kernel could not write. Connections accepted
//! here (no connect()) and those opened before the window are not followed. Pure.

use std::collections::{BTreeMap, HashMap};

use crate::model::FastMap;
use crate::model::connect::BucketKey;
use crate::model::failures::{
    Event, Process, Record, StateChange, TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_SYN_SENT,
};
use crate::model::histogram::{BucketCloses, Histogram};

/// Connections followed at once (a hash table of 2^19 slots of 25 bytes: 13 MiB at most).
pub(crate) const MAX_OPEN: usize = 1 << 18;
/// (bucket, process) pairs counted (two histograms, 2.9 KiB each pair: 6 MiB at most).
pub(crate) const MAX_KEYS: usize = 2048;

/// A connection being followed: when it started (connect(), then its handshake's end) and who
/// opened it.
#[derive(Clone, Copy, Debug)]
struct Open {
    start_ns: u64,
    pid: u32,
}

/// What one (bucket, process) pair's connections did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counts {
    here: Histogram,
    peer: Histogram,
    reset: u32,
}

/// The connections of a window followed from connect() to their end, as the records come.
#[derive(Clone, Debug, Default)]
pub(crate) struct Closes {
    open: FastMap<u64, Open>,
    counts: FastMap<(BucketKey, u32), Box<Counts>>,
    /// Connections not followed, or whose end was not counted, for want of room: in this table, or
    /// in the kernel's buffers (state changes it could not write).
    dropped: u64,
}

impl Closes {
    pub(crate) fn add(&mut self, record: &Record) {
        let Event::State(change) = record.event else { return };
        match (change.old, change.new) {
            (TCP_CLOSE, TCP_SYN_SENT) => {
                if self.open.len() >= MAX_OPEN && !self.open.contains_key(&change.sk) {
                    self.dropped += 1;
                    return;
                }
                self.open.insert(change.sk, Open { start_ns: record.time_ns, pid: record.pid });
            }
            (TCP_SYN_SENT, TCP_ESTABLISHED) => {
                if let Some(open) = self.open.get_mut(&change.sk) {
                    open.start_ns = record.time_ns;
                }
            }
            (TCP_SYN_SENT, TCP_CLOSE) => drop(self.open.remove(&change.sk)),
            (TCP_ESTABLISHED, new) => self.ended(&change, new, record.time_ns),
            _ => {}
        }
    }

    /// State changes the kernel could not write: each misses one connection at most (its start,
    /// or its end, which leaves it followed but never counted).
    pub(crate) fn lost(&mut self, records: u64) {
        self.dropped = self.dropped.saturating_add(records);
    }

    fn ended(&mut self, change: &StateChange, new: i32, time_ns: u64) {
        let Some(open) = self.open.remove(&change.sk) else { return };
        let key = BucketKey {
            local_ip: change.local.ip().to_canonical(),
            remote_ip: change.remote.ip().to_canonical(),
            remote_port: change.remote.port(),
        };
        if self.counts.len() >= MAX_KEYS && !self.counts.contains_key(&(key, open.pid)) {
            self.dropped += 1;
            return;
        }
        let counts = self.counts.entry((key, open.pid)).or_default();
        let us = time_ns.saturating_sub(open.start_ns) / 1000;
        match new {
            TCP_FIN_WAIT1 => counts.here.add(us),
            TCP_CLOSE_WAIT => counts.peer.add(us),
            TCP_CLOSE => counts.reset = counts.reset.saturating_add(1),
            _ => {}
        }
    }

    /// The connections ended so far, leaving an empty count that goes on from here: those still
    /// open stay followed, and count in the interval they end in (`twtune watch`).
    pub(crate) fn take(&mut self) -> Closes {
        Closes {
            open: FastMap::default(),
            counts: std::mem::take(&mut self.counts),
            dropped: std::mem::take(&mut self.dropped),
        }
    }

    /// The connections of the processes of network namespace `netns`, per bucket, over `seconds`;
    /// and how many were dropped for want of room (host-wide).
    pub(crate) fn finish(
        &self,
        processes: &HashMap<u32, Process>,
        netns: u64,
        seconds: f64,
    ) -> (BTreeMap<BucketKey, BucketCloses>, u64) {
        let mut buckets: BTreeMap<BucketKey, BucketCloses> = BTreeMap::new();
        for ((key, pid), counts) in &self.counts {
            let Some(process) = processes.get(pid).filter(|p| p.netns == netns) else { continue };
            let who = (*pid, process.command.as_str(), process.container.as_ref());
            buckets.entry(*key).or_default().add(who, &counts.here, &counts.peer, counts.reset);
        }
        for bucket in buckets.values_mut() {
            bucket.seal(seconds);
        }
        (buckets, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::churn::LifetimesMethod;

    fn change(sk: u64, old: i32, new: i32, remote: &str) -> Event {
        let (local, remote) = ("10.0.0.1:40000".parse().expect("local"), remote.parse().expect("remote"));
        Event::State(StateChange { sk, old, new, local, remote })
    }

    /// Socket `sk` of process `pid`: connect() at `at_ms`, established 1 ms later, ended by
    /// `end` (the new state) `lived_us` after that.
    fn connection(closes: &mut Closes, pid: u32, sk: u64, at_ms: u64, lived_us: u64, end: i32, remote: &str) {
        let at = at_ms * 1_000_000;
        let mut add = |time_ns: u64, old: i32, new: i32| {
            closes.add(&Record { pid, tid: pid, time_ns, event: change(sk, old, new, remote) })
        };
        add(at, TCP_CLOSE, TCP_SYN_SENT);
        add(at + 1_000_000, TCP_SYN_SENT, TCP_ESTABLISHED);
        add(at + 1_000_000 + lived_us * 1000, TCP_ESTABLISHED, end);
    }

    #[test]
    fn lifetimes_are_split_by_who_closed_first_per_bucket_and_process_of_the_namespace() {
        let mut closes = Closes::default();
        let mut sk = 0;
        for i in 0..100 {
            sk += 1;
            // 500 ms, give or take a few: a timeout.
            connection(&mut closes, 10, sk, i * 10, 500_000 + i * 37, TCP_FIN_WAIT1, "10.0.0.2:80");
        }
        for i in 0..10 {
            sk += 1;
            connection(&mut closes, 20, sk, i, 2_000_000, TCP_CLOSE_WAIT, "10.0.0.2:80");
        }
        sk += 1;
        connection(&mut closes, 20, sk, 0, 10, TCP_CLOSE, "10.0.0.2:80");
        for i in 0..5 {
            sk += 1;
            connection(&mut closes, 30, sk, i, 300, TCP_FIN_WAIT1, "10.0.0.2:80");
        }
        // A connection refused: no lifetime. One still open at the end: none either.
        closes.add(&Record { pid: 10, tid: 10, time_ns: 0, event: change(999, TCP_CLOSE, TCP_SYN_SENT, "10.0.0.3:1") });
        closes.add(&Record { pid: 10, tid: 10, time_ns: 1, event: change(999, TCP_SYN_SENT, TCP_CLOSE, "10.0.0.3:1") });
        closes.add(&Record { pid: 10, tid: 10, time_ns: 0, event: change(998, TCP_CLOSE, TCP_SYN_SENT, "10.0.0.3:1") });
        let process = |netns, command: &str| Process { netns, command: command.into(), container: None };
        let processes = HashMap::from([(10, process(1, "timeout")), (20, process(1, "pooled")), (30, process(2, "x"))]);
        let (buckets, dropped) = closes.finish(&processes, 1, 2.0);
        assert_eq!((buckets.len(), dropped), (1, 0));
        let b = buckets.values().next().expect("a bucket");
        assert_eq!((b.closed_here, b.closed_by_peer, b.reset, b.closed_here_per_sec), (100, 10, 1, 50.0));
        let mean = b.closed_here_mean_seconds.expect("mean");
        assert!((mean - 0.501_8).abs() < 0.000_1, "{mean}");
        let named: Vec<(u32, &str, u32, u32, u32)> =
            b.processes.iter().map(|p| (p.pid, p.command.as_str(), p.closed_here, p.closed_by_peer, p.reset)).collect();
        assert_eq!(named, [(10, "timeout", 100, 0, 0), (20, "pooled", 0, 10, 1)], "another namespace's left out");
        let bins: Vec<(Option<f64>, u32, u32)> =
            b.histogram.iter().map(|h| (h.up_to_seconds, h.closed_here, h.closed_by_peer)).collect();
        assert_eq!(bins[3], (Some(1.0), 100, 0));
        assert_eq!(bins[4], (Some(10.0), 0, 10));
        assert_eq!(bins.iter().map(|b| b.1 + b.2).sum::<u32>(), 110);
        let l = b.lifetimes();
        assert_eq!((l.method, l.closed_here, l.timed, l.short_share), (LifetimesMethod::Tracepoints, 100, 100, 1.0));
        assert_eq!((l.typical_seconds, l.typical_share), (Some(0.5), Some(1.0)));
        assert_eq!(b.peer_typical(), Some((2.0, 1.0)));
    }

    #[test]
    fn memory_is_capped_and_what_does_not_fit_is_counted() {
        let mut closes = Closes::default();
        for sk in 0..MAX_OPEN as u64 + 5 {
            let event = change(sk, TCP_CLOSE, TCP_SYN_SENT, "10.0.0.2:80");
            closes.add(&Record { pid: 1, tid: 1, time_ns: 0, event });
        }
        assert_eq!((closes.open.len(), closes.dropped), (MAX_OPEN, 5));
        let mut closes = Closes::default();
        for pid in 0..MAX_KEYS as u32 + 3 {
            connection(&mut closes, pid, u64::from(pid), 0, 10, TCP_FIN_WAIT1, "10.0.0.2:80");
        }
        assert_eq!((closes.counts.len(), closes.dropped, closes.open.len()), (MAX_KEYS, 3, 0));
        // A pair already counted still counts.
        connection(&mut closes, 0, 7, 0, 10, TCP_FIN_WAIT1, "10.0.0.2:80");
        assert_eq!(closes.dropped, 3);
    }
}
