//! The TCP socket table, aggregated while it is read: a [`SocketSource`] streams [`Socket`]s into a
//! [`SocketCounter`], which keeps counts only (per state, per local port, per destination bucket),
//! never the sockets themselves, so memory does not grow with the number of TIME_WAIT sockets.
//!
//! The analysis follows how the kernel spends ephemeral ports (docs/kernel-model.md, "The
//! connect() port budget"): connect() without bind() can reuse a local port for any 4-tuple that
//! differs, so the budget that runs out is per (local IP, remote IP, remote port) bucket: the ports
//! of `ip_local_port_range`, minus reserved ports, minus ports a listener holds inside the range.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::error::Result;
use crate::ports::{PortRange, PortSet};

/// TCP states with the numbers the kernel uses in `/proc/net/tcp` and sock_diag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
    BoundInactive = 13,
}

impl TcpState {
    const ALL: [TcpState; 13] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
        TcpState::BoundInactive,
    ];

    /// The state with the kernel's number, if there is one.
    pub(crate) fn from_code(code: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The name `ss` prints, upper-cased (`TIME_WAIT`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
            TcpState::BoundInactive => "BOUND_INACTIVE",
        }
    }
}

/// One TCP socket as a source reports it. `Copy`, so sources hand it over without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Socket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Where the TCP socket table comes from: `/proc/net/tcp{,6}` or, later, netlink sock_diag.
pub(crate) trait SocketSource {
    /// Short name for reports (`proc`, `netlink`).
    fn name(&self) -> &'static str;

    /// Hands every TCP socket, IPv4 and IPv6, to `visit`. Lines or records that cannot be used are
    /// skipped and described in `warnings`; only a failure to read the table at all is an error.
    ///
    /// Contract: within each address family, listening sockets come before the connections, as the
    /// kernel lists them in `/proc/net/tcp` and in sock_diag dumps. [`SocketCounter`] relies on it to
    /// keep the server side of inbound connections out of the destination buckets without storing
    /// sockets.
    fn scan(&mut self, visit: &mut dyn FnMut(Socket), warnings: &mut Vec<String>) -> Result<()>;
}

/// A destination bucket: connect() can hand out each usable port once per bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BucketKey {
    local_ip: IpAddr,
    remote_ip: IpAddr,
    remote_port: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct BucketCount {
    sockets: u32,
    time_wait: u32,
}

/// Accumulates a socket table into counts. Memory is fixed (two 64 Ki-entry tables) plus one small
/// entry per distinct destination bucket.
pub(crate) struct SocketCounter {
    range: PortRange,
    reserved: PortSet,
    listening: PortSet,
    time_wait_by_local_port: Vec<u32>,
    states: [u64; 14],
    total: u64,
    buckets: HashMap<BucketKey, BucketCount>,
}

impl SocketCounter {
    /// A counter for a namespace with this ephemeral range and these reserved ports.
    pub(crate) fn new(range: PortRange, reserved: PortSet) -> SocketCounter {
        SocketCounter {
            range,
            reserved,
            listening: PortSet::default(),
            time_wait_by_local_port: vec![0; 65536],
            states: [0; 14],
            total: 0,
            buckets: HashMap::new(),
        }
    }

    /// Counts one socket.
    pub(crate) fn add(&mut self, socket: Socket) {
        self.total += 1;
        self.states[socket.state as usize] += 1;
        let local_port = socket.local.port();
        match socket.state {
            TcpState::Listen => {
                self.listening.insert(local_port);
                return;
            }
            TcpState::TimeWait => {
                let slot = &mut self.time_wait_by_local_port[usize::from(local_port)];
                *slot = slot.saturating_add(1);
            }
            _ => {}
        }
        // Only ports connect() could have handed out spend the ephemeral budget. A socket whose local
        // port a listener holds is the server side of an inbound connection. The kernel lists
        // listeners before connections in each table (/proc/net/tcp and sock_diag dumps alike), and an
        // inbound connection sits in the table of its listener, so the listener is known by now.
        if !self.range.contains(local_port) || self.listening.contains(local_port) {
            return;
        }
        let key = BucketKey {
            local_ip: socket.local.ip().to_canonical(),
            remote_ip: socket.remote.ip().to_canonical(),
            remote_port: socket.remote.port(),
        };
        let bucket = self.buckets.entry(key).or_default();
        bucket.sockets = bucket.sockets.saturating_add(1);
        if socket.state == TcpState::TimeWait {
            bucket.time_wait = bucket.time_wait.saturating_add(1);
        }
    }

    /// The summary, with the `top` fullest buckets.
    pub(crate) fn finish(self, source: &'static str, top: usize) -> SocketSummary {
        let listening_ports: Vec<u16> = self.listening.iter().collect();
        let inbound: u64 =
            listening_ports.iter().map(|p| u64::from(self.time_wait_by_local_port[usize::from(*p)])).sum();
        let time_wait_total = self.states[TcpState::TimeWait as usize];
        let listeners_in_range: Vec<u16> = listening_ports
            .iter()
            .copied()
            .filter(|p| self.range.contains(*p) && !self.reserved.contains(*p))
            .collect();
        let reserved_in_range = self.reserved.count_in(self.range);
        let usable_ports = self.range.size() - reserved_in_range - listeners_in_range.len() as u32;

        let mut ranked: Vec<(BucketKey, BucketCount)> = self.buckets.into_iter().collect();
        ranked.sort_by(|(ka, a), (kb, b)| b.sockets.cmp(&a.sockets).then(ka.cmp(kb)));
        let bucket_count = ranked.len();
        let buckets = ranked
            .into_iter()
            .take(top)
            .map(|(key, count)| Bucket {
                local_ip: key.local_ip.to_string(),
                remote: SocketAddr::new(key.remote_ip, key.remote_port).to_string(),
                count: count.sockets,
                time_wait: count.time_wait,
                usable_ports,
                usage_pct: percent(count.sockets, usable_ports),
                growth_per_sec: None,
                seconds_to_exhaustion: None,
            })
            .collect();

        SocketSummary {
            source,
            total: self.total,
            states: TcpState::ALL
                .iter()
                .filter(|s| self.states[**s as usize] > 0)
                .map(|s| (s.name(), self.states[*s as usize]))
                .collect(),
            time_wait: TimeWaitSplit { total: time_wait_total, outbound: time_wait_total - inbound, inbound },
            listening_ports,
            ephemeral: EphemeralPorts {
                range: self.range.to_string(),
                size: self.range.size(),
                reserved_in_range,
                listeners_in_range,
                usable_ports,
            },
            bucket_count,
            buckets,
        }
    }
}

/// `part` as a percentage of `whole`, rounded to one decimal.
fn percent(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        return 100.0;
    }
    (f64::from(part) * 1000.0 / f64::from(whole)).round() / 10.0
}

/// What the socket table says, as it appears in the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct SocketSummary {
    /// Which source was read (`proc` or `netlink`).
    pub source: &'static str,
    /// All TCP sockets seen, in every state.
    pub total: u64,
    /// Sockets per state, states with none left out.
    pub states: BTreeMap<&'static str, u64>,
    pub time_wait: TimeWaitSplit,
    /// Ports with a listening socket, ascending.
    pub listening_ports: Vec<u16>,
    pub ephemeral: EphemeralPorts,
    /// How many distinct destination buckets hold at least one ephemeral port.
    pub bucket_count: usize,
    /// The fullest buckets, most used first.
    pub buckets: Vec<Bucket>,
}

/// TIME_WAIT sockets by who closed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct TimeWaitSplit {
    pub total: u64,
    /// Local port is not a listening port: this host connected out and closed first; these hold
    /// ephemeral ports.
    pub outbound: u64,
    /// Local port is a listening port: server side; these cost memory, not ports.
    pub inbound: u64,
}

/// The ephemeral-port budget of the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct EphemeralPorts {
    /// `ip_local_port_range` as used.
    pub range: String,
    /// Ports in the range.
    pub size: u32,
    /// Ports of the range listed in `ip_local_reserved_ports`.
    pub reserved_in_range: u32,
    /// Listening ports inside the range that are not reserved.
    pub listeners_in_range: Vec<u16>,
    /// Ports connect() can hand out per bucket: size − reserved − listeners in range.
    pub usable_ports: u32,
}

/// One destination bucket (local IP, remote IP, remote port).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Bucket {
    pub local_ip: String,
    /// `ip:port`, or `[ip]:port` for IPv6.
    pub remote: String,
    /// Sockets holding an ephemeral port in this bucket (any state but LISTEN).
    pub count: u32,
    /// Of those, sockets in TIME_WAIT.
    pub time_wait: u32,
    pub usable_ports: u32,
    /// `count` as a percentage of `usable_ports`.
    pub usage_pct: f64,
    /// With `--sample`: the change of `count` per second over the interval.
    pub growth_per_sec: Option<f64>,
    /// With `--sample`: seconds until no usable port is left at the measured growth; `null` when
    /// not growing or not sampled.
    pub seconds_to_exhaustion: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(state: TcpState, local: &str, remote: &str) -> Socket {
        Socket { state, local: local.parse().expect("test address"), remote: remote.parse().expect("test address") }
    }

    fn counter() -> SocketCounter {
        SocketCounter::new(PortRange { low: 40000, high: 40099 }, PortSet::parse("40010-40019").expect("valid"))
    }

    #[test]
    fn state_codes_round_trip() {
        for state in TcpState::ALL {
            assert_eq!(TcpState::from_code(state as u8), Some(state));
        }
        assert_eq!(TcpState::from_code(0), None);
        assert_eq!(TcpState::from_code(14), None);
    }

    #[test]
    fn time_wait_split_by_listening_port_whatever_the_order() {
        let mut c = counter();
        // An inbound TIME_WAIT listed before its listener still counts as inbound.
        c.add(socket(TcpState::TimeWait, "10.0.0.1:80", "10.0.0.9:51000"));
        c.add(socket(TcpState::Listen, "0.0.0.0:80", "0.0.0.0:0"));
        c.add(socket(TcpState::TimeWait, "10.0.0.1:40001", "10.0.0.9:443"));
        c.add(socket(TcpState::TimeWait, "10.0.0.1:40002", "10.0.0.9:443"));
        let s = c.finish("test", 10);
        assert_eq!(s.time_wait, TimeWaitSplit { total: 3, outbound: 2, inbound: 1 });
        assert_eq!(s.total, 4);
        assert_eq!(s.states.get("TIME_WAIT"), Some(&3));
        assert_eq!(s.listening_ports, vec![80]);
    }

    #[test]
    fn buckets_count_ephemeral_ports_per_destination() {
        let mut c = counter();
        c.add(socket(TcpState::Listen, "0.0.0.0:40050", "0.0.0.0:0"));
        for port in 40020..40040 {
            c.add(socket(TcpState::TimeWait, &format!("127.0.0.1:{port}"), "127.0.0.2:8080"));
        }
        c.add(socket(TcpState::Established, "127.0.0.1:40041", "127.0.0.2:8080"));
        c.add(socket(TcpState::Established, "127.0.0.1:40042", "127.0.0.2:8081"));
        // Outside the range, or the server side of the in-range listener: not ephemeral.
        c.add(socket(TcpState::Established, "127.0.0.1:5000", "127.0.0.2:8080"));
        c.add(socket(TcpState::Established, "127.0.0.1:40050", "127.0.0.3:1234"));
        let s = c.finish("test", 10);
        assert_eq!(s.ephemeral.size, 100);
        assert_eq!(s.ephemeral.reserved_in_range, 10);
        assert_eq!(s.ephemeral.listeners_in_range, vec![40050]);
        assert_eq!(s.ephemeral.usable_ports, 89);
        assert_eq!(s.bucket_count, 2);
        let top = &s.buckets[0];
        assert_eq!((top.local_ip.as_str(), top.remote.as_str()), ("127.0.0.1", "127.0.0.2:8080"));
        assert_eq!((top.count, top.time_wait, top.usable_ports), (21, 20, 89));
        assert_eq!(top.usage_pct, 23.6);
        assert_eq!(s.buckets[1].count, 1);
    }

    #[test]
    fn ipv6_buckets_print_brackets_and_v4_mapped_join_ipv4() {
        let mut c = counter();
        c.add(socket(TcpState::TimeWait, "[::1]:40020", "[::1]:443"));
        c.add(socket(TcpState::TimeWait, "[::ffff:127.0.0.1]:40021", "[::ffff:127.0.0.2]:80"));
        c.add(socket(TcpState::TimeWait, "127.0.0.1:40022", "127.0.0.2:80"));
        let s = c.finish("test", 10);
        let remotes: Vec<(&str, &str, u32)> =
            s.buckets.iter().map(|b| (b.local_ip.as_str(), b.remote.as_str(), b.count)).collect();
        assert_eq!(remotes, vec![("127.0.0.1", "127.0.0.2:80", 2), ("::1", "[::1]:443", 1)]);
    }

    #[test]
    fn top_limits_the_list_but_not_the_count() {
        let mut c = counter();
        for (i, port) in (40020..40025).enumerate() {
            c.add(socket(TcpState::Established, &format!("127.0.0.1:{port}"), &format!("127.0.0.2:{}", 1000 + i)));
        }
        let s = c.finish("test", 2);
        assert_eq!(s.buckets.len(), 2);
        assert_eq!(s.bucket_count, 5);
        // Ties are ordered by address, so output is stable.
        assert_eq!(s.buckets[0].remote, "127.0.0.2:1000");
    }

    #[test]
    fn percent_rounds_to_one_decimal_and_survives_an_empty_budget() {
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(percent(80, 100), 80.0);
        assert_eq!(percent(1, 0), 100.0);
    }
}
