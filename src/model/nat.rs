//! The NAT pool (docs/port-model.md, "The NAT pool"): source-NAT flows counted per bucket of
//! (translated source address, destination address, destination port, protocol), and each bucket
//! judged against the port range of the rule that translates it.
//!
//! The NAT can give each flow toward one destination a different source port of its range, so
//! that is a bucket's budget. Every entry holds its port, a TCP entry in TIME_WAIT or CLOSE too,
//! with one exception: since Linux 6.5, when the last probes of a new TCP flow's port search meet
//! a TIME_WAIT entry whose sequence numbers the flow has passed, the NAT evicts it. So a bucket's
//! `free` ports are what the NAT has for sure, and `available` what it admits to a client that
//! waits through its SYN retransmissions: the free ports and, by chance, most TIME_WAIT entries
//! ([`crate::model::eviction`] replays the search).
//!
//! Like the socket table, a dump is counted as it streams: memory grows with the number of
//! distinct NAT buckets, never with the number of entries. Pure.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::sysctl::KernelVersion;

use crate::model::eviction::{Admission, EVICTING_KERNEL, PATIENT_SECONDS, Pool, admission, patient_syns};
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
        (u32::from(self.high) + 1).saturating_sub(u32::from(self.low))
    }

    fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// The bucket of no rule read: judged against the kernel's default range.
const NO_RULE: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SnatKey {
    source: IpAddr,
    destination: SocketAddr,
    protocol: u8,
    /// The index of the rule the bucket's flows are judged by ([`NatRules::rule_of`]), or [`NO_RULE`].
    rule: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct SnatCount {
    /// Some entry of the bucket had its source translated: only such buckets are NAT buckets.
    natted: bool,
    entries: u32,
    /// TCP entries in TIME_WAIT or CLOSE.
    closed: u32,
}

/// Counts a conntrack dump as it streams, each flow against the source-NAT rule that produced it.
#[derive(Debug, Default)]
pub(crate) struct FlowCounter {
    rules: Vec<NatRule>,
    total: u64,
    tcp_states: [u64; TCP_STATES.len()],
    snat: HashMap<SnatKey, SnatCount>,
    untracked_buckets: u64,
    /// The running kernel, whose NAT evicts TIME_WAIT entries from 6.5 on.
    kernel: Option<KernelVersion>,
}

impl FlowCounter {
    /// A counter judging flows by `rules` (at most [`MAX_NAT_RULES`] are looked at) on `kernel`.
    pub(crate) fn new(mut rules: Vec<NatRule>, kernel: Option<KernelVersion>) -> FlowCounter {
        rules.truncate(MAX_NAT_RULES);
        FlowCounter { rules, kernel, ..FlowCounter::default() }
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
        let source = flow.reply_destination.ip().to_canonical();
        let rule = rule_of(&self.rules, source, port);
        // A flow of the NAT host itself spends a pool only with a port of its range.
        if !flow.source_natted() && !range_of(&self.rules, rule).contains(port) {
            return;
        }
        let key = SnatKey { source, destination: flow.reply_source, protocol: flow.protocol, rule };
        if !self.snat.contains_key(&key) && self.snat.len() >= MAX_SNAT_BUCKETS {
            self.untracked_buckets += u64::from(flow.source_natted());
            return;
        }
        let count = self.snat.entry(key).or_default();
        count.entries += 1;
        count.closed += u32::from(closed);
        count.natted |= flow.source_natted();
    }

    /// The summary, with the `top` fullest NAT buckets, each judged against its rule's range.
    pub(crate) fn finish(mut self, top: usize) -> FlowSummary {
        let rules = std::mem::take(&mut self.rules);
        self.snat.retain(|_, count| count.natted);
        let bucket_count = self.snat.len();
        // Ranked by free ports on numbers in a heap of the kept ones, which alone are replayed
        // and made into strings: a table of many buckets costs no more than its map.
        let usable_for = |k: &SnatKey| range_of(&rules, k.rule).size();
        let free = |k: &SnatKey, c: &SnatCount| usable_for(k).saturating_sub(c.entries);
        let rank = |(key, count): (&SnatKey, &SnatCount)| {
            (free(key, count), std::cmp::Reverse(count.entries - count.closed), *key, *count)
        };
        let mut heap = std::collections::BinaryHeap::with_capacity(top.min(bucket_count) + 1);
        for entry in &self.snat {
            heap.push(rank(entry));
            if heap.len() > top {
                heap.pop();
            }
        }
        drop(self.snat);
        let kernel = self.kernel;
        let buckets = heap.into_sorted_vec().into_iter().map(|(_, _, key, count)| bucket(&rules, key, count, kernel));
        FlowSummary {
            entries: self.total,
            tcp_states: TCP_STATES
                .iter()
                .zip(self.tcp_states)
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| (*name, n))
                .collect(),
            snat_bucket_count: bucket_count,
            snat_buckets: buckets.collect(),
            untracked_buckets: self.untracked_buckets,
            eviction: EvictionRule::of(kernel),
        }
    }
}

/// A kept bucket as reported: its counts, and what the NAT admits ([`admission`]).
fn bucket(rules: &[NatRule], key: SnatKey, count: SnatCount, kernel: Option<KernelVersion>) -> SnatBucket {
    let usable = range_of(rules, key.rule).size();
    let held = count.entries - count.closed;
    let pool = Pool { usable, held, closed: count.closed, tcp: key.protocol == IPPROTO_TCP };
    let Admission { admitted, evicted, first_syn_dropped_pct, .. } = admission(pool, kernel);
    SnatBucket {
        source_ip: key.source.to_string(),
        remote: key.destination.to_string(),
        protocol: if key.protocol == IPPROTO_TCP { "tcp" } else { "udp" },
        count: count.entries,
        time_wait: count.closed,
        held,
        usable_ports: usable,
        free: pool.free(),
        available: admitted,
        by_eviction: evicted,
        first_syn_dropped_pct,
        reclaimable: count.closed.min(usable),
        usage_pct: if usable == 0 {
            100.0
        } else {
            (f64::from(usable - admitted.min(usable)) * 1000.0 / f64::from(usable)).round() / 10.0
        },
        nat_range: range_of(rules, key.rule),
        nat_rule: rules.get(usize::from(key.rule)).map_or_else(|| NO_RULE_READ.to_string(), NatRule::describe),
    }
}

/// The rule `available` follows on this kernel, for the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct EvictionRule {
    /// Whether the NAT evicts TIME_WAIT entries for new TCP flows (Linux 6.5 and later).
    pub evicts: bool,
    /// How long the client of `available` waits in connect(), and the SYNs it sends meanwhile.
    pub patient_connect_seconds: f64,
    pub syns: u32,
}

impl EvictionRule {
    fn of(kernel: Option<KernelVersion>) -> EvictionRule {
        EvictionRule {
            evicts: kernel.is_some_and(|k| k >= EVICTING_KERNEL),
            patient_connect_seconds: PATIENT_SECONDS,
            syns: patient_syns(kernel),
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
    /// What `available` assumes of the NAT and of the client.
    pub eviction: EvictionRule,
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
    /// Ports no entry holds: `usable_ports - count`, what a new flow gets for sure.
    pub free: u32,
    /// How many more flows toward this destination the NAT admits to a client that waits through
    /// its SYN retransmissions ([`EvictionRule`]): the free ports and, where the kernel evicts, the
    /// TIME_WAIT entries new flows evict (the mean of the replays, see [`crate::model::eviction`]).
    pub available: u32,
    /// Of `available`, the flows admitted by evicting a TIME_WAIT or CLOSE entry.
    pub by_eviction: u32,
    /// Of the flows admitted once no port is free, the share whose first SYN the NAT drops (their
    /// connect() takes a second or more), in %; `None` where none needs to evict.
    pub first_syn_dropped_pct: Option<f64>,
    /// TIME_WAIT and CLOSE entries: what a new TCP flow may evict once no port is free.
    pub reclaimable: u32,
    /// `(usable_ports - available)` as a percentage of `usable_ports`.
    pub usage_pct: f64,
    /// The port range the bucket is judged against: its rule's, or the kernel's default.
    pub nat_range: NatRange,
    /// The rule that judged it ([`NatRule::describe`]), or why none did.
    pub nat_rule: String,
}

/// How much each conntrack statistic grew from `before` to `now` (`entries` is a level, not a
/// count, and is left out).
pub(crate) fn statistics_growth(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .filter(|(name, _)| name.as_str() != "entries")
        .map(|(name, value)| (name.clone(), value.saturating_sub(before.get(name).copied().unwrap_or(0))))
        .collect()
}

/// NAT rules looked at per namespace; kube-proxy or firewalld make a handful, so more is hostile
/// or broken, and is said so ([`RulesRead::dropped`]).
pub(crate) const MAX_NAT_RULES: usize = 1024;

/// What a bucket of no rule read says in `nat_rule`.
const NO_RULE_READ: &str = "no source-NAT rule read matches it: the kernel's default 1024-65535";

/// A source-NAT rule as the kernel holds it: what it translates to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct NatRule {
    /// `nftables` (a native `masquerade` or `snat` statement) or `iptables-nft` (its compat
    /// MASQUERADE or SNAT target).
    pub origin: &'static str,
    /// The table's family: `ip`, `ip6` or `inet`.
    pub family: &'static str,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    /// `masquerade` or `snat`.
    pub action: &'static str,
    /// An `snat`'s first and last address; `None` for `masquerade` (the outgoing interface's
    /// address), or where the addresses come from elsewhere than the rule (a map).
    pub addresses: Option<[IpAddr; 2]>,
    /// The port range it sets; `None`: the kernel's default.
    pub ports: Option<NatRange>,
    /// `random`, `fully-random`, `persistent`.
    pub flags: Vec<&'static str>,
    /// The IP family it translates, when the rule says (`snat ip to`, `snat ip6 to`); `None`:
    /// its table's.
    pub ip_family: Option<&'static str>,
}

impl NatRule {
    /// Whether the rule may translate to `source`: its family, and its addresses for an `snat`.
    fn may_translate_to(&self, source: IpAddr) -> bool {
        let family = self.ip_family.unwrap_or(self.family);
        let family_fits = match family {
            "ip" => source.is_ipv4(),
            "ip6" => source.is_ipv6(),
            _ => true,
        };
        family_fits
            && self.addresses.is_none_or(|[low, high]| {
                let source = source.to_canonical();
                (low.to_canonical()..=high.to_canonical()).contains(&source)
            })
    }

    /// `nftables inet t postrouting handle 4: masquerade to :20000-20099 random`, as `nft` would
    /// print its statement (`iptables-nft`: as `iptables` would).
    pub(crate) fn describe(&self) -> String {
        let mut what = String::from(self.action);
        if self.origin == "iptables-nft" {
            what = if self.action == "snat" { "SNAT".into() } else { "MASQUERADE".into() };
        }
        let mut to = match self.addresses {
            Some([low, high]) if low == high => address(low),
            Some([low, high]) => format!("{}-{}", address(low), address(high)),
            None if self.action == "snat" => "an address from a map".into(),
            None => String::new(),
        };
        if let Some(ports) = self.ports {
            to.push_str(&format!(":{}-{}", ports.low, ports.high));
        }
        if !to.is_empty() {
            what.push_str(&format!(" to {to}"));
        } else {
            what.push_str(" (ports 1024-65535, the kernel's default)");
        }
        if !self.flags.is_empty() {
            what.push_str(&format!(" {}", self.flags.join(",")));
        }
        format!("{} {} {} {} handle {}: {what}", self.origin, self.family, self.table, self.chain, self.handle)
    }
}

fn address(ip: IpAddr) -> String {
    if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() }
}

/// The rule a flow translated to `source`:`port` is judged by: among the rules that may translate
/// to that address, the one with the smallest port range holding `port`, else the first that sets
/// no range; [`NO_RULE`] when none fits. The rules' own matches (interfaces, original addresses)
/// are not evaluated: a flow's translated address and port tell the rule apart whenever rules
/// differ in their addresses or ranges, and where two rules would both fit, the smaller range is
/// the one that fills first.
fn rule_of(rules: &[NatRule], source: IpAddr, port: u16) -> u16 {
    let fitting = || rules.iter().enumerate().filter(|(_, r)| r.may_translate_to(source));
    let ranged = fitting()
        .filter(|(_, r)| r.ports.is_some_and(|p| p.contains(port)))
        .min_by_key(|(_, r)| r.ports.map_or(u32::MAX, NatRange::size));
    let chosen = ranged.or_else(|| fitting().find(|(_, r)| r.ports.is_none()));
    chosen.and_then(|(i, _)| u16::try_from(i).ok()).unwrap_or(NO_RULE)
}

/// The range of rule `index`, or the kernel's default.
fn range_of(rules: &[NatRule], index: u16) -> NatRange {
    rules.get(usize::from(index)).and_then(|r| r.ports).unwrap_or(NatRange::DEFAULT)
}

/// The source-NAT rules of a namespace as read, and what was not.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RulesRead {
    pub rules: Vec<NatRule>,
    /// Rules beyond [`MAX_NAT_RULES`], not kept.
    pub dropped: usize,
    /// Legacy (x_tables) nat tables present, which are not read: `iptables`, `ip6tables`.
    pub legacy: Vec<&'static str>,
}

/// The range reported as the namespace's (`nat_range`: the smallest a rule sets, else the
/// kernel's default), and what `nat_range_source` says of the rules. `Err`: why none were read.
pub(crate) fn summarise(read: std::result::Result<&RulesRead, &str>) -> (NatRange, String) {
    let read = match read {
        Ok(read) => read,
        Err(why) => return (NatRange::DEFAULT, format!("the kernel's default 1024-65535 ({why})")),
    };
    let ranged: Vec<NatRange> = read.rules.iter().filter_map(|r| r.ports).collect();
    let smallest = ranged.iter().copied().min_by_key(|r| r.size()).unwrap_or(NatRange::DEFAULT);
    let count = read.rules.len() + read.dropped;
    let mut text = match (count, ranged.len()) {
        (0, _) => "the kernel's default 1024-65535 (no source-NAT rule in nf_tables)".to_string(),
        (_, 0) => format!(
            "the kernel's default 1024-65535 (no source-NAT rule sets a port range: {count} read from nf_tables)"
        ),
        (1, 1) => format!("the source-NAT rule's port range {}-{} (read from nf_tables)", smallest.low, smallest.high),
        _ => format!(
            "each bucket's own rule (snat_buckets[].nat_rule) of {count} source-NAT rules read from nf_tables, \
             {} of them with a port range; the smallest is {}-{}",
            ranged.len(),
            smallest.low,
            smallest.high
        ),
    };
    if read.dropped > 0 {
        text.push_str(&format!("; {} rules beyond the first {MAX_NAT_RULES} are not used", read.dropped));
    }
    for tool in &read.legacy {
        text.push_str(&format!(
            "; a legacy {tool} nat table exists, whose rules are not read: flows it translates are judged \
             against 1024-65535"
        ));
    }
    (smallest, text)
}

#[cfg(test)]
impl NatRule {
    /// An iptables-nft `MASQUERADE --to-ports` in table ip nat, chain POSTROUTING.
    pub(crate) fn masquerade(ports: Option<NatRange>) -> NatRule {
        NatRule {
            origin: "iptables-nft",
            family: "ip",
            table: "nat".into(),
            chain: "POSTROUTING".into(),
            handle: 1,
            action: "masquerade",
            addresses: None,
            ports,
            flags: Vec::new(),
            ip_family: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::IPS_SRC_NAT;

    fn flow(source: &str, port: u16, destination: u8) -> Flow {
        let remote: SocketAddr = format!("10.2.0.{destination}:80").parse().expect("addr");
        Flow {
            protocol: IPPROTO_TCP,
            original_source: "10.1.0.2:5000".parse().expect("addr"),
            original_destination: remote,
            reply_source: remote,
            reply_destination: SocketAddr::new(source.parse().expect("ip"), port),
            status: IPS_SRC_NAT,
            tcp_state: Some(3),
        }
    }

    const KERNEL: Option<KernelVersion> = Some(KernelVersion::new(6, 18));

    fn range(low: u16, high: u16) -> Option<NatRange> {
        Some(NatRange { low, high })
    }

    #[test]
    fn the_fullest_buckets_are_kept_and_the_rest_only_counted() {
        let mut counter = FlowCounter::new(vec![NatRule::masquerade(range(40000, 40099))], KERNEL);
        for (destination, flows) in [(1u8, 3u16), (2, 9), (3, 1), (4, 5)] {
            (0..flows).for_each(|port| counter.add(flow("10.2.0.1", 40000 + port, destination)));
        }
        let summary = counter.finish(2);
        assert_eq!(summary.snat_bucket_count, 4);
        let kept: Vec<(&str, u32)> = summary.snat_buckets.iter().map(|b| (b.remote.as_str(), b.available)).collect();
        assert_eq!(kept, vec![("10.2.0.2:80", 91), ("10.2.0.4:80", 95)]);
        // Translated ports outside a 5-port range: those flows are under another rule, without a
        // range here, so they make a bucket of their own judged by the default.
        let rules = vec![NatRule::masquerade(range(40000, 40004)), NatRule::masquerade(None)];
        let mut counter = FlowCounter::new(rules, KERNEL);
        (0..8).for_each(|p| counter.add(flow("10.2.0.1", 40000 + p, 2)));
        let buckets = counter.finish(10).snat_buckets;
        let judged: Vec<(u32, u32, u32)> = buckets.iter().map(|b| (b.count, b.usable_ports, b.free)).collect();
        assert_eq!(judged, vec![(5, 5, 0), (3, 64512, 64509)], "the full one first");
        assert!(buckets[0].nat_rule.ends_with("MASQUERADE to :40000-40004"), "{}", buckets[1].nat_rule);
    }

    #[test]
    fn time_wait_is_evicted_from_linux_6_5_and_holds_its_port_before() {
        let count = |kernel: Option<KernelVersion>| {
            let mut counter = FlowCounter::new(vec![NatRule::masquerade(range(40000, 40099))], kernel);
            (0..100).for_each(|p| {
                let closed = Flow { tcp_state: Some(CT_TCP_TIME_WAIT), ..flow("10.2.0.1", 40000 + p, 2) };
                counter.add(if p < 40 { flow("10.2.0.1", 40000 + p, 2) } else { closed });
            });
            counter.finish(10)
        };
        let old = count(Some(KernelVersion::new(6, 4)));
        let b = &old.snat_buckets[0];
        assert_eq!((b.free, b.available, b.by_eviction, b.usage_pct, old.eviction.evicts), (0, 0, 0, 100.0, false));
        assert_eq!((b.first_syn_dropped_pct, old.eviction.syns), (None, 4));
        let new = count(KERNEL);
        let b = &new.snat_buckets[0];
        assert!(b.available > 40 && b.available == b.by_eviction, "{b:?}");
        assert!(b.first_syn_dropped_pct.is_some_and(|p| p > 0.0) && new.eviction.evicts, "{b:?}");
        assert_eq!((new.eviction.syns, new.eviction.patient_connect_seconds), (7, 7.5));
    }

    #[test]
    fn each_bucket_is_judged_by_the_rule_whose_addresses_and_ports_hold_it() {
        // Two MASQUERADE rules of different ranges toward one destination: the 1 000-port pool with
        // 997 in use is 99.7 % full, not 1.5 % of the default (99.8 %: the replays' patient client
        // finds 2 of the 3 free ports on average, in searches of 248 probes).
        let rules = vec![NatRule::masquerade(range(40000, 40999)), NatRule::masquerade(range(50000, 50099))];
        let mut counter = FlowCounter::new(rules, KERNEL);
        (0..997).for_each(|p| counter.add(flow("10.2.0.1", 40000 + p, 2)));
        (0..10).for_each(|p| counter.add(flow("10.2.0.1", 50000 + p, 2)));
        let buckets = counter.finish(10).snat_buckets;
        let judged: Vec<(u32, u32, f64)> = buckets.iter().map(|b| (b.count, b.usable_ports, b.usage_pct)).collect();
        assert_eq!(judged, vec![(997, 1000, 99.8), (10, 100, 10.0)]);
        // An snat to two addresses, and one to a third with a narrower range: each address its own
        // pool, judged by the rule that holds it; IPv6 only by a rule of that family.
        let two = NatRule {
            action: "snat",
            addresses: Some(["10.2.0.10".parse().expect("ip"), "10.2.0.11".parse().expect("ip")]),
            ..NatRule::masquerade(range(30000, 30099))
        };
        let third = NatRule { addresses: Some(["10.2.0.12".parse().expect("ip"); 2]), ..two.clone() };
        let third = NatRule { ports: range(30000, 30009), handle: 2, ..third };
        let v6 = NatRule { family: "ip6", handle: 3, ..NatRule::masquerade(range(20000, 20009)) };
        let rules = vec![two, third, v6];
        assert_eq!(rule_of(&rules, "10.2.0.11".parse().expect("ip"), 30005), 0);
        assert_eq!(rule_of(&rules, "10.2.0.12".parse().expect("ip"), 30005), 1);
        assert_eq!(rule_of(&rules, "10.2.0.12".parse().expect("ip"), 30050), NO_RULE, "outside its range");
        assert_eq!(rule_of(&rules, "10.2.0.9".parse().expect("ip"), 20005), NO_RULE, "an IPv6 rule");
        assert_eq!(rule_of(&rules, "fd00::1".parse().expect("ip"), 20005), 2);
        assert_eq!(
            rules[0].describe(),
            "iptables-nft ip nat POSTROUTING handle 1: SNAT to 10.2.0.10-10.2.0.11:30000-30099"
        );
    }

    #[test]
    fn the_summary_names_the_rules_read_and_what_was_not() {
        let (default, why) = summarise(Err("not read"));
        assert_eq!((default, why.as_str()), (NatRange::DEFAULT, "the kernel's default 1024-65535 (not read)"));
        let none = RulesRead { legacy: vec!["iptables"], ..RulesRead::default() };
        let (_, why) = summarise(Ok(&none));
        assert!(why.contains("no source-NAT rule") && why.contains("legacy iptables nat table exists"), "{why}");
        let one = RulesRead { rules: vec![NatRule::masquerade(range(40000, 40099))], ..RulesRead::default() };
        assert_eq!(summarise(Ok(&one)).0, NatRange { low: 40000, high: 40099 });
        let unranged = RulesRead { rules: vec![NatRule::masquerade(None)], ..RulesRead::default() };
        assert!(summarise(Ok(&unranged)).1.contains("no source-NAT rule sets a port range"));
        let two = RulesRead {
            rules: vec![NatRule::masquerade(range(40000, 40999)), NatRule::masquerade(range(50000, 50099))],
            dropped: 3,
            ..RulesRead::default()
        };
        let (smallest, why) = summarise(Ok(&two));
        assert_eq!(smallest, NatRange { low: 50000, high: 50099 });
        assert!(why.contains("each bucket's own rule") && why.contains("3 rules beyond"), "{why}");
    }
}
