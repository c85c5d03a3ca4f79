//! The NAT pool (docs/port-model.md, "The NAT pool"): source-NAT flows counted per bucket of
//! (translated source address, destination address, destination port, protocol), and each bucket
//! judged against the port range of the rule that translates it.
//!
//! The NAT can give each flow toward one destination a different source port of its range, so
//! that is a bucket's budget. Every entry holds its port, a TCP entry in TIME_WAIT or CLOSE too,
//! with one exception: when a new TCP flow's last probes of the range find no free port, the NAT
//! may evict a TIME_WAIT entry whose sequence numbers the new flow has passed
//! (`nf_nat_used_tuple_harder`, in the last probes of its search). So the free ports
//! (`available`) are what the NAT has, and the TIME_WAIT ones (`reclaimable`) a matter of luck: on
//! 6.18, MASQUERADE over 100 ports with 40 flows open admits exactly 60 more; with 40 open and 30
//! in TIME_WAIT, 41 more (30 free, 11 evicted). A range of up to 128 ports is searched whole; a
//! larger one only in 240 probes from random places, so there a nearly full pool fails some flows.
//!
//! Like the socket table, a dump is counted as it streams: memory grows with the number of
//! distinct NAT buckets, never with the number of entries. Pure.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::model::records::{CT_TCP_CLOSE, CT_TCP_TIME_WAIT, Flow, IPPROTO_TCP, IPPROTO_UDP};

/// Conntrack's TCP states (`enum tcp_conntrack`), by number.
pub(crate) const TCP_STATES: [&str; 10] = [
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
];

/// Distinct NAT buckets counted (about 4 MiB of map); a table with more is summarised with a
/// warning, and a bucket first met beyond the limit is not seen.
pub(crate) const MAX_SNAT_BUCKETS: usize = 32_768;

/// The source-NAT port range a bucket's flows can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct NatRange {
    pub low: u16,
    pub high: u16,
}

impl Default for NatRange {
    fn default() -> Self {
        NatRange::DEFAULT
    }
}

impl NatRange {
    /// Where a rule sets no range and the original source port is above 1023 (`nf_nat_l4proto_unique_tuple`).
    pub(crate) const DEFAULT: NatRange = NatRange { low: 1024, high: 65535 };

    fn size(self) -> u32 {
        u32::from(self.high) - u32::from(self.low) + 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SnatKey {
    source: IpAddr,
    destination: SocketAddr,
    protocol: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct SnatCount {
    /// Some entry of the bucket had its source translated: only such buckets are NAT buckets.
    natted: bool,
    /// Translated entries on a port outside the range: the bucket is under another rule.
    outside: u32,
    entries: u32,
    /// TCP entries in TIME_WAIT or CLOSE.
    closed: u32,
}

/// Counts a conntrack dump as it streams, against the NAT's port range.
#[derive(Debug, Default)]
pub(crate) struct FlowCounter {
    range: NatRange,
    total: u64,
    tcp_states: [u64; TCP_STATES.len()],
    snat: HashMap<SnatKey, SnatCount>,
    untracked_buckets: u64,
}

impl FlowCounter {
    pub(crate) fn new(range: NatRange) -> FlowCounter {
        FlowCounter { range, ..FlowCounter::default() }
    }

    pub(crate) fn add(&mut self, flow: Flow) {
        self.total += 1;
        let closed = matches!(flow.tcp_state, Some(CT_TCP_TIME_WAIT | CT_TCP_CLOSE));
        if flow.protocol == IPPROTO_TCP
            && let Some(slot) = flow.tcp_state.and_then(|s| self.tcp_states.get_mut(usize::from(s)))
        {
            *slot += 1;
        }
        if !matches!(flow.protocol, IPPROTO_TCP | IPPROTO_UDP) {
            return;
        }
        // The NAT checks a new flow's port against the reply tuple: the real destination (after
        // DNAT: a Service address and its backend share one pool) and the translated source. The
        // NAT host's own connections from the same address spend the same pool, so every flow is
        // counted by its reply tuple, and the buckets where some flow was translated are reported.
        let port = flow.reply_destination.port();
        let in_range = (self.range.low..=self.range.high).contains(&port);
        // A flow of the NAT host itself spends the pool only with a port of its range.
        if !flow.source_natted() && !in_range {
            return;
        }
        let key = SnatKey {
            source: flow.reply_destination.ip().to_canonical(),
            destination: flow.reply_source,
            protocol: flow.protocol,
        };
        if !self.snat.contains_key(&key) && self.snat.len() >= MAX_SNAT_BUCKETS {
            self.untracked_buckets += u64::from(flow.source_natted());
            return;
        }
        let count = self.snat.entry(key).or_default();
        count.entries += 1;
        count.closed += u32::from(closed);
        count.natted |= flow.source_natted();
        count.outside += u32::from(flow.source_natted() && !in_range);
    }

    /// The summary, with the `top` fullest NAT buckets, judged against `range`.
    pub(crate) fn finish(mut self, top: usize) -> FlowSummary {
        let range = self.range;
        // A bucket with translated ports outside the range is not under it (another rule, without
        // a range, translates it): it is judged against the kernel's default.
        let usable_for = |c: &SnatCount| if c.outside > 0 { NatRange::DEFAULT.size() } else { range.size() };
        self.snat.retain(|_, count| count.natted);
        let bucket_count = self.snat.len();
        // Ranked on numbers in a heap of the kept ones, which alone are made into strings: a table
        // of many buckets costs no more than its map.
        let available = |c: &SnatCount| usable_for(c).saturating_sub(c.entries);
        let rank = |(key, count): (&SnatKey, &SnatCount)| {
            (available(count), std::cmp::Reverse(count.entries - count.closed), *key, *count)
        };
        let mut heap = std::collections::BinaryHeap::with_capacity(top.min(bucket_count) + 1);
        for entry in &self.snat {
            heap.push(rank(entry));
            if heap.len() > top {
                heap.pop();
            }
        }
        drop(self.snat);
        let ranked: Vec<(SnatKey, SnatCount)> = heap.into_sorted_vec().into_iter().map(|(_, _, k, c)| (k, c)).collect();
        let buckets: Vec<SnatBucket> = ranked
            .into_iter()
            .map(|(key, count)| {
                let held = count.entries - count.closed;
                let available = available(&count);
                let usable = usable_for(&count);
                SnatBucket {
                    source_ip: key.source.to_string(),
                    remote: key.destination.to_string(),
                    protocol: if key.protocol == IPPROTO_TCP { "tcp" } else { "udp" },
                    count: count.entries,
                    time_wait: count.closed,
                    held,
                    usable_ports: usable,
                    available,
                    reclaimable: count.closed.min(usable),
                    usage_pct: if usable == 0 {
                        100.0
                    } else {
                        (f64::from(usable - available) * 1000.0 / f64::from(usable)).round() / 10.0
                    },
                }
            })
            .collect();
        FlowSummary {
            entries: self.total,
            tcp_states: TCP_STATES
                .iter()
                .zip(self.tcp_states)
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| (*name, n))
                .collect(),
            snat_bucket_count: bucket_count,
            snat_buckets: buckets,
            untracked_buckets: self.untracked_buckets,
        }
    }
}

/// What the dump said.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct FlowSummary {
    /// Entries dumped (both families, every protocol).
    pub entries: u64,
    /// TCP entries by conntrack state, states with none left out.
    pub tcp_states: BTreeMap<&'static str, u64>,
    /// Distinct source-NAT buckets.
    pub snat_bucket_count: usize,
    /// The fullest source-NAT buckets, by ports held.
    pub snat_buckets: Vec<SnatBucket>,
    #[serde(skip)]
    pub untracked_buckets: u64,
}

/// Source-NAT flows toward one destination from one translated address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct SnatBucket {
    /// The translated source address (what the destination sees).
    pub source_ip: String,
    /// `ip:port`, or `[ip]:port` for IPv6.
    pub remote: String,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// Entries in the bucket.
    pub count: u32,
    /// Of those, TCP entries in TIME_WAIT or CLOSE.
    pub time_wait: u32,
    /// Live flows: `count - time_wait`.
    pub held: u32,
    /// Ports of the NAT's range.
    pub usable_ports: u32,
    /// How many more flows toward this destination certainly get a port now: `usable_ports - count`.
    pub available: u32,
    /// TIME_WAIT entries a new TCP flow may evict once no port is free (by chance; see the module).
    pub reclaimable: u32,
    /// `(usable_ports - available)` as a percentage of `usable_ports`.
    pub usage_pct: f64,
}

/// How much each conntrack statistic grew from `before` to `now` (`entries` is a level, not a
/// count, and is left out).
pub(crate) fn statistics_growth(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .filter(|(name, _)| name.as_str() != "entries")
        .map(|(name, value)| (name.clone(), value.saturating_sub(before.get(name).copied().unwrap_or(0))))
        .collect()
}

/// The source-NAT rules as read: the distinct port ranges they set, how many set none, and the
/// tools they were read with.
pub(crate) struct NatRules<'a> {
    pub ranges: &'a [NatRange],
    pub without_range: usize,
    pub read: &'a [&'a str],
}

/// The range to judge NAT buckets against, and why: the rules' range when they set exactly one (and
/// say so when other rules set none), the smallest of several, else the kernel's default.
/// `None`: no rules could be read.
pub(crate) fn choose_range(rules: Option<NatRules<'_>>) -> (NatRange, String) {
    const UNREAD: &str = "native nftables rules and ip6tables are not read";
    let Some(NatRules { ranges, without_range: without, read }) = rules else {
        return (
            NatRange::DEFAULT,
            format!("the kernel's default 1024-65535 (no iptables nat rules could be read; {UNREAD})"),
        );
    };
    let from = format!("{}; {UNREAD}", read.join(" and "));
    match ranges {
        [] => (
            NatRange::DEFAULT,
            format!("the kernel's default 1024-65535 (no source-NAT rule sets a port range: {from})"),
        ),
        [one] if without == 0 => (*one, format!("the source-NAT rule's port range {}-{} ({from})", one.low, one.high)),
        [one] => (
            *one,
            format!(
                "the port range {}-{} of one source-NAT rule, while {without} other set none: flows under those \
                 use 1024-65535 ({from})",
                one.low, one.high
            ),
        ),
        several => {
            let smallest = *several.iter().min_by_key(|r| r.size()).expect("not empty");
            (
                smallest,
                format!(
                    "the smallest of {} source-NAT port ranges, {}-{}, for every bucket ({from})",
                    several.len(),
                    smallest.low,
                    smallest.high
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::IPS_SRC_NAT;

    #[test]
    fn the_fullest_buckets_are_kept_and_the_rest_only_counted() {
        let mut counter = FlowCounter::new(NatRange { low: 40000, high: 40099 });
        for (destination, flows) in [(1u8, 3u16), (2, 9), (3, 1), (4, 5)] {
            for port in 0..flows {
                let reply = format!("10.2.0.1:{}", 40000 + port).parse().expect("addr");
                counter.add(Flow {
                    protocol: IPPROTO_TCP,
                    original_source: "10.1.0.2:5000".parse().expect("addr"),
                    original_destination: format!("10.2.0.{destination}:80").parse().expect("addr"),
                    reply_source: format!("10.2.0.{destination}:80").parse().expect("addr"),
                    reply_destination: reply,
                    status: IPS_SRC_NAT,
                    tcp_state: Some(3),
                });
            }
        }
        let summary = counter.finish(2);
        assert_eq!(summary.snat_bucket_count, 4);
        let kept: Vec<(&str, u32)> = summary.snat_buckets.iter().map(|b| (b.remote.as_str(), b.available)).collect();
        assert_eq!(kept, vec![("10.2.0.2:80", 91), ("10.2.0.4:80", 95)]);
        // Translated ports outside a 5-port range: that bucket is under another rule, judged by the default.
        let mut counter = FlowCounter::new(NatRange { low: 40000, high: 40004 });
        let flow = |port: u16| Flow {
            protocol: IPPROTO_TCP,
            original_source: "10.1.0.2:5000".parse().expect("addr"),
            original_destination: "10.2.0.2:80".parse().expect("addr"),
            reply_source: "10.2.0.2:80".parse().expect("addr"),
            reply_destination: SocketAddr::new("10.2.0.1".parse().expect("ip"), port),
            status: IPS_SRC_NAT,
            tcp_state: Some(3),
        };
        (0..8).for_each(|p| counter.add(flow(40000 + p)));
        let b = &counter.finish(10).snat_buckets[0];
        assert_eq!((b.usable_ports, b.available), (64512, 64504));
    }
}
