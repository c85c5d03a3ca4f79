//! The bind() budget, per local address (docs/port-model.md, "The bind() budget, per local
//! address"): bind(addr, 0), and so a client that binds before it connects, needs a port of the
//! range that no socket on that address, and no wildcard listener of its family, holds, whatever
//! the destination. And which addresses' clients bind first ("Which clients bind first"), which
//! the socket table does not say and the ports in use tell. Pure.

use std::net::IpAddr;

use serde::Serialize;

use crate::model::records::{Socket, TcpState};
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
    /// Records the local port of a socket whose port is in the range: any socket, in any state,
    /// keeps bind(addr, 0) off its port.
    pub(crate) fn add(&mut self, socket: &Socket) {
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
            if binds_first(range, ports, connectable, destinations.get(ip).copied().unwrap_or(0)) {
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
