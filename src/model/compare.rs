//! Two reads of the socket table compared (docs/port-model.md, "Churn, lifetimes and
//! forecasts"): each bucket's churn, the growth of what it spends ([`trend`]), and its forecast
//! ([`forecast`]), in the second read. Pure.

use std::collections::HashMap;

use crate::model::churn::churn;
use crate::model::connect::Bucket;
use crate::model::forecast::{Inputs, forecast};
use crate::model::table::SocketSummary;

/// A bucket that runs out within this many seconds is worth a warning, and is listed even beyond
/// `--top`.
pub(crate) const SOON_SECONDS: f64 = 3600.0;

/// The live sockets and what each bucket spends at one read, to measure growth against.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Baseline {
    /// (local IP, remote) -> (live sockets, what it spends: see [`trend`], TIME_WAIT of no known age).
    buckets: HashMap<(String, String), (u32, u32, u32)>,
}

impl Baseline {
    pub(crate) fn of(summary: &SocketSummary) -> Baseline {
        let bound = summary.ephemeral.bound_ports;
        Baseline {
            buckets: summary
                .buckets
                .iter()
                .map(|b| ((b.local_ip.clone(), b.remote.clone()), (b.count - b.time_wait, trend(b, bound), unaged(b))))
                .collect(),
        }
    }

    fn get(&self, bucket: &Bucket) -> (u32, u32, u32) {
        // A bucket the baseline did not have had nothing then.
        self.buckets.get(&(bucket.local_ip.clone(), bucket.remote.clone())).copied().unwrap_or((0, 0, 0))
    }
}

/// TIME_WAIT of a bucket whose age its source did not give.
fn unaged(bucket: &Bucket) -> u32 {
    bucket.time_wait.saturating_sub(bucket.ages.total())
}

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

/// Fills in `second`'s bucket churn from the comparison its read made with `first`'s, `seconds`
/// before, and its growth and forecasts against `first` (both must list every bucket).
pub(crate) fn compare(first: &SocketSummary, second: &mut SocketSummary, seconds: f64) {
    for bucket in &mut second.buckets {
        bucket.churn =
            bucket.new.map(|new| churn(new, bucket.recent_time_wait, bucket.count - bucket.time_wait, seconds));
    }
    forecast_against(&Baseline::of(first), second, seconds);
}

/// Fills in `second`'s bucket growth and forecasts against `baseline`, taken `seconds` before: a
/// baseline older than the last read (`twtune watch` reads every second) keeps a burst of live
/// connections from passing for a leak.
pub(crate) fn forecast_against(baseline: &Baseline, second: &mut SocketSummary, seconds: f64) {
    let bound = second.ephemeral.bound_ports;
    let delay = f64::from(second.reuse_delay_ms) / 1000.0;
    for bucket in &mut second.buckets {
        let (live_before, spent_before, unaged_before) = baseline.get(bucket);
        let growth = f64::from(trend(bucket, bound)) - f64::from(spent_before);
        bucket.growth_per_sec = Some((growth / seconds * 10.0).round() / 10.0);
        if bucket.bound_first {
            // Clients that bind first share the bound ports, whoever's they are: a line through
            // the pool they share, which no single bucket's TIME_WAIT tells.
            bucket.forecast = None;
            bucket.seconds_to_exhaustion =
                (growth > 0.0).then(|| (f64::from(bucket.available) / (growth / seconds)).round());
            continue;
        }
        let live = bucket.count - bucket.time_wait;
        let inputs = Inputs {
            room: bucket.usable_ports - bound.min(bucket.usable_ports),
            live,
            live_growth_per_sec: (f64::from(live) - f64::from(live_before)) / seconds,
            ages: bucket.ages,
            reuse_delay_seconds: bucket.reuse_applies.then_some(delay),
            // TIME_WAIT without an age is never reusable, and is counted as unaged.
            young_time_wait: (bucket.time_wait - bucket.reusable).saturating_sub(unaged(bucket)),
            unaged_time_wait: unaged(bucket),
            unaged_growth_per_sec: (f64::from(unaged(bucket)) - f64::from(unaged_before)) / seconds,
            sample_seconds: seconds,
        };
        let forecast = forecast(&inputs);
        bucket.seconds_to_exhaustion = forecast.seconds_to_exhaustion;
        bucket.forecast = Some(forecast);
    }
}

/// Keeps the `top` fullest buckets and local addresses of `summary`, and any further bucket that,
/// sampled, runs out within [`SOON_SECONDS`].
pub(crate) fn keep_top(summary: &mut SocketSummary, top: usize) {
    let mut index = 0;
    summary.buckets.retain(|b| {
        index += 1;
        index <= top || b.seconds_to_exhaustion.is_some_and(|s| s <= SOON_SECONDS)
    });
    summary.local_ports.truncate(top);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::churn::rates;
    use crate::model::records::{Socket, TcpState};
    use crate::model::reuse::Reuse;
    use crate::model::table::{SocketCounter, Tracking};
    use crate::ports::{PortRange, PortSet};

    fn addr(text: &str) -> std::net::SocketAddr {
        text.parse().expect("test address")
    }

    /// The summary of `sockets` in a namespace of the ports 40000-40999, every bucket listed.
    fn summary(sockets: &[Socket], reuse: Reuse, tracking: Tracking) -> SocketSummary {
        let range = PortRange { low: 40000, high: 40999 };
        let mut counter = SocketCounter::new(range, PortSet::default()).reuse(reuse).tracking(tracking);
        sockets.iter().for_each(|s| counter.add(*s));
        counter.finish("test", usize::MAX)
    }

    /// `n` TIME_WAIT sockets from 10.0.0.1:40000 on to 10.0.0.2:443, no reuse.
    fn outbound(n: u16) -> SocketSummary {
        let sockets: Vec<Socket> = (0..n)
            .map(|i| Socket::new(TcpState::TimeWait, addr(&format!("10.0.0.1:{}", 40000 + i)), addr("10.0.0.2:443")))
            .collect();
        summary(&sockets, Reuse::OFF, Tracking::default())
    }

    fn counters(values: &[(&str, i64)]) -> BTreeMap<String, i64> {
        values.iter().map(|(name, value)| (name.to_string(), *value)).collect()
    }

    #[test]
    fn rates_and_time_to_exhaustion() {
        let before = counters(&[
            ("ActiveOpens", 1000),
            ("PassiveOpens", 5),
            ("TW", 900),
            ("TCPTimeWaitOverflow", 0),
            ("TCPSynRetrans", 40),
        ]);
        let after = counters(&[
            ("ActiveOpens", 1400),
            ("PassiveOpens", 5),
            ("TW", 1250),
            ("TCPTimeWaitOverflow", 10),
            ("TCPSynRetrans", 125),
        ]);
        let rates = rates(&before, &after, 2.0);
        assert_eq!(rates.active_opens_per_sec, 200.0);
        assert_eq!(rates.syn_retransmits_per_sec, 42.5);
        assert_eq!(rates.passive_opens_per_sec, 0.0);
        assert_eq!(rates.time_wait_entries_per_sec, 175.0);
        assert_eq!(rates.overflow_per_sec, 5.0);
        let first = outbound(100);
        let mut second = outbound(300);
        compare(&first, &mut second, 2.0);
        let bucket = &second.buckets[0];
        assert_eq!(bucket.growth_per_sec, Some(100.0));
        // 700 ports left at 100 per second.
        assert_eq!(bucket.seconds_to_exhaustion, Some(7.0));
    }

    #[test]
    fn a_shrinking_or_steady_bucket_has_no_time_to_exhaustion() {
        let first = outbound(300);
        let mut second = outbound(300);
        compare(&first, &mut second, 1.0);
        assert_eq!(second.buckets[0].seconds_to_exhaustion, None);
        let mut shrinking = outbound(100);
        compare(&first, &mut shrinking, 1.0);
        assert_eq!(shrinking.buckets[0].growth_per_sec, Some(-200.0));
        assert_eq!(shrinking.buckets[0].seconds_to_exhaustion, None);
    }

    #[test]
    fn a_bucket_kept_level_by_reuse_has_no_time_to_exhaustion() {
        // Loopback, tcp_tw_reuse=2: 300 TIME_WAIT, all older than the delay, then 500 a second later.
        let reuse = Reuse { mode: 2, timestamps: true, delay_ms: 1000 };
        let loopback = |port: u16, state: TcpState| {
            Socket::new(state, addr(&format!("127.0.0.1:{}", 40000 + port)), addr("127.0.0.1:8080"))
        };
        let old =
            |n: u16| -> Vec<Socket> { (0..n).map(|i| loopback(i, TcpState::TimeWait).expiring_in(30_000)).collect() };
        let first = summary(&old(300), reuse, Tracking::default());
        let mut second = summary(&old(500), reuse, Tracking::default());
        let recycled = rates(&counters(&[("TWRecycled", 1000)]), &counters(&[("TWRecycled", 1400)]), 2.0);
        assert_eq!(recycled.time_wait_reused_per_sec, 200.0);
        compare(&first, &mut second, 2.0);
        let bucket = &second.buckets[0];
        assert_eq!((bucket.count, bucket.reusable, bucket.held, bucket.available), (500, 500, 0, 1000));
        assert_eq!((bucket.growth_per_sec, bucket.seconds_to_exhaustion), (Some(0.0), None));

        // Held rising under reuse (100 young TIME_WAIT more): a level moving, not a line; live
        // sockets piling up are a trend.
        let mut faster = old(500);
        faster.extend((500..600u16).map(|i| loopback(i, TcpState::TimeWait).expiring_in(59_800)));
        let mut faster = summary(&faster, reuse, Tracking::default());
        compare(&first, &mut faster, 2.0);
        let bucket = &faster.buckets[0];
        assert_eq!((bucket.held, bucket.growth_per_sec, bucket.seconds_to_exhaustion), (100, Some(0.0), None));
        let mut leaking = old(500);
        leaking.extend((500..600u16).map(|i| loopback(i, TcpState::CloseWait)));
        let mut leaking = summary(&leaking, reuse, Tracking::default());
        compare(&first, &mut leaking, 2.0);
        let bucket = &leaking.buckets[0];
        // 100 CLOSE_WAIT in 2 s with 900 ports left: 18 s.
        assert_eq!((bucket.growth_per_sec, bucket.seconds_to_exhaustion), (Some(50.0), Some(18.0)));
    }

    #[test]
    fn a_counter_that_went_backwards_gives_no_rate() {
        let first = counters(&[("ActiveOpens", 5000)]);
        let second = counters(&[("ActiveOpens", 10)]);
        assert_eq!(rates(&first, &second, 1.0).active_opens_per_sec, 0.0);
    }

    #[test]
    fn churn_counts_new_tuples_fresh_time_wait_and_little_s_law() {
        let host = |live: std::ops::Range<u16>, closed: std::ops::Range<u16>| -> Vec<Socket> {
            let live = live.map(|port| {
                Socket::new(TcpState::Established, addr(&format!("10.0.0.1:{port}")), addr("10.0.0.2:443"))
            });
            let closed = closed.map(|port| {
                Socket::new(TcpState::TimeWait, addr(&format!("10.0.0.1:{port}")), addr("10.0.0.2:443"))
                    .expiring_in(59_500)
            });
            live.chain(closed).collect()
        };
        let first = host(40000..40010, 0..0);
        // Two seconds later: 4 of the 10 still open, 2 new open ones, 100 new that this host closed.
        let mut later = host(40000..40004, 0..0);
        later.extend(host(40100..40102, 40200..40300));
        let previous = summary(&first, Reuse::OFF, Tracking { record: true, ..Tracking::default() }).tuples;
        let compare_with = Tracking { previous: Some((previous.expect("recorded"), 2000)), ..Tracking::default() };
        let mut second = summary(&later, Reuse::OFF, compare_with);
        let first = summary(&first, Reuse::OFF, Tracking::default());
        compare(&first, &mut second, 2.0);
        let churn = second.buckets[0].churn.clone().expect("churn");
        assert_eq!((churn.new_per_sec, churn.closed_here_per_sec, churn.closed_here_share), (51.0, 50.0, Some(0.98)));
        // 6 live sockets at 51 new a second: about 118 ms each.
        assert_eq!(churn.mean_lifetime_seconds, Some(0.118));
        let unsampled = summary(&host(40000..40010, 0..0), Reuse::OFF, Tracking::default());
        assert_eq!(unsampled.buckets[0].churn, None);
    }
}
