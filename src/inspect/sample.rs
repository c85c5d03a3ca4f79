//! Rates from two inspections taken an interval apart: connection, TIME_WAIT and reuse rates from
//! the counters, and for each destination bucket the time left before it runs out at the measured
//! growth of what it spends (see [`trend`]: reuse levels TIME_WAIT off, so only live sockets are a
//! trend there; clients that bind first share one pool). Pure.

use std::collections::HashMap;

use serde::Serialize;

use crate::inspect::Inspection;
use crate::inspect::sockets::{Bucket, Churn};

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

/// A bucket that runs out within this many seconds at its measured growth is worth a warning, and
/// is listed even beyond `--top`.
pub(crate) const SOON_SECONDS: f64 = 3600.0;

/// What a bucket's time to exhaustion is extrapolated from:
/// - where its clients bind before they connect, the ports bound by all such clients (they share one
///   pool, whatever the destination);
/// - where TIME_WAIT reuse applies, its sockets other than TIME_WAIT: TIME_WAIT comes back to
///   connect() within the delay, so held TIME_WAIT levels off at the connection rate times the delay
///   (a level the bucket rule judges), while live sockets that pile up (a leak) do not;
/// - otherwise the ports it holds.
fn trend(bucket: &Bucket, bound_ports: u32) -> u32 {
    if bucket.bound_first {
        bound_ports
    } else if bucket.reuse_applies {
        bucket.count - bucket.time_wait
    } else {
        bucket.held
    }
}

/// How fast a bucket's connections come and go, from the counts the second read took against the
/// first (see [`Churn`]).
fn churn(bucket: &Bucket, seconds: f64) -> Option<Churn> {
    let new = bucket.new?;
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let new_per_sec = f64::from(new) / seconds;
    let closed_here_per_sec = f64::from(bucket.recent_time_wait) / seconds;
    let live = f64::from(bucket.count - bucket.time_wait);
    Some(Churn {
        new_per_sec: round(new_per_sec),
        closed_here_per_sec: round(closed_here_per_sec),
        closed_here_share: (new > 0).then(|| ((closed_here_per_sec / new_per_sec).min(1.0) * 100.0).round() / 100.0),
        // Little's law: the live sockets are the arrivals times how long each stays.
        mean_lifetime_seconds: (new > 0).then(|| (live / new_per_sec * 1000.0).round() / 1000.0),
    })
}

/// Fills in `second`'s bucket growth and times to exhaustion from `first` (both must list every
/// bucket) and returns the counter rates.
pub(crate) fn apply_sample(first: &Inspection, second: &mut Inspection, seconds: f64) -> Rates {
    let bound_before = first.sockets.ephemeral.bound_ports;
    let before: HashMap<(&str, &str), u32> = first
        .sockets
        .buckets
        .iter()
        .map(|b| ((b.local_ip.as_str(), b.remote.as_str()), trend(b, bound_before)))
        .collect();
    let owners_before: HashMap<(&str, &str), &Vec<crate::inspect::owners::Owner>> = first
        .sockets
        .buckets
        .iter()
        .filter_map(|b| Some(((b.local_ip.as_str(), b.remote.as_str()), b.owners.as_ref().filter(|o| !o.is_empty())?)))
        .collect();
    let bound_now = second.sockets.ephemeral.bound_ports;
    for bucket in &mut second.sockets.buckets {
        let key = (bucket.local_ip.as_str(), bucket.remote.as_str());
        // Short connections may have no live socket at one of the reads: take the owners of the other.
        if bucket.owners.as_ref().is_some_and(Vec::is_empty)
            && let Some(owners) = owners_before.get(&key)
        {
            bucket.owners = Some((*owners).clone());
        }
        bucket.churn = churn(bucket, seconds);
        let previous = before.get(&(bucket.local_ip.as_str(), bucket.remote.as_str())).copied().unwrap_or(0);
        let growth = f64::from(trend(bucket, bound_now)) - f64::from(previous);
        bucket.growth_per_sec = Some((growth / seconds * 10.0).round() / 10.0);
        bucket.seconds_to_exhaustion =
            (growth > 0.0).then(|| (f64::from(bucket.available) / (growth / seconds)).round());
    }
    second.counter_growth = Some(
        second
            .counters
            .iter()
            .map(|(name, value)| {
                (name.clone(), value.saturating_sub(first.counters.get(name).copied().unwrap_or(*value)).max(0))
            })
            .collect(),
    );
    if let (Some(before), Some(now)) = (&first.conntrack, &mut second.conntrack) {
        now.statistics_growth = Some(
            now.statistics
                .iter()
                .filter(|(name, _)| name.as_str() != "entries")
                .map(|(name, value)| {
                    (name.clone(), value.saturating_sub(before.statistics.get(name).copied().unwrap_or(0)))
                })
                .collect(),
        );
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

        // Held rising under reuse (100 young TIME_WAIT more): a level moving, not a line; live
        // sockets piling up are a trend.
        let mut faster = host(500, 1400);
        for i in 500..600u16 {
            let local = format!("127.0.0.1:{}", 40000 + i).parse().expect("addr");
            let young = Socket::new(TcpState::TimeWait, local, "127.0.0.1:8080".parse().expect("addr"));
            faster.sockets.push(young.expiring_in(59_800));
        }
        let mut faster = faster.inspection();
        apply_sample(&first, &mut faster, 2.0);
        let bucket = &faster.sockets.buckets[0];
        assert_eq!((bucket.held, bucket.growth_per_sec, bucket.seconds_to_exhaustion), (100, Some(0.0), None));
        let mut leaking = host(500, 1400);
        for i in 500..600u16 {
            let local = format!("127.0.0.1:{}", 40000 + i).parse().expect("addr");
            leaking.sockets.push(Socket::new(TcpState::CloseWait, local, "127.0.0.1:8080".parse().expect("addr")));
        }
        let mut leaking = leaking.inspection();
        apply_sample(&first, &mut leaking, 2.0);
        let bucket = &leaking.sockets.buckets[0];
        // 100 CLOSE_WAIT in 2 s with 900 ports left: 18 s.
        assert_eq!((bucket.growth_per_sec, bucket.seconds_to_exhaustion), (Some(50.0), Some(18.0)));
    }

    #[test]
    fn a_counter_that_went_backwards_gives_no_rate() {
        let first = inspection(0, &[("ActiveOpens", 5000)]);
        let mut second = inspection(0, &[("ActiveOpens", 10)]);
        assert_eq!(apply_sample(&first, &mut second, 1.0).active_opens_per_sec, 0.0);
    }

    #[test]
    fn churn_counts_new_tuples_fresh_time_wait_and_little_s_law() {
        use crate::inspect::sockets::Tracking;
        let host = |live: std::ops::Range<u16>, closed: std::ops::Range<u16>| {
            let mut host = Host::new().set("net.ipv4.ip_local_port_range", "40000 40999").top(usize::MAX);
            for port in live {
                host = host.socket(TcpState::Established, &format!("10.0.0.1:{port}"), "10.0.0.2:443");
            }
            for port in closed {
                let local = format!("10.0.0.1:{port}").parse().expect("addr");
                let closed = Socket::new(TcpState::TimeWait, local, "10.0.0.2:443".parse().expect("addr"));
                host.sockets.push(closed.expiring_in(59_500));
            }
            host
        };
        let first = host(40000..40010, 0..0);
        // Two seconds later: 4 of the 10 still open, 2 new open ones, 100 new that this host closed.
        let mut later = host(40000..40004, 0..0);
        later.sockets.extend(host(40100..40102, 40200..40300).sockets);
        let previous = first.inspection_with(Tracking { record: true, ..Tracking::default() }).sockets.tuples;
        let compare = Tracking { previous: Some((previous.expect("recorded"), 2000)), ..Tracking::default() };
        let mut second = later.inspection_with(compare);
        let first = first.inspection();
        apply_sample(&first, &mut second, 2.0);
        let churn = second.sockets.buckets[0].churn.clone().expect("churn");
        assert_eq!((churn.new_per_sec, churn.closed_here_per_sec, churn.closed_here_share), (51.0, 50.0, Some(0.98)));
        // 6 live sockets at 51 new a second: about 118 ms each.
        assert_eq!(churn.mean_lifetime_seconds, Some(0.118));
        let unsampled = host(40000..40010, 0..0).inspection();
        assert_eq!(unsampled.sockets.buckets[0].churn, None);
    }
}
