//! The socket table, counted as it streams (docs/port-model.md, "Inputs" and "TIME_WAIT by
//! direction"): a [`SocketCounter`] takes [`Socket`] records one by one and keeps counts only
//! (per state, per local port, per destination bucket, a port bitmap per local address), never the
//! sockets themselves, so memory does not grow with the number of TIME_WAIT sockets. At the end it
//! hands the counts to the budgets ([`connect`], [`bind`]) and to churn ([`churn`]) and returns
//! one [`SocketSummary`]. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::FastMap;
use crate::model::bind::{Addresses, LocalPorts};
use crate::model::churn::{self, MAX_COOKIES, SeenPorts};
use crate::model::connect::{self, Bucket, BucketCount, BucketKey, Budget, EphemeralPorts};
use crate::model::lifetimes::Followed;
use crate::model::records::{Socket, TIME_WAIT_MS, TcpState};
use crate::model::reuse::Reuse;
use crate::ports::{PortRange, PortSet};

/// Connections on one local port of the range toward one remote address, each alone in its bucket
/// (a remote port of its own), from which the port is taken for a server's: a client's connect()
/// gives a local port to each destination it connects to, but a destination's connections go to
/// many local ports; a server's port meets each client port of its peers, one connection each.
pub(crate) const SERVER_PORT_PEER_BUCKETS: u32 = 16;

/// Live sockets whose inode is kept for the owner lookup (8 bytes each, 8 MiB at most); beyond,
/// their owners are not looked up, with a warning.
pub(crate) const MAX_OWNED_SOCKETS: usize = 1 << 20;

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
    /// The inode of each live socket of a bucket, to find the processes holding it.
    pub owners: bool,
    /// The local ports of every bucket, for a later read to compare with.
    pub record: bool,
    /// The ports of a previous read and the milliseconds since: what is new in this one.
    pub previous: Option<(Tuples, u32)>,
    /// The connections followed over a window of reads, this one begun (see [`Followed`]).
    pub followed: Option<Followed>,
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
    addresses: Addresses,
    tracking: Tracking,
    /// (inode, bucket id) of live sockets, with [`Tracking::owners`].
    live_inodes: Vec<(u32, u32)>,
    /// Live sockets beyond [`MAX_OWNED_SOCKETS`], whose owners are not looked up.
    unowned: u64,
    /// Recording or comparing: the cookie of each bucket socket, with its bucket's id. Sorted at
    /// the end, they are compared with the previous read's in one pass and kept for the next.
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
            addresses: Addresses::default(),
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
        if self.range.contains(local_port) {
            self.addresses.add(self.range, &socket);
        }
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
        let key = BucketKey::of(&socket);
        let next_id = self.buckets.len() as u32;
        let record = self.tracking.record;
        let bucket = self.buckets.entry(key).or_insert_with(|| BucketCount {
            id: next_id,
            ports: record.then(|| SeenPorts::Few(Vec::new())),
            first_port: local_port,
            one_port: true,
            ..BucketCount::default()
        });
        bucket.add(&socket, &self.reuse);
        if let Some(followed) = &mut self.tracking.followed {
            followed.see(&socket, key);
        }
        let (new, recent) = track(&self.tracking, &mut self.cookies, &socket, key, bucket.id);
        bucket.new += u32::from(new);
        bucket.recent_time_wait += u32::from(recent);
        if self.tracking.owners && socket.state != TcpState::TimeWait && socket.inode != 0 {
            if self.live_inodes.len() < MAX_OWNED_SOCKETS {
                self.live_inodes.push((socket.inode, bucket.id));
            } else {
                self.unowned += 1;
            }
        }
    }

    /// Ports of the range, neither listening nor reserved, whose connections go to one peer's many
    /// ports, each alone in its bucket: a server that stopped listening, its connections
    /// (TIME_WAIT, mostly) still there. Its port stays taken for connect() until they end, like a
    /// listener's (they keep the bind bucket the listener made, which connect() skips).
    fn stopped_listeners(&self) -> PortSet {
        // Local port -> (the remote address of its first lone connection, how many it has).
        let mut lone: FastMap<u16, (std::net::IpAddr, u32)> = FastMap::default();
        for (key, count) in self.buckets.iter().filter(|(_, c)| c.one_port) {
            let peers = lone.entry(count.first_port).or_insert((key.remote_ip, 0));
            if peers.0 == key.remote_ip {
                peers.1 += 1;
            }
        }
        let mut stopped = PortSet::default();
        lone.iter()
            .filter(|(port, (_, n))| *n >= SERVER_PORT_PEER_BUCKETS && !self.reserved.contains(**port))
            .for_each(|(port, _)| stopped.insert(*port));
        stopped
    }

    /// The summary, with the `top` fullest buckets and local addresses.
    pub(crate) fn finish(mut self, source: &'static str, top: usize) -> SocketSummary {
        let listening_ports: Vec<u16> = self.listening.iter().collect();
        let stopped = self.stopped_listeners();
        let time_wait = self.time_wait_split(&listening_ports, &stopped);
        let mut ephemeral = connect::ephemeral_ports(self.range, &self.reserved, &listening_ports, &stopped);
        // A stopped server's connections are no destination of this host's clients. (Bucket ids
        // run up to those made, dropped ones included.)
        let made = self.buckets.len();
        self.buckets.retain(|_, count| !(count.one_port && stopped.contains(count.first_port)));
        let destinations = connect::destinations(&self.buckets);
        let connectable = |p: u16| !self.reserved.contains(p) && !self.listening.contains(p) && !stopped.contains(p);
        let (binding, bound) = self.addresses.binding(self.range, &connectable, &destinations);
        ephemeral.bound_ports = bound.count_in(self.range);

        let comparing = self.tracking.previous.is_some();
        let bucket_count = self.buckets.len();
        let (counted, tuples, followed) = self.counted(made);
        let budget = Budget {
            usable_ports: ephemeral.usable_ports,
            bound_ports: ephemeral.bound_ports,
            binding: &binding,
            reuse: self.reuse,
            comparing,
        };
        let buckets = budget.rank(counted, top);
        let local_ports = self.addresses.budgets(self.range, &self.reserved, &binding, &destinations, top);
        SocketSummary {
            source,
            total: self.total,
            states: TcpState::ALL
                .iter()
                .filter(|s| self.states[**s as usize] > 0)
                .map(|s| (s.name(), self.states[*s as usize]))
                .collect(),
            time_wait,
            listening_ports,
            ephemeral,
            bucket_count,
            buckets,
            local_ports,
            untracked_addresses: self.addresses.untracked,
            owners_unavailable: None,
            unowned: self.unowned,
            live_inodes: {
                let mut inodes = std::mem::take(&mut self.live_inodes);
                inodes.sort_unstable();
                inodes
            },
            tuples,
            reuse_delay_ms: self.reuse.delay_ms,
            followed,
        }
    }

    /// The buckets with what tracking found of each (new connections, lifetimes), and what is kept
    /// for the next read: the tuples, when recording, and the connections followed.
    fn counted(&mut self, buckets_made: usize) -> (Vec<(BucketKey, BucketCount)>, Option<Tuples>, Option<Followed>) {
        let (new_by_id, mut tuples) = self.close_tracking(buckets_made);
        let mut followed = self.tracking.followed.take();
        if let Some(followed) = &mut followed {
            followed.end_read();
        }
        let counted = std::mem::take(&mut self.buckets)
            .into_iter()
            .map(|(key, mut count)| {
                count.new += new_by_id.get(count.id as usize).copied().unwrap_or(0);
                count.lifetimes = followed.as_ref().and_then(|f| f.lifetimes(&key));
                if let (Some(tuples), Some(mut ports)) = (tuples.as_mut(), count.ports.take()) {
                    ports.seal();
                    tuples.ports.insert(key, SeenPortsEq(ports));
                }
                (key, count)
            })
            .collect();
        (counted, tuples, followed)
    }

    /// TIME_WAIT by direction: on a listening port (inbound), on a port that nothing listens on
    /// outside the range or of a stopped server inside it (without listener), and the rest
    /// (outbound).
    fn time_wait_split(&self, listening_ports: &[u16], stopped: &PortSet) -> TimeWaitSplit {
        let time_wait_at = |port: u16| u64::from(self.time_wait_by_local_port[usize::from(port)]);
        let inbound: u64 = listening_ports.iter().map(|p| time_wait_at(*p)).sum();
        // A TIME_WAIT socket on a port outside the range that nothing listens on holds no ephemeral
        // port: the server side of a listener that has stopped, or a client that bound its port.
        // Inside the range, a stopped server's port is told by its peers (see `stopped_listeners`).
        let without_listener: u64 = (0..=u16::MAX)
            .filter(|p| (!self.range.contains(*p) && !self.listening.contains(*p)) || stopped.contains(*p))
            .map(time_wait_at)
            .sum();
        let total = self.states[TcpState::TimeWait as usize];
        TimeWaitSplit { total, outbound: total - inbound - without_listener, inbound, without_listener }
    }

    /// Ends the tracking of connections: the new connections of each bucket by id (compared by
    /// cookie), and what is kept for the next read when recording (the cookies; the buckets'
    /// ports are added by the caller).
    fn close_tracking(&mut self, buckets_made: usize) -> (Vec<u32>, Option<Tuples>) {
        let mut cookies = std::mem::take(&mut self.cookies);
        cookies.sort_unstable();
        let complete = cookies.len() <= MAX_COOKIES;
        let new_by_id = match self.tracking.previous.take().filter(|(p, _)| !p.cookies.is_empty()) {
            Some((previous, _)) => churn::new_by_cookie(&cookies, &previous.cookies, buckets_made),
            None => Vec::new(),
        };
        // The previous read's tuples are dropped by now; the cookies are kept in their own memory
        // (the map is done in place), without the bucket ids.
        let tuples = self.tracking.record.then(|| {
            let mut kept: Vec<u64> =
                if complete { cookies.into_iter().map(|(cookie, _)| cookie).collect() } else { Vec::new() };
            kept.shrink_to_fit();
            Tuples { ports: FastMap::default(), cookies: kept }
        });
        (new_by_id, tuples)
    }
}

/// Tracks one socket of bucket `key` (number `id`) against the previous read: whether it is new
/// there (a socket whose cookie is kept is compared at the end, in one merge, and is not new
/// here), and whether it entered TIME_WAIT since. Keeps its cookie when recording or comparing.
fn track(tracking: &Tracking, cookies: &mut Vec<(u64, u32)>, socket: &Socket, key: BucketKey, id: u32) -> (bool, bool) {
    let by_cookie = tracking.previous.as_ref().is_some_and(|(previous, _)| !previous.cookies.is_empty());
    // One past the limit marks the list as incomplete, and it stops growing there.
    let kept = (tracking.record || by_cookie) && socket.cookie != 0 && cookies.len() <= MAX_COOKIES;
    if kept {
        cookies.push((socket.cookie, id));
    }
    let Some((previous, since_ms)) = &tracking.previous else { return (false, false) };
    // A cookie beyond the limit is searched for, so that a read larger than the last is still
    // counted by cookie; a socket without a cookie is compared by port.
    let compared_later = by_cookie && kept;
    let seen = if by_cookie && socket.cookie != 0 {
        kept || previous.cookies.binary_search(&socket.cookie).is_ok()
    } else {
        previous.ports.get(&key).is_some_and(|seen| seen.0.contains(socket.local.port()))
    };
    let recent = socket.state == TcpState::TimeWait
        && socket.expires_ms.is_some_and(|left| TIME_WAIT_MS.saturating_sub(left) <= *since_ms);
    (!compared_later && !seen, recent)
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
    /// `tcp_tw_reuse_delay` as the counter judged reuse by, in milliseconds.
    #[serde(skip)]
    pub reuse_delay_ms: u32,
    /// The connections followed over a window of reads, for the next read of the window.
    #[serde(skip)]
    pub followed: Option<Followed>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bind::MAX_LOCAL_ADDRESSES;

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
    fn a_stopped_server_inside_the_range_holds_its_port_and_is_no_destination() {
        let mut c = counter();
        // A server on 10.0.0.1:40050 that stopped: its TIME_WAIT toward one peer's many ports.
        for i in 0..SERVER_PORT_PEER_BUCKETS as u16 + 4 {
            c.add(socket(TcpState::TimeWait, "10.0.0.1:40050", &format!("10.0.0.9:{}", 50000 + i)));
        }
        // A client's port toward a few ports of one host is no server's.
        for port in [80, 443, 8080] {
            c.add(socket(TcpState::TimeWait, "10.0.0.1:40020", &format!("10.0.0.9:{port}")));
        }
        let s = c.finish("test", 10);
        assert_eq!(s.ephemeral.stopped_listeners_in_range, vec![40050]);
        assert_eq!(s.ephemeral.usable_ports, 89, "100 - 10 reserved - the stopped server's port");
        assert_eq!(s.time_wait, TimeWaitSplit { total: 23, outbound: 3, inbound: 0, without_listener: 20 });
        let remotes: Vec<&str> = s.buckets.iter().map(|b| b.remote.as_str()).collect();
        assert_eq!((s.bucket_count, remotes), (3, vec!["10.0.0.9:80", "10.0.0.9:443", "10.0.0.9:8080"]));

        // A client of 20 ports of one host gives each local port to every one of them: its buckets
        // hold many local ports each, and no port is a server's.
        let mut client = SocketCounter::new(PortRange { low: 40000, high: 40999 }, PortSet::default());
        for local in (40000..40400).step_by(2) {
            for remote in 8000..8020 {
                let tw = socket(TcpState::TimeWait, &format!("10.0.0.1:{local}"), &format!("10.0.0.9:{remote}"));
                client.add(tw);
            }
        }
        let s = client.finish("test", 10);
        assert_eq!((s.ephemeral.stopped_listeners_in_range.len(), s.ephemeral.usable_ports), (0, 1000));
        assert_eq!((s.time_wait.outbound, s.bucket_count), (4000, 20));
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
    fn a_connect_client_draining_its_time_wait_is_not_taken_for_one_that_binds() {
        let range = PortRange { low: 40000, high: 40099 };
        let tw = |port: u16, age_ms: u32| {
            socket(TcpState::TimeWait, &format!("127.0.0.1:{port}"), "127.0.0.2:80").expiring_in(TIME_WAIT_MS - age_ms)
        };
        let summary = |sockets: &[Socket]| {
            let mut counter = SocketCounter::new(range, PortSet::default());
            sockets.iter().for_each(|s| counter.add(*s));
            counter.finish("test", 10)
        };
        // connect() took the even ports (55-59 s ago), then the odd ones (45-50 s ago); the older
        // even ones have ended: odd ports are the majority, all younger than the even ones left.
        let mut draining: Vec<Socket> = (40080..40100).step_by(2).map(|p| tw(p, 55_000)).collect();
        draining.extend((40001..40100).step_by(2).map(|p| tw(p, 45_000 + u32::from(p % 10) * 500)));
        let s = summary(&draining);
        assert_eq!((s.ephemeral.bound_ports, s.local_ports[0].binds_first), (0, false));
        assert_eq!(s.buckets[0].available, 40, "100 - 60 held toward the drained destination");
        // Later, the even ones gone, nothing live, the youngest odd one over 30 s old: drained.
        let tail: Vec<Socket> = (40001..40100).step_by(2).map(|p| tw(p, 45_000)).collect();
        assert_eq!(summary(&tail).ephemeral.bound_ports, 0);

        // A client that binds first: odd ports first, even ones younger once the odd ones ran out;
        // or odd ones alone, young, or beside a live connection.
        let mut binding: Vec<Socket> = (40001..40100).step_by(2).map(|p| tw(p, 40_000)).collect();
        binding.extend((40000..40020).step_by(2).map(|p| tw(p, 5_000)));
        assert_eq!(summary(&binding).ephemeral.bound_ports, 60);
        let young: Vec<Socket> = (40001..40100).step_by(2).map(|p| tw(p, 20_000)).collect();
        assert_eq!(summary(&young).ephemeral.bound_ports, 50);
        let mut live = tail.clone();
        live.push(socket(TcpState::Established, "127.0.0.1:40099", "127.0.0.2:81"));
        assert!(summary(&live).local_ports[0].binds_first);
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
        use std::net::{IpAddr, Ipv4Addr, SocketAddr as SA};
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
