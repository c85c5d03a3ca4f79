//! Connection tracking of one network namespace, read: the table's size and limit, its per-CPU
//! statistics, the TCP timeouts, the source-NAT rules' port ranges, and a ctnetlink dump of the
//! table, each entry handed as a [`Flow`] record to the NAT pool's counter ([`nat::FlowCounter`]),
//! which keeps counts only. What a bucket's numbers mean is the model's ([`crate::model::nat`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use crate::model::nat::{FlowCounter, FlowSummary, MAX_SNAT_BUCKETS, NatRange, NatRule, RulesRead};
use crate::model::records::Flow;
use crate::problem::{LineProblem, Parsed};

const NLMSG_HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const INTERRUPTED: &str = "the table changed while it was dumped";
const UNREADABLE: &str = "a conntrack entry could not be read";
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET` (and `..._CT_NEW` for the entries of a dump).
const CT_GET: u16 = 1 << 8 | 1;
const CT_NEW: u16 = 1 << 8;
/// `struct nfgenmsg`: family, version, resource id.
const NFGENMSG: usize = 4;
const RECEIVE_BUFFER: usize = 256 * 1024;

// Attributes (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// The per-CPU lines of `/proc/net/stat/nf_conntrack` (hexadecimal, the header names the columns),
/// summed per column. `entries` is the table's count on every line, so it is taken once.
pub(crate) fn parse_stats(text: &str) -> Parsed<BTreeMap<String, u64>> {
    let mut parsed = Parsed::<BTreeMap<String, u64>>::default();
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else { return parsed };
    let names: Vec<&str> = header.split_whitespace().collect();
    for (index, line) in lines {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.is_empty() {
            continue;
        }
        if values.len() != names.len() {
            parsed.problems.push(LineProblem { line: index + 1, problem: "not one value per column".into() });
            continue;
        }
        for (name, value) in names.iter().zip(values) {
            let Ok(value) = u64::from_str_radix(value, 16) else {
                parsed.problems.push(LineProblem { line: index + 1, problem: format!("{name}: {value:?} is not hex") });
                continue;
            };
            let total = parsed.value.entry((*name).to_string()).or_default();
            *total = if *name == "entries" { value } else { total.saturating_add(value) };
        }
    }
    parsed
}

/// A `NETLINK_NETFILTER` socket of twtune's own, connected to the kernel, in the calling thread's
/// network namespace: ctnetlink's dumps and nf_tables' are read through it.
pub(crate) struct NetfilterSocket {
    socket: netlink_sys::Socket,
    buffer: Vec<u8>,
    /// `ctnetlink` or `nf_tables`, for the messages.
    label: &'static str,
}

/// Why a dump failed, for `table_unavailable`.
pub(crate) type Failed = String;

impl NetfilterSocket {
    /// The socket, or why it cannot be had (`Ok(Err(..))`); running out of descriptors is an
    /// error of its own, never a table said to be unavailable.
    pub(crate) fn open(label: &'static str) -> crate::error::Result<std::result::Result<NetfilterSocket, Failed>> {
        use netlink_sys::protocols::NETLINK_NETFILTER;
        let failed = |what: &str, e: std::io::Error| format!("{label}: {what}: {e}");
        let mut socket = match netlink_sys::Socket::new(NETLINK_NETFILTER) {
            Ok(socket) => socket,
            Err(e) => {
                if let Some(error) =
                    crate::error::Error::if_out_of_files(&e, || "opening a netfilter netlink socket".into())
                {
                    return Err(error);
                }
                return Ok(Err(failed("cannot open a netfilter netlink socket", e)));
            }
        };
        let connected = socket
            .bind_auto()
            .map_err(|e| failed("cannot bind", e))
            .and_then(|_| socket.connect(&netlink_sys::SocketAddr::new(0, 0)).map_err(|e| failed("cannot connect", e)));
        Ok(connected.map(|()| NetfilterSocket { socket, buffer: vec![0; RECEIVE_BUFFER], label }))
    }

    /// Sends a dump request of message type `kind` for every family and streams each message of
    /// the answer through `visit` (its type and its payload, nfgenmsg first).
    pub(crate) fn dump(
        &mut self,
        kind: u16,
        warnings: &mut Vec<String>,
        visit: &mut dyn FnMut(u16, &[u8]),
    ) -> std::result::Result<(), Failed> {
        let label = self.label;
        let mut request = Vec::with_capacity(NLMSG_HEADER + NFGENMSG);
        request.extend_from_slice(&((NLMSG_HEADER + NFGENMSG) as u32).to_ne_bytes());
        request.extend_from_slice(&kind.to_ne_bytes());
        request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        request.extend_from_slice(&[0; 8]); // sequence, port id
        request.extend_from_slice(&[0, 0, 0, 0]); // AF_UNSPEC: every family; version 0; resource 0
        self.socket.send(&request, 0).map_err(|e| format!("{label}: cannot send the dump request: {e}"))?;
        loop {
            let received = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(|e| format!("{label}: cannot receive the dump: {e}"))?;
            if received == 0 {
                return Err(format!("{label}: the dump ended without NLMSG_DONE"));
            }
            if walk_messages(&self.buffer[..received], label, warnings, visit)? {
                return Ok(());
            }
        }
    }
}

/// The conntrack table over ctnetlink, in the calling thread's network namespace.
pub(crate) struct ConntrackDump(NetfilterSocket);

impl ConntrackDump {
    pub(crate) fn open() -> crate::error::Result<std::result::Result<ConntrackDump, Failed>> {
        Ok(NetfilterSocket::open("ctnetlink")?.map(ConntrackDump))
    }

    /// Streams every entry, both families, through `visit`.
    pub(crate) fn scan(
        &mut self,
        visit: &mut dyn FnMut(Flow),
        warnings: &mut Vec<String>,
    ) -> std::result::Result<(), Failed> {
        let mut unreadable = None;
        let done = self.0.dump(CT_GET, warnings, &mut |kind, payload| {
            if kind == CT_NEW {
                entry(payload, visit, &mut unreadable);
            }
        });
        warnings.extend(unreadable);
        done
    }
}

/// One `IPCTNL_MSG_CT_NEW` payload into `visit`; the first that cannot be read sets `unreadable`,
/// one warning however many: a hostile or broken table must not grow the report.
fn entry(payload: &[u8], visit: &mut dyn FnMut(Flow), unreadable: &mut Option<String>) {
    match payload.get(NFGENMSG..).and_then(parse_flow) {
        Some(flow) => visit(flow),
        None if unreadable.is_none() => {
            *unreadable = Some(format!("{UNREADABLE} (the first of {} bytes); such entries are skipped", payload.len()))
        }
        None => {}
    }
}

/// Walks the conntrack messages of one receive. `Ok(true)` once the dump is done.
#[cfg(test)]
fn parse_messages(
    bytes: &[u8],
    visit: &mut dyn FnMut(Flow),
    warnings: &mut Vec<String>,
) -> std::result::Result<bool, Failed> {
    let mut unreadable = None;
    let done = walk_messages(bytes, "ctnetlink", warnings, &mut |kind, payload| {
        if kind == CT_NEW {
            entry(payload, visit, &mut unreadable);
        }
    });
    warnings.extend(unreadable);
    done
}

/// Walks the netfilter messages of one receive, each other than DONE and ERROR handed to `visit`.
/// `Ok(true)` once the dump is done.
pub(crate) fn walk_messages(
    bytes: &[u8],
    label: &str,
    warnings: &mut Vec<String>,
    visit: &mut dyn FnMut(u16, &[u8]),
) -> std::result::Result<bool, Failed> {
    let mut offset = 0;
    while offset + NLMSG_HEADER <= bytes.len() {
        let length = u32::from_ne_bytes(word(bytes, offset)) as usize;
        let kind = u16::from_ne_bytes([bytes[offset + 4], bytes[offset + 5]]);
        if length < NLMSG_HEADER || offset + length > bytes.len() {
            return Err(format!("{label}: a malformed message (length {length})"));
        }
        let payload = &bytes[offset + NLMSG_HEADER..offset + length];
        // NLM_F_DUMP_INTR: the table changed during the dump, which may then miss or repeat entries.
        let flags = u16::from_ne_bytes([bytes[offset + 6], bytes[offset + 7]]);
        let interrupted = format!("{label}: {INTERRUPTED}");
        if flags & NLM_F_DUMP_INTR != 0 && !warnings.iter().any(|w| w.starts_with(&interrupted)) {
            warnings.push(format!("{interrupted}: its counts may be off by the entries that came and went"));
        }
        let code = || if payload.len() >= 4 { i32::from_ne_bytes(word(payload, 0)) } else { -1 };
        match kind {
            NLMSG_DONE if payload.len() >= 4 && code() < 0 => {
                let why = std::io::Error::from_raw_os_error(code().saturating_neg());
                return Err(format!("{label}: the dump stopped early: {why}"));
            }
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR if code() != 0 => {
                let why = std::io::Error::from_raw_os_error(code().saturating_neg());
                let hint = if code() == -1 { ": the dump needs CAP_NET_ADMIN (root)" } else { "" };
                return Err(format!("{label}: the kernel refused the dump: {why}{hint}"));
            }
            NLMSG_ERROR => {}
            _ => visit(kind, payload),
        }
        offset += (length + 3) & !3;
    }
    Ok(false)
}

fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
}

/// The attributes of a netlink attribute stream: (type without its flags, value).
pub(crate) fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let length = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if length < 4 || length > bytes.len() {
            return None;
        }
        let value = &bytes[4..length];
        bytes = &bytes[((length + 3) & !3).min(bytes.len())..];
        Some((kind, value))
    })
}

pub(crate) fn find(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(bytes).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// A tuple: (protocol, source, destination).
fn tuple(bytes: &[u8]) -> Option<(u8, SocketAddr, SocketAddr)> {
    let ip = find(bytes, CTA_TUPLE_IP)?;
    let address = |v4: u16, v6: u16| -> Option<IpAddr> {
        if let Some(v) = find(ip, v4) {
            return Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?)));
        }
        Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(find(ip, v6)?).ok()?)))
    };
    let proto = find(bytes, CTA_TUPLE_PROTO)?;
    let number = *find(proto, CTA_PROTO_NUM)?.first()?;
    // Ports are in network order; protocols without ports (ICMP) have none.
    let port = |kind| find(proto, kind).and_then(|v| Some(u16::from_be_bytes(<[u8; 2]>::try_from(v).ok()?)));
    Some((
        number,
        SocketAddr::new(address(CTA_IP_V4_SRC, CTA_IP_V6_SRC)?, port(CTA_PROTO_SRC_PORT).unwrap_or(0)),
        SocketAddr::new(address(CTA_IP_V4_DST, CTA_IP_V6_DST)?, port(CTA_PROTO_DST_PORT).unwrap_or(0)),
    ))
}

/// One `IPCTNL_MSG_CT_NEW` payload (after its nfgenmsg).
pub(crate) fn parse_flow(bytes: &[u8]) -> Option<Flow> {
    let (protocol, original_source, original_destination) = tuple(find(bytes, CTA_TUPLE_ORIG)?)?;
    let (_, reply_source, reply_destination) = tuple(find(bytes, CTA_TUPLE_REPLY)?)?;
    let status = find(bytes, CTA_STATUS).and_then(|v| Some(u32::from_be_bytes(<[u8; 4]>::try_from(v).ok()?)))?;
    let tcp_state = find(bytes, CTA_PROTOINFO)
        .and_then(|info| find(info, CTA_PROTOINFO_TCP))
        .and_then(|tcp| find(tcp, CTA_PROTOINFO_TCP_STATE))
        .and_then(|v| v.first().copied());
    Some(Flow { protocol, original_source, original_destination, reply_source, reply_destination, status, tcp_state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::{CT_TCP_TIME_WAIT as TCP_TIME_WAIT, IPPROTO_TCP, IPS_SRC_NAT};

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attribute(kind | 0x8000, &parts.concat())
    }

    fn tuple_attr(kind: u16, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        nested(
            kind,
            &[
                nested(CTA_TUPLE_IP, &[attribute(CTA_IP_V4_SRC, &src), attribute(CTA_IP_V4_DST, &dst)]),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        attribute(CTA_PROTO_NUM, &[IPPROTO_TCP]),
                        attribute(CTA_PROTO_SRC_PORT | 0x4000, &sport.to_be_bytes()),
                        attribute(CTA_PROTO_DST_PORT | 0x4000, &dport.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    /// A client 10.1.0.2:5000 to 10.2.0.2:80, masqueraded as 10.2.0.1:40001.
    fn entry(state: u8, nat: bool, port: u16) -> Vec<u8> {
        let mut payload = vec![2, 0, 0, 0];
        payload.extend(tuple_attr(CTA_TUPLE_ORIG, [10, 1, 0, 2], 5000, [10, 2, 0, 2], 80));
        payload.extend(tuple_attr(CTA_TUPLE_REPLY, [10, 2, 0, 2], 80, [10, 2, 0, 1], port));
        let status = if nat { IPS_SRC_NAT | 8 } else { 8 };
        payload.extend(attribute(CTA_STATUS | 0x4000, &status.to_be_bytes()));
        payload.extend(nested(
            CTA_PROTOINFO,
            &[nested(CTA_PROTOINFO_TCP, &[attribute(CTA_PROTOINFO_TCP_STATE, &[state])])],
        ));
        payload
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HEADER + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn an_entry_decodes_with_its_translation_and_state() {
        let flow = parse_flow(&entry(3, true, 40001)[NFGENMSG..]).expect("flow");
        assert_eq!(flow.original_source, "10.1.0.2:5000".parse().expect("addr"));
        assert_eq!(flow.original_destination, "10.2.0.2:80".parse().expect("addr"));
        assert_eq!(flow.reply_destination, "10.2.0.1:40001".parse().expect("addr"));
        assert_eq!((flow.protocol, flow.tcp_state, flow.source_natted()), (6, Some(3), true));
        assert!(parse_flow(&[1, 2, 3]).is_none());
    }

    #[test]
    fn a_dump_is_counted_into_nat_buckets_where_time_wait_is_evicted_by_chance() {
        let mut bytes = Vec::new();
        for port in 0..40 {
            bytes.extend(message(CT_NEW, &entry(3, true, 40000 + port)));
        }
        for port in 40..100 {
            bytes.extend(message(CT_NEW, &entry(TCP_TIME_WAIT, true, 40000 + port)));
        }
        bytes.extend(message(CT_NEW, &entry(3, false, 1)));
        // Nor does one from the NAT's own address on a port outside the range.
        bytes.extend(message(CT_NEW, &entry(3, false, 40150)));
        bytes.extend(message(CT_NEW, &[2, 0, 0, 0, 9, 9]));
        bytes.extend(message(NLMSG_DONE, &[0; 4]));
        let rules = vec![NatRule::masquerade(Some(NatRange { low: 40000, high: 40099 }))];
        let mut counter = FlowCounter::new(rules, Some(crate::sysctl::KernelVersion::new(6, 18)));
        let mut warnings = Vec::new();
        assert!(parse_messages(&bytes, &mut |f| counter.add(f), &mut warnings).expect("parses"));
        assert_eq!(warnings.len(), 1, "the short entry is a warning");
        let summary = counter.finish(10);
        assert_eq!(summary.entries, 102);
        assert_eq!(summary.tcp_states.get("ESTABLISHED"), Some(&42));
        assert_eq!(summary.tcp_states.get("TIME_WAIT"), Some(&60));
        assert_eq!(summary.snat_bucket_count, 1, "no bucket of untranslated flows alone");
        let b = &summary.snat_buckets[0];
        assert_eq!((b.source_ip.as_str(), b.remote.as_str(), b.protocol), ("10.2.0.1", "10.2.0.2:80", "tcp"));
        // The untranslated flow from the NAT's own address on port 1 spends nothing of 40000-40099;
        // the one on 40150 is outside it too; so 100 translated flows.
        assert_eq!((b.count, b.time_wait, b.held, b.usable_ports), (100, 60, 40, 100));
        assert_eq!((b.free, b.reclaimable), (0, 60));
        // On 6.18 new flows evict most of the TIME_WAIT entries, by chance.
        assert!((50..=60).contains(&b.available) && b.by_eviction == b.available, "{b:?}");
    }

    #[test]
    fn errors_and_malformed_messages_are_reported() {
        let refused = message(NLMSG_ERROR, &(-1i32).to_ne_bytes());
        assert!(parse_messages(&refused, &mut |_| {}, &mut Vec::new()).is_err());
        let mut cut = message(CT_NEW, &entry(3, true, 1));
        cut.truncate(30);
        assert!(parse_messages(&cut, &mut |_| {}, &mut Vec::new()).is_err());
        let stopped = message(NLMSG_DONE, &(-4i32).to_ne_bytes());
        assert!(parse_messages(&stopped, &mut |_| {}, &mut Vec::new()).expect_err("EINTR").contains("stopped early"));
        let mut warnings = Vec::new();
        let mut many = Vec::new();
        (0..50).for_each(|_| many.extend(message(CT_NEW, &[2, 0, 0, 0, 9, 9])));
        let mut interrupted = message(CT_NEW, &entry(3, true, 1));
        interrupted[6] |= 0x10;
        many.extend(interrupted);
        assert!(!parse_messages(&many, &mut |_| {}, &mut warnings).expect("parses"));
        assert_eq!(warnings.len(), 2, "one for the unreadable entries, one for the interruption: {warnings:?}");
    }

    #[test]
    fn statistics_sum_the_cpus_but_not_the_entries() {
        let text = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
            0000000a  00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000000 00000000  00000000 00000000 00000000 00000003\n\
            0000000a  00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n";
        let parsed = parse_stats(text);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let s = parsed.value;
        assert_eq!((s["entries"], s["clashres"], s["insert_failed"], s["search_restart"]), (10, 2, 18, 3));
        assert_eq!(parse_stats("a b\n1 zz\n1\n").problems.len(), 2);
        assert!(parse_stats("").value.is_empty());
    }
}

/// Connection tracking in one namespace, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Conntrack {
    /// `nf_conntrack_count`: entries of this namespace.
    pub count: Option<u64>,
    /// `nf_conntrack_max`: the limit, global to the host (one table for every namespace).
    pub max: Option<u64>,
    /// `/proc/net/stat/nf_conntrack`, summed over the CPUs: `insert_failed`, `drop`, `early_drop`,
    /// `clashres`, `search_restart`, ...
    pub statistics: BTreeMap<String, u64>,
    /// `nf_conntrack_tcp_timeout_*` in seconds: `time_wait`, `close_wait`, `established`.
    pub tcp_timeouts: BTreeMap<String, u64>,
    /// The smallest port range a source-NAT rule sets, else the kernel's default; each bucket is
    /// judged by its own rule's (`snat_buckets[].nat_range`).
    pub nat_range: NatRange,
    /// What the rules are and where they were read from.
    pub nat_range_source: String,
    /// The source-NAT rules read.
    pub nat_rules: Vec<NatRule>,
    /// With `--sample`: how much each statistic grew over the interval.
    pub statistics_growth: Option<BTreeMap<String, u64>>,
    /// The dump of the table, its fields (`entries`, `tcp_states`, `snat_bucket_count`,
    /// `snat_buckets`) beside the others; absent when it could not be read (`table_unavailable`
    /// says why).
    #[serde(flatten)]
    pub table: Option<FlowSummary>,
    pub table_unavailable: Option<String>,
}

/// Dumps the table of the calling thread's namespace into `counter`'s counts, each bucket judged
/// by its rules.
pub(crate) fn dump(
    counter: FlowCounter,
    top: usize,
    warnings: &mut Vec<String>,
) -> crate::error::Result<std::result::Result<FlowSummary, Failed>> {
    let mut dump = match ConntrackDump::open()? {
        Ok(dump) => dump,
        Err(failed) => return Ok(Err(failed)),
    };
    Ok(counted(&mut dump, counter, top, warnings))
}

/// The dump counted into a summary.
fn counted(
    dump: &mut ConntrackDump,
    mut counter: FlowCounter,
    top: usize,
    warnings: &mut Vec<String>,
) -> std::result::Result<FlowSummary, Failed> {
    dump.scan(&mut |flow| counter.add(flow), warnings)?;
    let summary = counter.finish(top);
    if summary.untracked_buckets > 0 {
        warnings.push(format!(
            "{} source-NAT entries are in buckets beyond the first {MAX_SNAT_BUCKETS}; they are not counted per bucket",
            summary.untracked_buckets
        ));
    }
    Ok(summary)
}

/// The source-NAT rules of the calling thread's namespace, read from nf_tables over twtune's own
/// netlink socket ([`crate::inspect::nftables`]), and the legacy nat tables that exist there
/// (`ip_tables_names`, `ip6_tables_names`), which are named but not read.
///
/// The answer is kept for [`RULES_KEPT`] per namespace: `twtune watch` reads every second, and
/// a namespace of kube-proxy's thousands of rules need not be walked each time. A failure is not
/// kept: the next read tries again.
pub(crate) fn nat_rules(root: &crate::root::Root) -> crate::error::Result<std::result::Result<RulesRead, Failed>> {
    let namespace = crate::inspect::netns::current().ok();
    if let Ok(kept) = KEPT.lock()
        && let Some((at, rules)) = namespace.and_then(|n| kept.as_ref()?.get(&n))
        && at.elapsed() < RULES_KEPT
    {
        return Ok(Ok(rules.clone()));
    }
    let mut read = match crate::inspect::nftables::read_rules()? {
        Ok(read) => read,
        Err(failed) => return Ok(Err(failed)),
    };
    for (file, tool) in [("ip_tables_names", "iptables"), ("ip6_tables_names", "ip6tables")] {
        let tables = root.read_proc_net(file, false).ok().flatten();
        if tables.is_some_and(|t| t.lines().any(|l| l.trim() == "nat")) {
            read.legacy.push(tool);
        }
    }
    if let Some(namespace) = namespace
        && let Ok(mut kept) = KEPT.lock()
    {
        let kept = kept.get_or_insert_with(Kept::new);
        kept.retain(|_, (at, _)| at.elapsed() < RULES_KEPT);
        kept.insert(namespace, (std::time::Instant::now(), read.clone()));
    }
    Ok(Ok(read))
}

type Kept = std::collections::HashMap<u64, (std::time::Instant, RulesRead)>;
static KEPT: std::sync::Mutex<Option<Kept>> = std::sync::Mutex::new(None);

/// Forgets the rules kept for namespace `inode`, which is gone: the kernel gives a freed inode
/// number to the next namespace made, whose rules are its own.
pub(crate) fn forget_rules(inode: u64) {
    if let Ok(mut kept) = KEPT.lock()
        && let Some(kept) = kept.as_mut()
    {
        kept.remove(&inode);
    }
}

/// How long the NAT rules read in a namespace are used before they are read again.
pub(crate) const RULES_KEPT: std::time::Duration = std::time::Duration::from_secs(30);

/// The TCP timeouts reported, by the suffix of their key.
pub(crate) const TIMEOUT_KEYS: &[&str] = &["time_wait", "close_wait", "established"];
