//! The connect() budget, per destination (docs/port-model.md, "The connect() budget, per
//! destination"): connect() without bind() can give one local port to any number of 4-tuples that
//! differ, so its budget is per (local IP, remote IP, remote port) bucket: the ports of
//! `ip_local_port_range`, minus reserved ports, minus ports a listener holds inside the range,
//! minus the ports clients that bind first hold, minus the ports the bucket *holds* (its sockets
//! but the TIME_WAIT ones connect() may take over now, [`Reuse`]). Pure.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::model::churn::{Ages, Churn, Lifetimes, SeenPorts};
use crate::model::forecast::Forecast;
use crate::model::records::{Owner, Socket, TcpState};
use crate::model::reuse::Reuse;
use crate::model::{FastMap, percent};
use crate::ports::{PortRange, PortSet};

/// A destination bucket: connect() can hand out each usable port once per bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BucketKey {
    pub local_ip: IpAddr,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
}

impl BucketKey {
    /// The bucket of a socket; IPv4-mapped IPv6 addresses count as IPv4.
    pub(crate) fn of(socket: &Socket) -> BucketKey {
        BucketKey {
            local_ip: socket.local.ip().to_canonical(),
            remote_ip: socket.remote.ip().to_canonical(),
            remote_port: socket.remote.port(),
        }
    }
}

impl Bucket {
    /// Its key, from the addresses it reports.
    pub(crate) fn key(&self) -> Option<BucketKey> {
        let remote: SocketAddr = self.remote.parse().ok()?;
        Some(BucketKey {
            local_ip: self.local_ip.parse::<IpAddr>().ok()?.to_canonical(),
            remote_ip: remote.ip().to_canonical(),
            remote_port: remote.port(),
        })
    }
}

/// What the read counted of one bucket.
#[derive(Clone, Debug, Default)]
pub(crate) struct BucketCount {
    /// Numbers the buckets in the order they were met, to tie inodes and cookies to them.
    pub id: u32,
    pub sockets: u32,
    pub time_wait: u32,
    /// Its TIME_WAIT sockets by age (those whose timer the source gives).
    pub ages: Ages,
    /// TIME_WAIT sockets connect() may take over now.
    pub reusable: u32,
    /// A live connection of the bucket carries no timestamps: the peer does not send them, so none
    /// of its TIME_WAIT can be taken over.
    pub peer_without_timestamps: bool,
    /// Recording: the local ports of its sockets.
    pub ports: Option<SeenPorts>,
    /// The local port of its first socket, and whether every socket has it (a stopped server's
    /// connection to one peer port, when that port is a server's).
    pub first_port: u16,
    pub one_port: bool,
    /// Comparing: sockets whose connection the previous read did not have, and TIME_WAIT sockets
    /// younger than the time since then.
    pub new: u32,
    pub recent_time_wait: u32,
    /// Over a window of reads: how long the connections it closed lived.
    pub lifetimes: Option<Lifetimes>,
}

impl BucketCount {
    /// Counts one socket of the bucket.
    pub(crate) fn add(&mut self, socket: &Socket, reuse: &Reuse) {
        self.sockets = self.sockets.saturating_add(1);
        self.one_port &= socket.local.port() == self.first_port;
        if let Some(ports) = &mut self.ports {
            ports.insert(socket.local.port());
        }
        if socket.state == TcpState::TimeWait {
            self.time_wait = self.time_wait.saturating_add(1);
            if let Some(expires_ms) = socket.expires_ms {
                self.ages.add(expires_ms);
            }
            if reuse.can_take_over(socket) {
                self.reusable = self.reusable.saturating_add(1);
            }
        }
        if socket.timestamps == Some(false) {
            self.peer_without_timestamps = true;
        }
    }
}

/// How many destination buckets each local address has.
pub(crate) fn destinations(buckets: &FastMap<BucketKey, BucketCount>) -> FastMap<IpAddr, u32> {
    let mut destinations: FastMap<IpAddr, u32> = FastMap::default();
    buckets.keys().for_each(|key| *destinations.entry(key.local_ip).or_default() += 1);
    destinations
}

/// The ephemeral-port budget of the namespace, before clients that bind first are known: the
/// range less reserved ports, listeners' ports and the ports of servers that stopped listening
/// while their connections last (`stopped`).
pub(crate) fn ephemeral_ports(
    range: PortRange,
    reserved: &PortSet,
    listening_ports: &[u16],
    stopped: &PortSet,
) -> EphemeralPorts {
    let listeners_in_range: Vec<u16> =
        listening_ports.iter().copied().filter(|p| range.contains(*p) && !reserved.contains(*p)).collect();
    let stopped_listeners_in_range: Vec<u16> = stopped.iter().collect();
    let reserved_in_range = reserved.count_in(range);
    EphemeralPorts {
        range: range.to_string(),
        size: range.size(),
        reserved_in_range,
        usable_ports: range.size()
            - reserved_in_range
            - listeners_in_range.len() as u32
            - stopped_listeners_in_range.len() as u32,
        listeners_in_range,
        stopped_listeners_in_range,
        bound_ports: 0,
    }
}

/// What every bucket's budget is judged by.
pub(crate) struct Budget<'a> {
    pub usable_ports: u32,
    /// Ports held by clients that bind first: connect() skips them for every destination.
    pub bound_ports: u32,
    /// The local addresses whose clients bind first.
    pub binding: &'a [IpAddr],
    pub reuse: Reuse,
    /// Whether the read was compared with a previous one (buckets then say how many are new).
    pub comparing: bool,
}

impl Budget<'_> {
    fn binds_first(&self, key: &BucketKey) -> bool {
        self.binding.contains(&key.local_ip)
    }

    /// What a destination cannot get: the ports bind() users hold, and its own held ports where
    /// connect() chose them (a binding address's ports are among the bound ones already).
    fn unavailable(&self, key: &BucketKey, count: &BucketCount) -> u32 {
        let own = if self.binds_first(key) { 0 } else { count.sockets - count.reusable };
        (self.bound_ports + own).min(self.usable_ports)
    }

    /// The buckets ranked by what they cannot get, most first, and the `top` of them made into
    /// [`Bucket`]s.
    pub(crate) fn rank(&self, counted: Vec<(BucketKey, BucketCount)>, top: usize) -> Vec<Bucket> {
        let mut ranked: Vec<(BucketKey, BucketCount)> = counted
            .into_iter()
            .map(|(key, mut count)| {
                // A plain connect() skips a bound port altogether, and a peer without timestamps
                // leaves nothing to take over: no reuse there.
                if self.binds_first(&key) || count.peer_without_timestamps {
                    count.reusable = 0;
                }
                (key, count)
            })
            .collect();
        ranked.sort_by(|(ka, a), (kb, b)| {
            self.unavailable(kb, b).cmp(&self.unavailable(ka, a)).then(b.sockets.cmp(&a.sockets)).then(ka.cmp(kb))
        });
        ranked.into_iter().take(top).map(|(key, count)| self.bucket(key, count)).collect()
    }

    fn bucket(&self, key: BucketKey, count: BucketCount) -> Bucket {
        let unavailable = self.unavailable(&key, &count);
        let bound_first = self.binds_first(&key);
        Bucket {
            local_ip: key.local_ip.to_string(),
            remote: SocketAddr::new(key.remote_ip, key.remote_port).to_string(),
            count: count.sockets,
            time_wait: count.time_wait,
            ages: count.ages,
            reusable: count.reusable,
            held: count.sockets - count.reusable,
            usable_ports: self.usable_ports,
            available: self.usable_ports - unavailable,
            usage_pct: percent(unavailable, self.usable_ports),
            reuse_applies: !bound_first
                && !count.peer_without_timestamps
                && self.reuse.applies(key.local_ip, key.remote_ip, 0),
            bound_first,
            growth_per_sec: None,
            seconds_to_exhaustion: None,
            forecast: None,
            owners: None,
            churn: None,
            lifetimes: count.lifetimes,
            closes: None,
            id: count.id,
            new: self.comparing.then_some(count.new),
            recent_time_wait: count.recent_time_wait,
        }
    }
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
    /// Ports inside the range of servers that stopped listening, held by their connections (one
    /// peer's many ports on each): connect() skips them until those end.
    pub stopped_listeners_in_range: Vec<u16>,
    /// Ports connect() can hand out per bucket: size − reserved − listeners and stopped listeners
    /// in range.
    pub usable_ports: u32,
    /// Of those, ports that clients binding before they connect hold (inferred, see
    /// [`crate::model::bind`]): connect() skips them for every destination.
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
    /// Those TIME_WAIT sockets by age.
    #[serde(skip)]
    pub ages: Ages,
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
    /// Whether the clients of its local address bind before they connect.
    #[serde(skip)]
    pub bound_first: bool,
    /// With `--sample`: the change of `held` per second over the interval.
    pub growth_per_sec: Option<f64>,
    /// With `--sample`: seconds until `available` reaches 0 (see [`crate::model::forecast`]);
    /// `null` when it levels off below its ports, or not sampled.
    pub seconds_to_exhaustion: Option<f64>,
    /// With `--sample`: what the forecast was made from, and where the bucket levels off.
    pub forecast: Option<Forecast>,
    /// The processes holding its live sockets, most first (TIME_WAIT sockets have no owner);
    /// `null` when they could not be looked up (`owners_unavailable` says why).
    pub owners: Option<Vec<Owner>>,
    /// With `--sample`: how fast connections come and go.
    pub churn: Option<Churn>,
    /// With `--sample`: how long the connections this host closed lived, traced (see `closes`) or
    /// else from the reads of the window (`null` when it closed none there, or the source gives no
    /// cookies); `method` says which.
    pub lifetimes: Option<Lifetimes>,
    /// With `--sample` and tracing: the connections to it that this namespace's processes opened
    /// and that ended in the window, by lifetime and who closed first (`null`: none, or not traced).
    pub closes: Option<crate::model::histogram::BucketCloses>,
    #[serde(skip)]
    pub id: u32,
    /// Compared with a previous read: sockets whose connection the previous read did not have.
    #[serde(skip)]
    pub new: Option<u32>,
    /// Compared with a previous read: TIME_WAIT sockets that entered TIME_WAIT since.
    #[serde(skip)]
    pub recent_time_wait: u32,
}
