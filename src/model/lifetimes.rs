//! Connections followed across the reads of a window (docs/port-model.md, "Churn, lifetimes and
//! forecasts"): how long the connections a bucket closed itself lived. Pure: the caller says when
//! each read was taken.
//!
//! The kernel gives each connection a cookie, which its TIME_WAIT keeps, and a TIME_WAIT's timer
//! says when it entered TIME_WAIT. So a connection seen live at one read, first at read `i`, and in
//! TIME_WAIT at a later one, closed at `now - age` after living between `closed - t(i)` and
//! `closed - t(i - 1)`; one that opened and closed between two reads lived less than their gap.
//! Memory: one entry per live connection (bounded like the cookies) and per bucket that closed any.

use crate::model::FastMap;

type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
use crate::model::churn::{LifetimeCounts, Lifetimes, MAX_COOKIES};
use crate::model::connect::BucketKey;
use crate::model::records::{Socket, TIME_WAIT_MS, TcpState};

/// A live connection: when it was first seen, and when the read before that was (none: it was
/// live at the window's first read, so its start is unknown), in ms from the window's start.
#[derive(Clone, Copy, Debug)]
struct Seen {
    first_ms: u32,
    before_ms: Option<u32>,
    /// The number of the last read that saw it.
    last_read: u32,
}

/// How far apart two reads may be for a lifetime between them to count: the reads place a close
/// within their gap.
const TIMED_GAP_MS: u32 = 1_000;

/// The connections of a window, followed from read to read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Followed {
    live: FastMap<u64, Seen>,
    /// The TIME_WAIT counted as closes at the read before and at this one: a read's time is when
    /// it began, and a socket's age when the dump reached it, so a close just before a read can
    /// look as if it came after the read before it too.
    counted_before: FastSet<u64>,
    counted_now: FastSet<u64>,
    counts: FastMap<BucketKey, LifetimeCounts>,
    /// The read under way: its number and time; and the time of the one before.
    read: u32,
    now_ms: u32,
    before_ms: Option<u32>,
}

impl PartialEq for Followed {
    /// Working state, not part of a report's value.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Followed {
    /// Starts a read taken `now_ms` after the window began.
    pub(crate) fn begin_read(&mut self, now_ms: u32) {
        if self.read > 0 {
            self.before_ms = Some(self.now_ms);
        }
        self.counted_before = std::mem::take(&mut self.counted_now);
        self.read += 1;
        self.now_ms = now_ms;
    }

    /// Follows one socket of bucket `key`.
    pub(crate) fn see(&mut self, socket: &Socket, key: BucketKey) {
        if socket.cookie == 0 {
            return;
        }
        match socket.state {
            TcpState::TimeWait => self.closed(socket, key),
            TcpState::Listen => {}
            _ => {
                let (read, now_ms, before_ms) = (self.read, self.now_ms, self.before_ms);
                if self.live.len() < MAX_COOKIES || self.live.contains_key(&socket.cookie) {
                    let seen =
                        self.live.entry(socket.cookie).or_insert(Seen { first_ms: now_ms, before_ms, last_read: read });
                    seen.last_read = read;
                }
            }
        }
    }

    /// A TIME_WAIT that entered TIME_WAIT since the read before is a close, counted once.
    fn closed(&mut self, socket: &Socket, key: BucketKey) {
        let (Some(before_ms), Some(left)) = (self.before_ms, socket.expires_ms) else { return };
        let closed_ms = i64::from(self.now_ms) - i64::from(TIME_WAIT_MS.saturating_sub(left));
        if closed_ms <= i64::from(before_ms) {
            return;
        }
        if self.counted_before.contains(&socket.cookie) || self.counted_now.len() >= MAX_COOKIES {
            return;
        }
        self.counted_now.insert(socket.cookie);
        let closed_ms = closed_ms as u32;
        let counts = self.counts.entry(key).or_default();
        match self.live.remove(&socket.cookie) {
            // Opened between the read before it was first seen and that read.
            Some(Seen { first_ms, before_ms: Some(b), .. }) if first_ms - b <= TIMED_GAP_MS => {
                counts.lived(closed_ms.saturating_sub(first_ms) / 2 + closed_ms.saturating_sub(b) / 2);
            }
            Some(_) => counts.untimed(),
            None => counts.unseen(closed_ms - before_ms),
        }
    }

    /// Ends the read: connections it did not see have gone without a TIME_WAIT here (the peer
    /// closed first) and are forgotten.
    pub(crate) fn end_read(&mut self) {
        let read = self.read;
        self.live.retain(|_, seen| seen.last_read == read);
    }

    /// How long the connections of bucket `key` this host closed lived, if it closed any.
    pub(crate) fn lifetimes(&self, key: &BucketKey) -> Option<Lifetimes> {
        self.counts.get(key).filter(|c| c.closed > 0).map(LifetimeCounts::summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(state: TcpState, port: u16, cookie: u64) -> Socket {
        let local = format!("10.0.0.1:{port}").parse().expect("address");
        Socket { cookie, ..Socket::new(state, local, "10.0.0.2:443".parse().expect("address")) }
    }

    /// Reads every 500 ms for 5 s of a client opening a connection every 100 ms and closing each
    /// `lifetime_ms` later.
    fn follow(lifetime_ms: u32) -> Lifetimes {
        let mut followed = Followed::default();
        let key = BucketKey::of(&socket(TcpState::Established, 1, 1));
        for now in (0..=5_000).step_by(500) {
            followed.begin_read(now);
            for (i, opened) in (0..now).step_by(100).enumerate() {
                let cookie = i as u64 + 1;
                let port = 40000 + i as u16;
                if opened + lifetime_ms > now {
                    followed.see(&socket(TcpState::Established, port, cookie), key);
                } else {
                    let age = now - (opened + lifetime_ms);
                    followed.see(&socket(TcpState::TimeWait, port, cookie).expiring_in(TIME_WAIT_MS - age), key);
                }
            }
            followed.end_read();
        }
        followed.lifetimes(&key).expect("closes")
    }

    #[test]
    fn a_client_closing_at_one_lifetime_shows_it() {
        let two_seconds = follow(2_000);
        assert_eq!(two_seconds.short_share, 0.0);
        assert_eq!((two_seconds.typical_seconds, two_seconds.typical_share), (Some(2.0), Some(1.0)));
        // 31 closes: those of the connections opened from 0 to 3 s, none counted twice.
        assert_eq!((two_seconds.closed_here, two_seconds.timed), (31, 31));
    }

    #[test]
    fn a_close_is_counted_once_and_reads_far_apart_time_nothing() {
        let key = BucketKey::of(&socket(TcpState::Established, 1, 1));
        let mut followed = Followed::default();
        followed.begin_read(0);
        followed.see(&socket(TcpState::Established, 40000, 7), key);
        followed.end_read();
        // Seen just closed by the read of 500 ms ...
        followed.begin_read(500);
        followed.see(&socket(TcpState::TimeWait, 40000, 7).expiring_in(TIME_WAIT_MS), key);
        followed.end_read();
        // ... and 390 ms old by the read of 1000 ms, which the dump reached sooner: as if closed at
        // 610 ms, after the read of 500 ms. Counted once.
        followed.begin_read(1000);
        followed.see(&socket(TcpState::TimeWait, 40000, 7).expiring_in(TIME_WAIT_MS - 390), key);
        followed.end_read();
        assert_eq!(followed.lifetimes(&key).map(|l| l.closed_here), Some(1));

        // Two reads 10 s apart: a connection seen at the second read only lived anywhere up to 10 s.
        let mut far = Followed::default();
        far.begin_read(0);
        far.end_read();
        far.begin_read(10_000);
        far.see(&socket(TcpState::Established, 40001, 8), key);
        far.see(&socket(TcpState::TimeWait, 40002, 9).expiring_in(TIME_WAIT_MS - 4_000), key);
        far.end_read();
        far.begin_read(20_000);
        far.see(&socket(TcpState::TimeWait, 40001, 8).expiring_in(TIME_WAIT_MS - 7_000), key);
        far.end_read();
        let far = far.lifetimes(&key).expect("closes");
        assert_eq!((far.closed_here, far.timed, far.typical_seconds), (2, 0, None));
    }

    #[test]
    fn a_client_closing_after_one_request_is_short_lived() {
        let request = follow(50);
        assert_eq!((request.short_share, request.typical_seconds), (1.0, None));
        assert!(request.closed_here >= 40, "{request:?}");
    }
}
