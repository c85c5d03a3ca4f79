//! The TCP socket table, aggregated while it is read: a [`SocketSource`] streams [`Socket`]s into a
//! [`SocketCounter`], which keeps counts only (per state, per local port, per destination bucket,
//! a port bitmap per local address), never the sockets themselves, so memory does not grow with the
//! number of TIME_WAIT sockets.
//!
//! Two budgets, as the kernel spends ephemeral ports (docs/kernel-model.md, "The connect() port
//! budget" and "The bind() port budget"; how twtune computes each number: docs/port-model.md):
//! - connect() without bind() can reuse a local port for any 4-tuple that differs, so its budget is
//!   per (local IP, remote IP, remote port) bucket: the ports of `ip_local_port_range`, minus
//!   reserved ports, minus ports a listener holds inside the range, minus the ports the bucket
//!   *holds*: its sockets except the TIME_WAIT ones connect() may take over now ([`Reuse`]).
//! - bind(addr, 0), and so a client that binds before it connects, needs a port that no socket on
//!   that address (or a wildcard listener) holds: its budget is per local address.

use std::collections::{BTreeMap, HashMap};

/// Maps keyed by what the socket table holds, hashed with foldhash (randomly seeded) rather than
/// SipHash: every socket of the table is looked up in two of them, and hashing was a tenth of a
/// read.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::error::Result;
use crate::inspect::owners::Owner;
use crate::ports::{PortRange, PortSet};
use crate::sysctl::keys::Settings;

/// How long TIME_WAIT lasts (`TCP_TIMEWAIT_LEN`, fixed in the kernel), in milliseconds.
pub(crate) const TIME_WAIT_MS: u32 = 60_000;
/// `LOOPBACK_IFINDEX`: a socket bound to `lo` with SO_BINDTODEVICE.
const LOOPBACK_INTERFACE: u32 = 1;
/// Local addresses whose bind() budget is tracked (8 KiB each); a captured table with more is
/// untrusted input, and the rest are left out with a warning.
pub(crate) const MAX_LOCAL_ADDRESSES: usize = 1024;
/// Live sockets whose inode is kept for the owner lookup (8 bytes each, 8 MiB at most); beyond,
/// their owners are not looked up, with a warning.
pub(crate) const MAX_OWNED_SOCKETS: usize = 1 << 20;

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
    /// For a TIME_WAIT socket: milliseconds until its timer fires, which tells its age (TIME_WAIT
    /// lasts [`TIME_WAIT_MS`]); `None` when the source does not say.
    pub expires_ms: Option<u32>,
    /// The interface the socket is bound to (SO_BINDTODEVICE); 0 when none or not known.
    pub interface: u32,
    /// For a live connection: whether it carries TCP timestamps (both ends agreed); `None` when the
    /// source does not say (`/proc/net/tcp`, TIME_WAIT sockets).
    pub timestamps: Option<bool>,
    /// The socket's inode (what `/proc/PID/fd/N` links name as `socket:[inode]`), which tells the
    /// process holding it; 0 for TIME_WAIT sockets, which no process holds, and when unknown.
    pub inode: u32,
    /// The kernel's cookie of the connection (sock_diag), which a TIME_WAIT socket keeps from the
    /// socket it replaces: what tells a connection from a later one on the same port. 0 when the
    /// source does not say (`/proc/net/tcp`).
    pub cookie: u64,
}

impl Socket {
    /// A socket with no timer, no bound interface and no owner.
    pub(crate) fn new(state: TcpState, local: SocketAddr, remote: SocketAddr) -> Socket {
        Socket { state, local, remote, expires_ms: None, interface: 0, timestamps: None, inode: 0, cookie: 0 }
    }

    /// The same socket with its timer firing in `ms` milliseconds.
    pub(crate) fn expiring_in(self, ms: u32) -> Socket {
        Socket { expires_ms: Some(ms), ..self }
    }
}

/// When connect() may take over a TIME_WAIT tuple instead of skipping the port (`tcp_twsk_unique`):
/// reuse is on for the destination (`tcp_tw_reuse` 1: all; 2: a loopback address at either end, or a
/// socket bound to `lo`), the old connection carried timestamps, and it has been in TIME_WAIT
/// longer than `tcp_tw_reuse_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reuse {
    /// `tcp_tw_reuse`: 0 off, 1 every destination, 2 loopback only.
    pub mode: i64,
    /// `tcp_timestamps` is not 0. Whether the peer answered with timestamps is not in the table;
    /// loopback peers are this kernel, and `TWRecycled` in `--sample` shows whether reuse happens.
    pub timestamps: bool,
    /// `tcp_tw_reuse_delay`; 1000 ms where the kernel has no such key (about 1 s before 6.14).
    pub delay_ms: u32,
}

impl Reuse {
    /// No reuse at all (`tcp_tw_reuse=0`).
    pub(crate) const OFF: Reuse = Reuse { mode: 0, timestamps: true, delay_ms: 1000 };

    /// The policy the namespace's settings make; an absent `tcp_tw_reuse` (before 4.18 it had no
    /// value 2, before 3.x no key) is taken as off.
    pub(crate) fn from_settings(settings: &Settings) -> Reuse {
        Reuse {
            mode: settings.int("net.ipv4.tcp_tw_reuse").unwrap_or(0),
            timestamps: settings.int("net.ipv4.tcp_timestamps") != Some(0),
            delay_ms: settings
                .int("net.ipv4.tcp_tw_reuse_delay")
                .and_then(|ms| u32::try_from(ms).ok())
                .unwrap_or(Reuse::OFF.delay_ms),
        }
    }

    /// Whether reuse can ever apply between these addresses (ignoring the age of a socket).
    pub(crate) fn applies(&self, local: IpAddr, remote: IpAddr, interface: u32) -> bool {
        self.timestamps
            && match self.mode {
                1 => true,
                2 => {
                    interface == LOOPBACK_INTERFACE
                        || local.to_canonical().is_loopback()
                        || remote.to_canonical().is_loopback()
                }
                _ => false,
            }
    }

    /// Whether connect() may take over this TIME_WAIT socket now.
    pub(crate) fn can_take_over(&self, socket: &Socket) -> bool {
        socket.state == TcpState::TimeWait
            && self.applies(socket.local.ip(), socket.remote.ip(), socket.interface)
            && socket.expires_ms.is_some_and(|left| TIME_WAIT_MS.saturating_sub(left) > self.delay_ms)
    }
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

#[derive(Clone, Debug, Default)]
struct BucketCount {
    /// Numbers the buckets in the order they were met, to tie inodes to them.
    id: u32,
    sockets: u32,
    time_wait: u32,
    /// TIME_WAIT sockets connect() may take over now.
    reusable: u32,
    /// A live connection of the bucket carries no timestamps: the peer does not send them, so none
    /// of its TIME_WAIT can be taken over.
    peer_without_timestamps: bool,
    /// Recording: the local ports of its sockets.
    ports: Option<SeenPorts>,
    /// Comparing: sockets whose local port the bucket did not have at the previous read, and
    /// TIME_WAIT sockets younger than the time since then.
    new: u32,
    recent_time_wait: u32,
}

/// The local ports of one bucket's sockets: a sorted list while short, a bitmap (8 KiB) beyond, so a
/// bucket costs at most 8 KiB and small buckets two bytes a socket.
#[derive(Clone, Debug)]
enum SeenPorts {
    Few(Vec<u16>),
    Many(Box<PortSet>),
}

impl SeenPorts {
    const FEW: usize = 4096;

    fn insert(&mut self, port: u16) {
        match self {
            SeenPorts::Few(ports) if ports.len() < SeenPorts::FEW => ports.push(port),
            SeenPorts::Few(ports) => {
                let mut set = PortSet::default();
                ports.iter().for_each(|p| set.insert(*p));
                set.insert(port);
                *self = SeenPorts::Many(Box::new(set));
            }
            SeenPorts::Many(set) => set.insert(port),
        }
    }

    fn seal(&mut self) {
        if let SeenPorts::Few(ports) = self {
            ports.sort_unstable();
        }
    }

    fn contains(&self, port: u16) -> bool {
        match self {
            SeenPorts::Few(ports) => ports.binary_search(&port).is_ok(),
            SeenPorts::Many(set) => set.contains(port),
        }
    }
}

/// The connections each bucket had at one read (`--sample`'s first), to tell those of the second
/// read that are new: by the kernel's cookie where the source gives one (a new connection on a
/// port seen before, as when ports run short or TIME_WAIT is taken over, is still new), else by
/// local port.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tuples {
    ports: FastMap<BucketKey, SeenPortsEq>,
    /// Sorted; empty when the source gave none or there were more than [`MAX_COOKIES`].
    cookies: Vec<u64>,
}

/// Cookies kept from a read for the next (16 bytes each while a read is counted, 8 between reads:
/// 12 MiB at most); beyond, new connections are told by port.
const MAX_COOKIES: usize = 1 << 19;

/// [`SeenPorts`] compared by nothing: the tuples are working state, not part of a report's value.
#[derive(Clone, Debug)]
struct SeenPortsEq(SeenPorts);

impl PartialEq for SeenPortsEq {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// What a counter records besides counts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tracking {
    /// The inode of each live socket of a bucket, to find the processes holding it ([`super::owners`]).
    pub owners: bool,
    /// The local ports of every bucket, for a later read to compare with.
    pub record: bool,
    /// The ports of a previous read and the milliseconds since: what is new in this one.
    pub previous: Option<(Tuples, u32)>,
}

/// The local ports one address uses, for the bind() budget.
#[derive(Clone, Debug, Default)]
struct AddressPorts {
    /// Ports any socket on the address holds.
    in_use: PortSet,
    /// Ports two or more of its connections share (which only connect() does).
    shared: PortSet,
}

/// Accumulates a socket table into counts. Memory is fixed (64 Ki-entry tables) plus one small
/// entry per distinct destination bucket and an 8 KiB port bitmap per local address.
pub(crate) struct SocketCounter {
    range: PortRange,
    reserved: PortSet,
    reuse: Reuse,
    listening: PortSet,
    time_wait_by_local_port: Vec<u32>,
    states: [u64; 14],
    total: u64,
    buckets: FastMap<BucketKey, BucketCount>,
    addresses: FastMap<IpAddr, AddressPorts>,
    /// Ports of wildcard listeners (0.0.0.0, ::), which every address of the family shares.
    wildcard_v4: PortSet,
    wildcard_v6: PortSet,
    /// Local addresses left out once [`MAX_LOCAL_ADDRESSES`] were tracked.
    untracked_addresses: u64,
    tracking: Tracking,
    /// (inode, bucket id) of live sockets, with [`Tracking::owners`].
    live_inodes: Vec<(u32, u32)>,
    /// Live sockets beyond [`MAX_OWNED_SOCKETS`], whose owners are not looked up.
    unowned: u64,
    /// Recording or comparing: the cookie of each bucket socket, with its bucket's id. Sorted at
    /// the end, they are compared with the previous read's in one pass (a search per socket
    /// missed the cache at every step) and kept for the next.
    cookies: Vec<(u64, u32)>,
}

impl SocketCounter {
    /// A counter for a namespace with this ephemeral range and these reserved ports, without
    /// TIME_WAIT reuse (see [`SocketCounter::reuse`]).
    pub(crate) fn new(range: PortRange, reserved: PortSet) -> SocketCounter {
        SocketCounter {
            range,
            reserved,
            reuse: Reuse::OFF,
            listening: PortSet::default(),
            time_wait_by_local_port: vec![0; 65536],
            states: [0; 14],
            total: 0,
            buckets: FastMap::default(),
            addresses: FastMap::default(),
            wildcard_v4: PortSet::default(),
            wildcard_v6: PortSet::default(),
            untracked_addresses: 0,
            tracking: Tracking::default(),
            live_inodes: Vec::new(),
            unowned: 0,
            cookies: Vec::new(),
        }
    }

    /// The same counter recording what `tracking` asks for.
    pub(crate) fn tracking(self, tracking: Tracking) -> SocketCounter {
        // About as many as the previous read: room made once, not by doubling (a peak of memory).
        let expected = tracking.previous.as_ref().map_or(0, |(p, _)| p.cookies.len() + p.cookies.len() / 8);
        SocketCounter { cookies: Vec::with_capacity(expected.min(MAX_COOKIES + 1)), tracking, ..self }
    }

    /// The same counter judging TIME_WAIT reuse by `reuse`.
    pub(crate) fn reuse(self, reuse: Reuse) -> SocketCounter {
        SocketCounter { reuse, ..self }
    }

    /// Counts one socket.
    pub(crate) fn add(&mut self, socket: Socket) {
        self.total += 1;
        self.states[socket.state as usize] += 1;
        let local_port = socket.local.port();
        self.note_local_port(&socket);
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
        let next_id = self.buckets.len() as u32;
        let record = self.tracking.record;
        let bucket = self.buckets.entry(key).or_insert_with(|| BucketCount {
            id: next_id,
            ports: record.then(|| SeenPorts::Few(Vec::new())),
            ..BucketCount::default()
        });
        bucket.sockets = bucket.sockets.saturating_add(1);
        if let Some(ports) = &mut bucket.ports {
            ports.insert(local_port);
        }
        let by_cookie = self.tracking.previous.as_ref().is_some_and(|(previous, _)| !previous.cookies.is_empty());
        // One past the limit marks the list as incomplete, and it stops growing there.
        let kept = (record || by_cookie) && socket.cookie != 0 && self.cookies.len() <= MAX_COOKIES;
        if kept {
            self.cookies.push((socket.cookie, bucket.id));
        }
        if let Some((previous, since_ms)) = &self.tracking.previous {
            // A kept cookie is compared in `finish`, against the previous read's (one merge); one
            // beyond the limit is searched for, so that a read larger than the last is still
            // counted by cookie; a socket without a cookie is compared by port.
            let compared_later = by_cookie && kept;
            let seen = if by_cookie && socket.cookie != 0 {
                kept || previous.cookies.binary_search(&socket.cookie).is_ok()
            } else {
                previous.ports.get(&key).is_some_and(|seen| seen.0.contains(local_port))
            };
            if !compared_later && !seen {
                bucket.new += 1;
            }
            if socket.state == TcpState::TimeWait
                && socket.expires_ms.is_some_and(|left| TIME_WAIT_MS.saturating_sub(left) <= *since_ms)
            {
                bucket.recent_time_wait += 1;
            }
        }
        if self.tracking.owners && socket.state != TcpState::TimeWait && socket.inode != 0 {
            if self.live_inodes.len() < MAX_OWNED_SOCKETS {
                self.live_inodes.push((socket.inode, bucket.id));
            } else {
                self.unowned += 1;
            }
        }
        if socket.state == TcpState::TimeWait {
            bucket.time_wait = bucket.time_wait.saturating_add(1);
            if self.reuse.can_take_over(&socket) {
                bucket.reusable = bucket.reusable.saturating_add(1);
            }
        }
        if socket.timestamps == Some(false) {
            bucket.peer_without_timestamps = true;
        }
    }

    /// Records the local port for the bind() budget of its address: any socket of the range, in any
    /// state, keeps bind(addr, 0) off its port.
    fn note_local_port(&mut self, socket: &Socket) {
        let port = socket.local.port();
        if !self.range.contains(port) {
            return;
        }
        let ip = socket.local.ip().to_canonical();
        if ip.is_unspecified() {
            match ip {
                IpAddr::V4(_) => self.wildcard_v4.insert(port),
                IpAddr::V6(_) => self.wildcard_v6.insert(port),
            }
            return;
        }
        if !self.addresses.contains_key(&ip) && self.addresses.len() >= MAX_LOCAL_ADDRESSES {
            self.untracked_addresses += 1;
            return;
        }
        let ports = self.addresses.entry(ip).or_default();
        if socket.state != TcpState::Listen && ports.in_use.contains(port) {
            ports.shared.insert(port);
        }
        ports.in_use.insert(port);
    }

    /// The summary, with the `top` fullest buckets and local addresses.
    pub(crate) fn finish(mut self, source: &'static str, top: usize) -> SocketSummary {
        let listening_ports: Vec<u16> = self.listening.iter().collect();
        let time_wait_at = |port: u16| u64::from(self.time_wait_by_local_port[usize::from(port)]);
        let inbound: u64 = listening_ports.iter().map(|p| time_wait_at(*p)).sum();
        // A TIME_WAIT socket on a port outside the range that nothing listens on holds no ephemeral
        // port: the server side of a listener that has stopped, or a client that bound its port.
        let without_listener: u64 =
            (0..=u16::MAX).filter(|p| !self.range.contains(*p) && !self.listening.contains(*p)).map(time_wait_at).sum();
        let time_wait_total = self.states[TcpState::TimeWait as usize];
        let listeners_in_range: Vec<u16> = listening_ports
            .iter()
            .copied()
            .filter(|p| self.range.contains(*p) && !self.reserved.contains(*p))
            .collect();
        let reserved_in_range = self.reserved.count_in(self.range);
        let usable_ports = self.range.size() - reserved_in_range - listeners_in_range.len() as u32;

        // Ports of addresses whose clients bind before they connect: connect() skips them for every
        // destination (the kernel gives a port chosen by bind() to no one else).
        let mut destinations: FastMap<IpAddr, u32> = FastMap::default();
        self.buckets.keys().for_each(|key| *destinations.entry(key.local_ip).or_default() += 1);
        let connectable = |p: u16| !self.reserved.contains(p) && !self.listening.contains(p);
        let mut bound = PortSet::default();
        let mut binding: Vec<IpAddr> = Vec::new();
        for (ip, ports) in &self.addresses {
            if binds_first(self.range, ports, &connectable, destinations.get(ip).copied().unwrap_or(0)) {
                binding.push(*ip);
                (self.range.low..=self.range.high)
                    .filter(|p| connectable(*p) && ports.in_use.contains(*p))
                    .for_each(|p| bound.insert(p));
            }
        }
        let bound_ports = bound.count_in(self.range);

        let mut cookies = self.cookies;
        cookies.sort_unstable();
        let complete = cookies.len() <= MAX_COOKIES;
        // Comparing: the cookies not in the previous read's (both sorted) are new connections.
        let comparing = self.tracking.previous.is_some();
        let mut new_by_id: Vec<u32> = Vec::new();
        if let Some((previous, _)) = self.tracking.previous.take().filter(|(p, _)| !p.cookies.is_empty()) {
            new_by_id = vec![0; self.buckets.len()];
            let mut before = previous.cookies.iter().peekable();
            for (cookie, id) in &cookies {
                while before.next_if(|b| *b < cookie).is_some() {}
                if before.peek() != Some(&cookie) {
                    new_by_id[*id as usize] += 1;
                }
            }
        }
        // The previous read's tuples are dropped by now; the cookies are kept in their own memory
        // (the map is done in place), without the bucket ids.
        let mut tuples = self.tracking.record.then(|| {
            let mut kept: Vec<u64> =
                if complete { cookies.into_iter().map(|(cookie, _)| cookie).collect() } else { Vec::new() };
            kept.shrink_to_fit();
            Tuples { ports: FastMap::default(), cookies: kept }
        });
        let mut ranked: Vec<(BucketKey, BucketCount)> = self
            .buckets
            .into_iter()
            .map(|(key, mut count)| {
                count.new += new_by_id.get(count.id as usize).copied().unwrap_or(0);
                if let (Some(tuples), Some(mut ports)) = (tuples.as_mut(), count.ports.take()) {
                    ports.seal();
                    tuples.ports.insert(key, SeenPortsEq(ports));
                }
                // A plain connect() skips a bound port altogether, and a peer without timestamps leaves
                // nothing to take over: no reuse there.
                if binding.contains(&key.local_ip) || count.peer_without_timestamps {
                    count.reusable = 0;
                }
                (key, count)
            })
            .collect();
        // What a destination cannot get: the ports bind() users hold, and its own held ports where
        // connect() chose them (a binding address's ports are among the bound ones already).
        let unavailable = |key: &BucketKey, count: &BucketCount| {
            let own = if binding.contains(&key.local_ip) { 0 } else { count.sockets - count.reusable };
            (bound_ports + own).min(usable_ports)
        };
        ranked.sort_by(|(ka, a), (kb, b)| {
            unavailable(kb, b).cmp(&unavailable(ka, a)).then(b.sockets.cmp(&a.sockets)).then(ka.cmp(kb))
        });
        let bucket_count = ranked.len();
        let buckets = ranked
            .into_iter()
            .take(top)
            .map(|(key, count)| {
                let unavailable = unavailable(&key, &count);
                Bucket {
                    local_ip: key.local_ip.to_string(),
                    remote: SocketAddr::new(key.remote_ip, key.remote_port).to_string(),
                    count: count.sockets,
                    time_wait: count.time_wait,
                    reusable: count.reusable,
                    held: count.sockets - count.reusable,
                    usable_ports,
                    available: usable_ports - unavailable,
                    usage_pct: percent(unavailable, usable_ports),
                    reuse_applies: !binding.contains(&key.local_ip)
                        && !count.peer_without_timestamps
                        && self.reuse.applies(key.local_ip, key.remote_ip, 0),
                    bound_first: binding.contains(&key.local_ip),
                    growth_per_sec: None,
                    seconds_to_exhaustion: None,
                    owners: None,
                    churn: None,
                    id: count.id,
                    new: comparing.then_some(count.new),
                    recent_time_wait: count.recent_time_wait,
                }
            })
            .collect();

        let bind_usable = self.range.size() - reserved_in_range;
        let mut local_ports: Vec<LocalPorts> = self
            .addresses
            .iter()
            .map(|(ip, ports)| {
                let wildcard = if ip.is_ipv4() { &self.wildcard_v4 } else { &self.wildcard_v6 };
                let in_use = (self.range.low..=self.range.high)
                    .filter(|p| !self.reserved.contains(*p) && (ports.in_use.contains(*p) || wildcard.contains(*p)))
                    .count() as u32;
                LocalPorts {
                    local_ip: ip.to_string(),
                    ports_in_use: in_use,
                    usable_ports: bind_usable,
                    available: bind_usable.saturating_sub(in_use),
                    usage_pct: percent(in_use, bind_usable),
                    binds_first: binding.contains(ip),
                    destinations: destinations.get(ip).copied().unwrap_or(0),
                }
            })
            .collect();
        local_ports.sort_by(|a, b| b.ports_in_use.cmp(&a.ports_in_use).then_with(|| a.local_ip.cmp(&b.local_ip)));
        local_ports.truncate(top);

        SocketSummary {
            source,
            total: self.total,
            states: TcpState::ALL
                .iter()
                .filter(|s| self.states[**s as usize] > 0)
                .map(|s| (s.name(), self.states[*s as usize]))
                .collect(),
            time_wait: TimeWaitSplit {
                total: time_wait_total,
                outbound: time_wait_total - inbound - without_listener,
                inbound,
                without_listener,
            },
            listening_ports,
            ephemeral: EphemeralPorts {
                range: self.range.to_string(),
                size: self.range.size(),
                reserved_in_range,
                listeners_in_range,
                usable_ports,
                bound_ports,
            },
            bucket_count,
            buckets,
            local_ports,
            untracked_addresses: self.untracked_addresses,
            owners_unavailable: None,
            unowned: self.unowned,
            live_inodes: {
                let mut inodes = self.live_inodes;
                inodes.sort_unstable();
                inodes
            },
            tuples,
        }
    }
}

/// Whether the clients on an address bind before they connect, judged from the ports they use (the
/// table does not say how a port was chosen). connect() takes ports of the parity of the range's
/// low bound first, and the other parity only once a destination has used all of those; bind(0)
/// takes the other parity first (docs/kernel-model.md, "The bind() port budget"). So: more ports
/// of bind()'s parity in use than of connect()'s (a majority, whatever a few connect() clients on
/// the same address add), or every port of both in use, none shared by two connections (connect()
/// shares ports between destinations; bind() never does), with several destinations.
fn binds_first(range: PortRange, ports: &AddressPorts, connectable: &impl Fn(u16) -> bool, destinations: u32) -> bool {
    let shared = (range.low..=range.high).any(|p| connectable(p) && ports.shared.contains(p));
    // [connect()'s parity, bind()'s parity]: ports in use, and ports there are.
    let (mut in_use, mut there) = ([0u32; 2], [0u32; 2]);
    for port in (range.low..=range.high).filter(|p| connectable(*p)) {
        let parity = usize::from((port - range.low) % 2 == 1);
        there[parity] += 1;
        if ports.in_use.contains(port) {
            in_use[parity] += 1;
        }
    }
    in_use[1] > in_use[0] || (in_use == there && in_use[1] > 0 && !shared && destinations >= 2)
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
    /// The fullest buckets (by ports held), most used first.
    pub buckets: Vec<Bucket>,
    /// The bind() budget of each local address, most used first.
    pub local_ports: Vec<LocalPorts>,
    /// Sockets on local addresses beyond the tracked number, left out of `local_ports`.
    #[serde(skip)]
    pub untracked_addresses: u64,
    /// Why `buckets[].owners` is null, when it is (not root, an offline tree).
    pub owners_unavailable: Option<String>,
    /// Live sockets whose owner was not looked up (beyond [`MAX_OWNED_SOCKETS`]).
    #[serde(skip)]
    pub unowned: u64,
    /// (inode, bucket id) of the live sockets, sorted, until the owners are looked up.
    #[serde(skip)]
    pub live_inodes: Vec<(u32, u32)>,
    /// The ports of every bucket, when recorded for a later read.
    #[serde(skip)]
    pub tuples: Option<Tuples>,
}

impl SocketSummary {
    /// Keeps the `top` fullest buckets and local addresses, and any further bucket that, sampled,
    /// runs out within an hour.
    pub(crate) fn keep_top(&mut self, top: usize) {
        let mut index = 0;
        self.buckets.retain(|b| {
            index += 1;
            index <= top || b.seconds_to_exhaustion.is_some_and(|s| s <= super::sample::SOON_SECONDS)
        });
        self.local_ports.truncate(top);
    }
}

/// TIME_WAIT sockets by who closed first. `total = outbound + inbound + without_listener`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct TimeWaitSplit {
    pub total: u64,
    /// Local port inside the ephemeral range and not a listening port: this host connected out and
    /// closed first; these hold ephemeral ports.
    pub outbound: u64,
    /// Local port is a listening port: server side; these cost memory, not ports.
    pub inbound: u64,
    /// Local port outside the range and not listening: a server that stopped or restarted, or a
    /// client that bound its port; these hold no ephemeral port.
    pub without_listener: u64,
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
    /// Of those, ports that clients binding before they connect hold (inferred, see
    /// [`binds_first`]): connect() skips them for every destination.
    pub bound_ports: u32,
}

/// One destination bucket (local IP, remote IP, remote port).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Bucket {
    pub local_ip: String,
    /// `ip:port`, or `[ip]:port` for IPv6.
    pub remote: String,
    /// Sockets using an ephemeral port in this bucket (any state but LISTEN).
    pub count: u32,
    /// Of those, sockets in TIME_WAIT.
    pub time_wait: u32,
    /// Of those, TIME_WAIT sockets connect() may take over now.
    pub reusable: u32,
    /// Ports the bucket holds: `count - reusable`.
    pub held: u32,
    pub usable_ports: u32,
    /// Ports connect() can still get for this destination now: `usable_ports - held`.
    pub available: u32,
    /// `held` as a percentage of `usable_ports`.
    pub usage_pct: f64,
    /// Whether TIME_WAIT reuse can apply to this destination at all (mode, loopback, timestamps).
    #[serde(skip)]
    pub reuse_applies: bool,
    /// Whether the clients of its local address bind before they connect (see [`binds_first`]).
    #[serde(skip)]
    pub bound_first: bool,
    /// With `--sample`: the change of `held` per second over the interval.
    pub growth_per_sec: Option<f64>,
    /// With `--sample`: seconds until `available` reaches 0 at the measured growth of `held`;
    /// `null` when not growing or not sampled.
    pub seconds_to_exhaustion: Option<f64>,
    /// The processes holding its live sockets, most first (TIME_WAIT sockets have no owner);
    /// `null` when they could not be looked up (`owners_unavailable` says why).
    pub owners: Option<Vec<Owner>>,
    /// With `--sample`: how fast connections come and go.
    pub churn: Option<Churn>,
    #[serde(skip)]
    pub id: u32,
    /// Compared with a previous read: sockets on a local port the bucket did not have then.
    #[serde(skip)]
    pub new: Option<u32>,
    /// Compared with a previous read: TIME_WAIT sockets that entered TIME_WAIT since.
    #[serde(skip)]
    pub recent_time_wait: u32,
}

/// Connections of a bucket over a `--sample` interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Churn {
    /// New connections per second: sockets of the second read on a local port the bucket did not
    /// hold at the first (a connection that opened and closed in between without leaving a
    /// TIME_WAIT here is not seen).
    pub new_per_sec: f64,
    /// Connections this host closed first, per second: sockets that entered TIME_WAIT in the interval.
    pub closed_here_per_sec: f64,
    /// `closed_here_per_sec / new_per_sec`, at most 1; `null` without new connections.
    pub closed_here_share: Option<f64>,
    /// Mean lifetime of a connection in seconds by Little's law: live sockets / new per second;
    /// `null` without new connections.
    pub mean_lifetime_seconds: Option<f64>,
}

/// The bind() budget of one local address: bind(addr, 0) needs a port of the range that no socket
/// on this address, or a wildcard listener, holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct LocalPorts {
    /// IPv4-mapped IPv6 addresses are joined to their IPv4 address.
    pub local_ip: String,
    /// Distinct ports of the range (reserved ones aside) that sockets on this address hold.
    pub ports_in_use: u32,
    /// Ports of the range that are not reserved.
    pub usable_ports: u32,
    /// How many more bind(addr, 0) can succeed: `usable_ports - ports_in_use`.
    pub available: u32,
    /// `ports_in_use` as a percentage of `usable_ports`.
    pub usage_pct: f64,
    /// Whether the clients on this address bind before they connect (see [`binds_first`]).
    #[serde(skip)]
    pub binds_first: bool,
    /// Destination buckets of this address.
    #[serde(skip)]
    pub destinations: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(state: TcpState, local: &str, remote: &str) -> Socket {
        Socket::new(state, local.parse().expect("test address"), remote.parse().expect("test address"))
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
        assert_eq!(s.time_wait, TimeWaitSplit { total: 3, outbound: 2, inbound: 1, without_listener: 0 });
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

    /// `n` TIME_WAIT sockets from consecutive ports of `local_ip` to `remote`, `age_ms` old.
    fn time_wait(c: &mut SocketCounter, n: u16, local_ip: &str, remote: &str, age_ms: u32) {
        for i in 0..n {
            let local = format!("{local_ip}:{}", 40020 + i);
            c.add(socket(TcpState::TimeWait, &local, remote).expiring_in(TIME_WAIT_MS - age_ms));
        }
    }

    #[test]
    fn reuse_follows_mode_destination_timestamps_and_age() {
        let reuse = |mode: i64, timestamps: bool| Reuse { mode, timestamps, delay_ms: 1000 };
        let cases = [
            // (policy, remote, age ms, reusable of 5)
            (reuse(0, true), "127.0.0.2:80", 5000, 0),
            (reuse(1, true), "10.0.0.9:80", 5000, 5),
            (reuse(1, true), "10.0.0.9:80", 500, 0),
            (reuse(2, true), "127.0.0.2:80", 5000, 5),
            (reuse(2, true), "10.0.0.9:80", 5000, 0),
            (reuse(1, false), "10.0.0.9:80", 5000, 0),
        ];
        for (policy, remote, age, expected) in cases {
            let mut c = counter().reuse(policy);
            let local_ip = if remote.starts_with("127.") { "127.0.0.1" } else { "10.0.0.1" };
            time_wait(&mut c, 5, local_ip, remote, age);
            c.add(socket(TcpState::Established, &format!("{local_ip}:40090"), remote));
            let b = &c.finish("test", 10).buckets[0];
            assert_eq!(b.reusable, expected, "{policy:?} {remote} {age} ms");
            assert_eq!((b.count, b.held, b.available), (6, 6 - expected, 90 - (6 - expected)), "{policy:?}");
        }
        // A socket bound to lo counts as loopback for mode 2; one of unknown age is never reusable.
        let mut c = counter().reuse(reuse(2, true));
        let bound = Socket { interface: 1, ..socket(TcpState::TimeWait, "10.0.0.1:40020", "10.0.0.9:80") };
        c.add(bound.expiring_in(10_000));
        c.add(socket(TcpState::TimeWait, "10.0.0.1:40021", "10.0.0.9:80"));
        assert_eq!(c.finish("test", 10).buckets[0].reusable, 1);
    }

    #[test]
    fn a_peer_whose_connections_carry_no_timestamps_has_nothing_to_take_over() {
        let mut c = counter().reuse(Reuse { mode: 1, timestamps: true, delay_ms: 1000 });
        time_wait(&mut c, 5, "10.0.0.1", "10.0.0.9:80", 5000);
        time_wait(&mut c, 5, "10.0.0.1", "10.0.0.8:80", 5000);
        let live = |remote: &str, timestamps| Socket {
            timestamps: Some(timestamps),
            ..socket(TcpState::Established, "10.0.0.1:40090", remote)
        };
        c.add(live("10.0.0.9:80", false));
        c.add(live("10.0.0.8:80", true));
        let s = c.finish("test", 10);
        let view: Vec<(&str, u32, bool)> =
            s.buckets.iter().map(|b| (b.remote.as_str(), b.reusable, b.reuse_applies)).collect();
        assert_eq!(view, vec![("10.0.0.9:80", 0, false), ("10.0.0.8:80", 5, true)]);
    }

    #[test]
    fn buckets_rank_by_ports_held() {
        let mut c = counter().reuse(Reuse { mode: 1, timestamps: true, delay_ms: 1000 });
        time_wait(&mut c, 30, "10.0.0.1", "10.0.0.9:80", 5000);
        for port in 40060..40070 {
            c.add(socket(TcpState::Established, &format!("10.0.0.1:{port}"), "10.0.0.9:81"));
        }
        let s = c.finish("test", 10);
        let order: Vec<(&str, u32, u32)> = s.buckets.iter().map(|b| (b.remote.as_str(), b.count, b.held)).collect();
        assert_eq!(order, vec![("10.0.0.9:81", 10, 10), ("10.0.0.9:80", 30, 0)]);
        assert_eq!(s.buckets[0].usage_pct, 11.1, "10 of 90 usable ports held");
    }

    #[test]
    fn time_wait_without_a_listener_outside_the_range_holds_no_port() {
        let mut c = counter();
        // A server on :8080 that stopped: its TIME_WAIT stays, toward the clients' ephemeral ports.
        for i in 0..4 {
            c.add(socket(TcpState::TimeWait, "10.0.0.1:8080", &format!("10.0.0.9:{}", 40050 + i)));
        }
        c.add(socket(TcpState::TimeWait, "10.0.0.1:40020", "10.0.0.9:443"));
        let s = c.finish("test", 10);
        assert_eq!(s.time_wait, TimeWaitSplit { total: 5, outbound: 1, inbound: 0, without_listener: 4 });
        assert_eq!(s.bucket_count, 1, "only the outbound socket is in a bucket");
        assert_eq!(s.buckets[0].remote, "10.0.0.9:443");
    }

    #[test]
    fn the_bind_budget_counts_distinct_ports_per_address_with_wildcard_listeners() {
        let mut c = counter();
        // Ports 40020..40029 to two destinations from 127.0.0.1: connect() shared them.
        for port in 40020..40030 {
            c.add(socket(TcpState::TimeWait, &format!("127.0.0.1:{port}"), "127.0.0.2:80"));
            c.add(socket(TcpState::Established, &format!("[::ffff:127.0.0.1]:{port}"), "127.0.0.2:81"));
        }
        c.add(socket(TcpState::Listen, "0.0.0.0:40050", "0.0.0.0:0"));
        c.add(socket(TcpState::Listen, "[::]:40051", "[::]:0"));
        c.add(socket(TcpState::Established, "127.0.0.3:40060", "127.0.0.2:80"));
        // A reserved port and a port outside the range are not part of the budget.
        c.add(socket(TcpState::Established, "127.0.0.1:40010", "127.0.0.2:80"));
        c.add(socket(TcpState::Established, "127.0.0.1:5000", "127.0.0.2:80"));
        let s = c.finish("test", 10);
        let view: Vec<(&str, u32, u32, bool, u32)> = s
            .local_ports
            .iter()
            .map(|l| (l.local_ip.as_str(), l.ports_in_use, l.available, l.binds_first, l.destinations))
            .collect();
        // 90 usable for bind (100 - 10 reserved); 10 own ports and the IPv4 wildcard listener.
        // Shared ports, and an even (connect-parity) port: connect() chose these.
        assert_eq!(view, vec![("127.0.0.1", 11, 79, false, 2), ("127.0.0.3", 2, 88, false, 1)]);
        assert_eq!(s.local_ports[0].usage_pct, 12.2);
    }

    #[test]
    fn ports_bound_before_connect_are_skipped_by_connect_for_every_destination() {
        let mut c = SocketCounter::new(PortRange { low: 40000, high: 40099 }, PortSet::default()).reuse(Reuse {
            mode: 1,
            timestamps: true,
            delay_ms: 1000,
        });
        // 127.0.0.1 binds first: odd ports (bind(0)'s parity), one connection each, two destinations,
        // all TIME_WAIT old enough for reuse, which a plain connect() cannot use on a bound port.
        for (i, port) in (40001..40040).step_by(2).enumerate() {
            let remote = if i % 2 == 0 { "127.0.0.2:9000" } else { "127.0.0.2:9001" };
            c.add(socket(TcpState::TimeWait, &format!("127.0.0.1:{port}"), remote).expiring_in(30_000));
        }
        // 10.0.0.1 lets connect() choose: even ports.
        for port in (40000..40010).step_by(2) {
            c.add(socket(TcpState::Established, &format!("10.0.0.1:{port}"), "10.0.0.9:443"));
        }
        let s = c.finish("test", 10);
        assert_eq!(s.ephemeral.bound_ports, 20);
        let view: Vec<(&str, u32, u32, u32, u32)> =
            s.buckets.iter().map(|b| (b.remote.as_str(), b.count, b.reusable, b.held, b.available)).collect();
        assert_eq!(
            view,
            vec![
                // 100 usable - 20 bound - 5 own.
                ("10.0.0.9:443", 5, 0, 5, 75),
                // 100 usable - 20 bound (their own among them); no TIME_WAIT taken over.
                ("127.0.0.2:9000", 10, 0, 10, 80),
                ("127.0.0.2:9001", 10, 0, 10, 80),
            ]
        );
        let binding: Vec<(&str, bool)> = s.local_ports.iter().map(|l| (l.local_ip.as_str(), l.binds_first)).collect();
        assert_eq!(binding, vec![("127.0.0.1", true), ("10.0.0.1", false)]);
    }

    #[test]
    fn a_client_whose_connect_chooses_its_ports_is_not_taken_for_one_that_binds() {
        // One destination past half the range: every even port, then odd ones.
        let mut c = SocketCounter::new(PortRange { low: 40000, high: 40099 }, PortSet::default());
        for port in (40000..40100).step_by(2).chain((40001..40041).step_by(2)) {
            c.add(socket(TcpState::TimeWait, &format!("127.0.0.1:{port}"), "127.0.0.2:80"));
        }
        let s = c.finish("test", 10);
        assert_eq!((s.ephemeral.bound_ports, s.buckets[0].available), (0, 30));
        assert!(!s.local_ports[0].binds_first);
    }

    #[test]
    fn local_addresses_beyond_the_limit_are_counted_not_tracked() {
        let mut c = SocketCounter::new(PortRange { low: 40000, high: 40099 }, PortSet::default());
        for i in 0..=MAX_LOCAL_ADDRESSES as u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            c.add(socket(TcpState::Established, &format!("{ip}:40000"), "10.255.0.1:80"));
        }
        let s = c.finish("test", usize::MAX);
        assert_eq!((s.local_ports.len(), s.untracked_addresses), (MAX_LOCAL_ADDRESSES, 1));
    }

    #[test]
    fn percent_rounds_to_one_decimal_and_survives_an_empty_budget() {
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(percent(80, 100), 80.0);
        assert_eq!(percent(1, 0), 100.0);
    }

    #[test]
    fn a_second_read_tells_new_connections_and_fresh_time_wait_from_the_first() {
        let live = |port: u16, remote: &str| socket(TcpState::Established, &format!("10.0.0.1:{port}"), remote);
        let mut first = counter().tracking(Tracking { record: true, ..Tracking::default() });
        (40000..40010).for_each(|p| first.add(live(p, "10.0.0.2:443")));
        let tuples = first.finish("test", usize::MAX).tuples.expect("recorded");

        let mut second = counter().tracking(Tracking { previous: Some((tuples, 2000)), ..Tracking::default() });
        (40000..40005).for_each(|p| second.add(live(p, "10.0.0.2:443")));
        // New ports: one that closed a second ago, ten that closed long before the first read could
        // have seen them (but are new to this bucket all the same).
        second.add(socket(TcpState::TimeWait, "10.0.0.1:40010", "10.0.0.2:443").expiring_in(59_000));
        (40011..40021).for_each(|p| {
            second.add(socket(TcpState::TimeWait, &format!("10.0.0.1:{p}"), "10.0.0.2:443").expiring_in(30_000))
        });
        (40000..40003).for_each(|p| second.add(live(p, "10.0.0.3:80")));
        let summary = second.finish("test", usize::MAX);
        let bucket = |remote: &str| summary.buckets.iter().find(|b| b.remote == remote).expect("bucket");
        assert_eq!((bucket("10.0.0.2:443").new, bucket("10.0.0.2:443").recent_time_wait), (Some(11), 1));
        assert_eq!(bucket("10.0.0.3:80").new, Some(3), "a bucket the first read did not have is all new");
        assert_eq!(counter().finish("test", 1).tuples, None, "nothing recorded unless asked");
    }

    #[test]
    fn with_cookies_a_new_connection_on_a_port_seen_before_is_new() {
        let with =
            |state, port: u16, cookie| Socket { cookie, ..socket(state, &format!("10.0.0.1:{port}"), "10.0.0.2:443") };
        let mut first = counter().tracking(Tracking { record: true, ..Tracking::default() });
        (0..10u16).for_each(|i| first.add(with(TcpState::Established, 40000 + i, 100 + u64::from(i))));
        let tuples = first.finish("test", usize::MAX).tuples.expect("recorded");
        let mut second = counter().tracking(Tracking { previous: Some((tuples, 2000)), ..Tracking::default() });
        // The same ports: five the same connections (now in TIME_WAIT, cookie kept), five new ones.
        (0..5u16).for_each(|i| second.add(with(TcpState::TimeWait, 40000 + i, 100 + u64::from(i)).expiring_in(59_500)));
        (5..10u16).for_each(|i| second.add(with(TcpState::Established, 40000 + i, 900 + u64::from(i))));
        let summary = second.finish("test", usize::MAX);
        assert_eq!((summary.buckets[0].new, summary.buckets[0].recent_time_wait), (Some(5), 5));
    }

    #[test]
    fn a_large_bucket_records_its_ports_in_a_bitmap() {
        let mut ports = SeenPorts::Few(Vec::new());
        (1000..1000 + 5000u16).rev().for_each(|p| ports.insert(p));
        assert!(matches!(ports, SeenPorts::Many(_)));
        ports.seal();
        assert!(ports.contains(1000) && ports.contains(5999) && !ports.contains(6000) && !ports.contains(999));
        let mut few = SeenPorts::Few(vec![]);
        [7, 3, 5].iter().for_each(|p| few.insert(*p));
        few.seal();
        assert!(few.contains(3) && few.contains(7) && !few.contains(4));
    }

    #[test]
    fn the_inodes_of_live_sockets_are_kept_for_their_owners_and_time_wait_has_none() {
        let mut c = counter().tracking(Tracking { owners: true, ..Tracking::default() });
        let with_inode = |s: Socket, inode| Socket { inode, ..s };
        c.add(with_inode(socket(TcpState::Established, "10.0.0.1:40001", "10.0.0.2:443"), 900));
        c.add(with_inode(socket(TcpState::Established, "10.0.0.1:40002", "10.0.0.3:443"), 100));
        c.add(socket(TcpState::TimeWait, "10.0.0.1:40003", "10.0.0.2:443"));
        c.add(with_inode(socket(TcpState::Established, "10.0.0.1:40004", "10.0.0.2:443"), 500));
        let summary = c.finish("test", usize::MAX);
        let id = |remote: &str| summary.buckets.iter().find(|b| b.remote == remote).expect("bucket").id;
        let (a, b) = (id("10.0.0.2:443"), id("10.0.0.3:443"));
        assert_eq!(summary.live_inodes, vec![(100, b), (500, a), (900, a)], "sorted by inode");
    }

    #[test]
    fn a_read_larger_than_the_cookie_limit_still_counts_new_connections_by_cookie() {
        use std::net::{Ipv4Addr, SocketAddr as SA};
        let range = PortRange { low: 1024, high: 65535 };
        let mk = |i: u32, cookie: u64| {
            // bucket by remote ip, port by i
            let remote = SA::new(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i / 60000)), 80);
            let local = SA::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 2000 + (i % 60000) as u16);
            Socket { cookie, ..Socket::new(TcpState::Established, local, remote) }
        };
        let mut first =
            SocketCounter::new(range, PortSet::default()).tracking(Tracking { record: true, ..Tracking::default() });
        (0..1000u32).for_each(|i| first.add(mk(i, 1 + u64::from(i))));
        let tuples = first.finish("t", usize::MAX).tuples.expect("rec");
        assert_eq!(tuples.cookies.len(), 1000);
        let mut second = SocketCounter::new(range, PortSet::default())
            .tracking(Tracking { previous: Some((tuples, 1000)), ..Tracking::default() });
        // the same 1000 connections: not new
        (0..1000u32).for_each(|i| second.add(mk(i, 1 + u64::from(i))));
        // MAX_COOKIES new ones on unseen ports/buckets
        (1000..1000 + MAX_COOKIES as u32).for_each(|i| second.add(mk(i, 10_000_000 + u64::from(i))));
        // 1000 new connections (new cookies) on the ports of the first read
        (0..1000u32).for_each(|i| second.add(mk(i, 50_000_000 + u64::from(i))));
        let s = second.finish("t", usize::MAX);
        let new: u32 = s.buckets.iter().map(|b| b.new.expect("compared")).sum();
        assert_eq!(
            new,
            MAX_COOKIES as u32 + 1000,
            "every socket with a cookie is compared by cookie, beyond the limit too"
        );
    }

    #[test]
    fn duplicate_cookies_and_sockets_without_one_are_each_judged_on_their_own() {
        let with = |port: u16, cookie| Socket {
            cookie,
            ..socket(TcpState::Established, &format!("10.0.0.1:{port}"), "10.0.0.2:443")
        };
        let mut first = counter().tracking(Tracking { record: true, ..Tracking::default() });
        first.add(with(40000, 5));
        first.add(with(40001, 5));
        first.add(with(40002, 0));
        first.add(with(40003, 7));
        let tuples = first.finish("t", usize::MAX).tuples.expect("rec");
        let mut second = counter().tracking(Tracking { previous: Some((tuples, 1000)), ..Tracking::default() });
        second.add(with(40000, 5));
        second.add(with(40001, 5));
        second.add(with(40002, 0)); // by port: seen
        second.add(with(40004, 0)); // by port: new
        second.add(with(40003, 8)); // new
        second.add(with(40005, 7)); // seen cookie
        second.add(with(40005, 7));
        let s = second.finish("t", usize::MAX);
        assert_eq!(s.buckets[0].new, Some(2));
    }
}
