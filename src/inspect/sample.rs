//! Rates from two inspections taken an interval apart: connection, TIME_WAIT and reuse rates from
//! the counters, and for each destination bucket the time left before it runs out at the measured
//! growth of the ports it holds (TIME_WAIT that connect() may take over is not held, and where
//! reuse applies held levels off, so such a bucket has no time to exhaustion). Pure.

use std::collections::HashMap;

use serde::Serialize;

use crate::inspect::Inspection;

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
}

fn per_second(first: &Inspection, second: &Inspection, counter: &str, seconds: f64) -> f64 {
    let (Some(a), Some(b)) = (first.counters.get(counter), second.counters.get(counter)) else { return 0.0 };
    // Counters only grow; a smaller second value means a wrap or a reset: no rate.
    let delta = b.saturating_sub(*a).max(0) as f64;
    (delta / seconds * 10.0).round() / 10.0
}

/// Fills in `second`'s bucket times to exhaustion from `first` (which must list every bucket) and
/// returns the counter rates.
pub(crate) fn apply_sample(first: &Inspection, second: &mut Inspection, seconds: f64) -> Rates {
    let before: HashMap<(&str, &str), u32> =
        first.sockets.buckets.iter().map(|b| ((b.local_ip.as_str(), b.remote.as_str()), b.held)).collect();
    for bucket in &mut second.sockets.buckets {
        let previous = before.get(&(bucket.local_ip.as_str(), bucket.remote.as_str())).copied().unwrap_or(0);
        let growth = f64::from(bucket.held) - f64::from(previous);
        bucket.growth_per_sec = Some((growth / seconds * 10.0).round() / 10.0);
        // Where reuse applies, TIME_WAIT comes back to connect() within the delay: held levels off at
        // the connection rate times the delay, and a rise over a short sample is that level moving,
        // not a line to extrapolate. The level itself is judged by ports.bucket-exhaustion.
        bucket.seconds_to_exhaustion =
            (growth > 0.0 && !bucket.reuse_applies).then(|| (f64::from(bucket.available) / (growth / seconds)).round());
    }
    Rates {
        interval_seconds: seconds,
        active_opens_per_sec: per_second(first, second, "ActiveOpens", seconds),
        passive_opens_per_sec: per_second(first, second, "PassiveOpens", seconds),
        time_wait_entries_per_sec: per_second(first, second, "TW", seconds),
        overflow_per_sec: per_second(first, second, "TCPTimeWaitOverflow", seconds),
        time_wait_reused_per_sec: per_second(first, second, "TWRecycled", seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::sockets::{Socket, TcpState};
    use crate::testing::Host;

    fn inspection(outbound: u16, counters: &[(&str, i64)]) -> Inspection {
        let host = Host::new()
            .kernel(None)
            .set("net.ipv4.ip_local_port_range", "40000 40999")
            .top(usize::MAX)
            .outbound(outbound, TcpState::TimeWait, 40000, "10.0.0.2:443");
        counters.iter().fold(host, |host, (name, value)| host.counter(name, *value)).inspection()
    }

    #[test]
    fn rates_and_time_to_exhaustion() {
        let first =
            inspection(100, &[("ActiveOpens", 1000), ("PassiveOpens", 5), ("TW", 900), ("TCPTimeWaitOverflow", 0)]);
        let mut second =
            inspection(300, &[("ActiveOpens", 1400), ("PassiveOpens", 5), ("TW", 1250), ("TCPTimeWaitOverflow", 10)]);
        let rates = apply_sample(&first, &mut second, 2.0);
        assert_eq!(rates.active_opens_per_sec, 200.0);
        assert_eq!(rates.passive_opens_per_sec, 0.0);
        assert_eq!(rates.time_wait_entries_per_sec, 175.0);
        assert_eq!(rates.overflow_per_sec, 5.0);
        let bucket = &second.sockets.buckets[0];
        assert_eq!(bucket.growth_per_sec, Some(100.0));
        // 700 ports left at 100 per second.
        assert_eq!(bucket.seconds_to_exhaustion, Some(7.0));
    }

    #[test]
    fn a_shrinking_or_steady_bucket_has_no_time_to_exhaustion() {
        let first = inspection(300, &[]);
        let mut second = inspection(300, &[]);
        apply_sample(&first, &mut second, 1.0);
        assert_eq!(second.sockets.buckets[0].seconds_to_exhaustion, None);
        let mut shrinking = inspection(100, &[]);
        apply_sample(&first, &mut shrinking, 1.0);
        assert_eq!(shrinking.sockets.buckets[0].growth_per_sec, Some(-200.0));
        assert_eq!(shrinking.sockets.buckets[0].seconds_to_exhaustion, None);
    }

    #[test]
    fn a_bucket_kept_level_by_reuse_has_no_time_to_exhaustion() {
        // Loopback, tcp_tw_reuse=2: 300 TIME_WAIT, all older than the delay, then 500 a second later.
        let host = |n: u16, recycled: i64| -> Host {
            let mut host = Host::new()
                .set("net.ipv4.ip_local_port_range", "40000 40999")
                .set("net.ipv4.tcp_tw_reuse", "2")
                .counter("TWRecycled", recycled)
                .top(usize::MAX);
            for i in 0..n {
                host.sockets.push(
                    Socket::new(
                        TcpState::TimeWait,
                        format!("127.0.0.1:{}", 40000 + i).parse().expect("addr"),
                        "127.0.0.1:8080".parse().expect("addr"),
                    )
                    .expiring_in(30_000),
                );
            }
            host
        };
        let first = host(300, 1000).inspection();
        let mut second = host(500, 1400).inspection();
        let rates = apply_sample(&first, &mut second, 2.0);
        assert_eq!(rates.time_wait_reused_per_sec, 200.0);
        let bucket = &second.sockets.buckets[0];
        assert_eq!((bucket.count, bucket.reusable, bucket.held, bucket.available), (500, 500, 0, 1000));
        assert_eq!((bucket.growth_per_sec, bucket.seconds_to_exhaustion), (Some(0.0), None));

        // Held rising under reuse (100 young TIME_WAIT more): a level moving, not a line.
        let mut faster = host(500, 1400);
        for i in 500..600u16 {
            let local = format!("127.0.0.1:{}", 40000 + i).parse().expect("addr");
            let young = Socket::new(TcpState::TimeWait, local, "127.0.0.1:8080".parse().expect("addr"));
            faster.sockets.push(young.expiring_in(59_800));
        }
        let mut faster = faster.inspection();
        apply_sample(&first, &mut faster, 2.0);
        let bucket = &faster.sockets.buckets[0];
        assert_eq!((bucket.held, bucket.growth_per_sec, bucket.seconds_to_exhaustion), (100, Some(50.0), None));
    }

    #[test]
    fn a_counter_that_went_backwards_gives_no_rate() {
        let first = inspection(0, &[("ActiveOpens", 5000)]);
        let mut second = inspection(0, &[("ActiveOpens", 10)]);
        assert_eq!(apply_sample(&first, &mut second, 1.0).active_opens_per_sec, 0.0);
    }
}
