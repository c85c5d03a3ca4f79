//! The bind() budget, per local address (docs/port-model.md, "The bind() budget, per local
//! address"): bind(addr, 0), and so a client that binds before it connects, needs a port of the
//! range that no socket on that address, and no wildcard listener of its family, holds, whatever
//! the destination. And which addresses' clients bind first ("Which clients bind first"), which
//! the socket table does not say and the ports in use tell. Pure.

use std::net::IpAddr;

use serde::Serialize;

use crate::model::records::{Socket, TIME_WAIT_MS, TcpState};
use crate::model::{FastMap, percent};
use crate::ports::{PortRange, PortSet};

/// Local addresses whose bind() budget is tracked (8 KiB each); a captured table with more is
/// untrusted input, and the rest are left out with a warning.
pub(crate) const MAX_LOCAL_ADDRESSES: usize = 1024;

/// The local ports one address uses.
#[derive(Clone, Debug, Default)]
struct AddressPorts {
    /// Ports any socket on the address holds.
    in_use: PortSet,
    /// Ports two or more of its connections share (which only connect() does).
    shared: PortSet,
    /// Its sockets in the range that are neither TIME_WAIT nor listening.
    live: u32,
    /// The ages (ms) of its youngest and oldest TIME_WAIT, on ports of [connect()'s, bind()'s]
    /// parity.
    time_wait_ages: [Option<(u32, u32)>; 2],
}

/// The ports of the range each local address uses, counted as the table streams.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    ports: FastMap<IpAddr, AddressPorts>,
    /// Ports of wildcard listeners (0.0.0.0, ::), which every address of the family shares.
    wildcard_v4: PortSet,
    wildcard_v6: PortSet,
    /// Sockets on local addresses left out once [`MAX_LOCAL_ADDRESSES`] were tracked.
    pub untracked: u64,
}

impl Addresses {
    /// Records the local port of a socket whose port is in `range`: any socket, in any state,
    /// keeps bind(addr, 0) off its port.
    pub(crate) fn add(&mut self, range: PortRange, socket: &Socket) {
        let port = socket.local.port();
        let ip = socket.local.ip().to_canonical();
        if ip.is_unspecified() {
            match ip {
                IpAddr::V4(_) => self.wildcard_v4.insert(port),
                IpAddr::V6(_) => self.wildcard_v6.insert(port),
            }
            return;
        }
        if !self.ports.contains_key(&ip) && self.ports.len() >= MAX_LOCAL_ADDRESSES {
            self.untracked += 1;
            return;
        }
        let ports = self.ports.entry(ip).or_default();
        if socket.state != TcpState::Listen && ports.in_use.contains(port) {
            ports.shared.insert(port);
        }
        ports.in_use.insert(port);
        match (socket.state, socket.expires_ms) {
            (TcpState::TimeWait, Some(left)) => {
                let age = TIME_WAIT_MS.saturating_sub(left);
                let slot = &mut ports.time_wait_ages[usize::from((port - range.low) % 2 == 1)];
                *slot = Some(slot.map_or((age, age), |(young, old)| (young.min(age), old.max(age))));
            }
            (TcpState::TimeWait | TcpState::Listen, _) => {}
            _ => ports.live += 1,
        }
    }

    /// The addresses whose clients bind first, and the ports they hold (of those `connectable`,
    /// not reserved and not listening): connect() skips these for every destination, since the
    /// kernel gives a port chosen by bind() to no one else.
    pub(crate) fn binding(
        &self,
        range: PortRange,
        connectable: &impl Fn(u16) -> bool,
        destinations: &FastMap<IpAddr, u32>,
    ) -> (Vec<IpAddr>, PortSet) {
        let mut bound = PortSet::default();
        let mut binding = Vec::new();
        for (ip, ports) in &self.ports {
            let destinations = destinations.get(ip).copied().unwrap_or(0);
            if binds_first(range, ports, connectable, destinations) && !drains(ports) {
                binding.push(*ip);
                (range.low..=range.high)
                    .filter(|p| connectable(*p) && ports.in_use.contains(*p))
                    .for_each(|p| bound.insert(p));
            }
        }
        (binding, bound)
    }

    /// The bind() budget of each address, most used first, the `top` of them.
    pub(crate) fn budgets(
        &self,
        range: PortRange,
        reserved: &PortSet,
        binding: &[IpAddr],
        destinations: &FastMap<IpAddr, u32>,
        top: usize,
    ) -> Vec<LocalPorts> {
        let usable = range.size() - reserved.count_in(range);
        let mut local_ports: Vec<LocalPorts> = self
            .ports
            .iter()
            .map(|(ip, ports)| {
                let wildcard = if ip.is_ipv4() { &self.wildcard_v4 } else { &self.wildcard_v6 };
                let in_use = (range.low..=range.high)
                    .filter(|p| !reserved.contains(*p) && (ports.in_use.contains(*p) || wildcard.contains(*p)))
                    .count() as u32;
                LocalPorts {
                    local_ip: ip.to_string(),
                    ports_in_use: in_use,
                    usable_ports: usable,
                    available: usable.saturating_sub(in_use),
                    usage_pct: percent(in_use, usable),
                    binds_first: binding.contains(ip),
                    destinations: destinations.get(ip).copied().unwrap_or(0),
                }
            })
            .collect();
        local_ports.sort_by(|a, b| b.ports_in_use.cmp(&a.ports_in_use).then_with(|| a.local_ip.cmp(&b.local_ip)));
        local_ports.truncate(top);
        local_ports
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

/// A client whose connect() chose its ports and that stopped more than this long ago, in ms: its
/// TIME_WAIT of bind()'s parity, the last it took, is at least this old once the rest has ended
/// (see [`drains`]).
const DRAINED_MS: u32 = 30_000;

/// Whether an address whose ports are mostly of bind()'s parity is in fact a connect() client
/// whose TIME_WAIT drains. connect() takes the ports of its own parity first and the other parity
/// only once its own is exhausted toward a destination (`__inet_hash_connect`), so a client that
/// used up its range and stopped ends the TIME_WAIT of its own parity first and, for up to a
/// minute, holds mostly ports of the other. Told apart from a client that binds first (bind(0)
/// takes bind()'s parity first, and the other only once that is exhausted):
/// - while both parities are there, connect()'s is all older than bind()'s;
/// - once connect()'s has ended, nothing on the address is live and its youngest TIME_WAIT is over
///   30 s old: the client filled its range within the 60 s of TIME_WAIT (else it would not have
///   needed the other parity), the other parity in the second half. A client that binds first
///   and stopped as long ago looks the same; its ports then end within 30 s, and nothing of it
///   spends ports meanwhile, so twtune counts them as connect()'s.
fn drains(ports: &AddressPorts) -> bool {
    let [connect, bind] = ports.time_wait_ages;
    let Some((bind_youngest, bind_oldest)) = bind else { return false };
    match connect {
        // connect() took its last port of its own parity before its first of the other.
        Some((connect_youngest, _)) => connect_youngest >= bind_oldest,
        None => ports.live == 0 && bind_youngest > DRAINED_MS,
    }
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
    /// Whether the clients on this address bind before they connect.
    #[serde(skip)]
    pub binds_first: bool,
    /// Destination buckets of this address.
    #[serde(skip)]
    pub destinations: u32,
}
