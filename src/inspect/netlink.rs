//! The TCP socket table over `NETLINK_SOCK_DIAG` (inet_diag), as `ss` reads it: one dump per
//! address family, filtered by state in the kernel, streamed through one reused buffer.
//!
//! Requests are built with netlink-packet-sock-diag. Replies are read in place from the fixed
//! `inet_diag_msg` layout instead of through the crate's deserializer, which allocates for every
//! socket: on a busy client that is hundreds of thousands of allocations per audit.
//!
//! The socket belongs to the network namespace of the thread that creates it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NetlinkAddr};

use crate::error::{Error, Result};
use crate::inspect::source::SocketSource;
use crate::model::records::{Socket as TcpSocket, TcpState};
use crate::root::Root;

const NLMSG_HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_msg`: family, state, timer, retrans, then the socket id (ports, addresses).
const INET_DIAG_MSG: usize = 72;
/// A larger buffer means fewer recv calls; the kernel fills what it can.
const RECEIVE_BUFFER: usize = 256 * 1024;

/// A sock_diag socket and its receive buffer.
pub(crate) struct NetlinkSocketSource {
    socket: Socket,
    buffer: Vec<u8>,
    /// The namespace's `/proc/net`, to tell whether it has any IPv6 socket at all.
    counts: Option<Root>,
}

fn netlink_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Netlink(format!("{what}: {e}"))
}

impl NetlinkSocketSource {
    /// Opens a sock_diag socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<NetlinkSocketSource> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| {
            Error::if_out_of_files(&e, || "opening a sock_diag socket".into())
                .unwrap_or_else(|| netlink_error("cannot open a sock_diag socket", e))
        })?;
        socket.bind_auto().map_err(|e| netlink_error("cannot bind the sock_diag socket", e))?;
        socket.connect(&NetlinkAddr::new(0, 0)).map_err(|e| netlink_error("cannot connect the sock_diag socket", e))?;
        Ok(NetlinkSocketSource { socket, buffer: vec![0; RECEIVE_BUFFER], counts: None })
    }

    /// The same source skipping the IPv6 dump when `root`'s counts show the namespace has no IPv6
    /// socket: each dump walks the whole TCP hash table, which namespaces made by `ip netns add`
    /// share with the host (`tcp_child_ehash_entries` 0), so an empty dump is not free.
    pub(crate) fn skipping_empty_ipv6(self, root: &Root) -> NetlinkSocketSource {
        NetlinkSocketSource { counts: Some(root.clone()), ..self }
    }

    /// `TCP6: inuse` (listening and connected IPv6 sockets), `TCP: inuse` and `TCP: tw` (TIME_WAIT
    /// of both families, which share one count) of the namespace.
    fn counts(&self) -> Option<(i64, i64, i64)> {
        let root = self.counts.as_ref()?;
        let read = |name: &str| root.read_proc_net(name, false).ok().flatten();
        let v4 = super::counters::parse_sockstat_tcp(&read("sockstat")?).value;
        // No sockstat6: a kernel without IPv6, so no IPv6 socket.
        let v6 = match read("sockstat6") {
            Some(text) => *super::counters::parse_sockstat6_tcp(&text).value.get("inuse")?,
            None => 0,
        };
        Some((v6, *v4.get("inuse")?, *v4.get("tw")?))
    }

    fn request(&self, family: u8) -> Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
        // Every state, so that listeners (dumped first by the kernel) and connections both come.
        let body = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            // tcp_info of live sockets: whether the connection carries timestamps, which TIME_WAIT
            // reuse needs from the peer too.
            extensions: ExtensionFlags::INFO,
            states: StateFlags::all(),
            socket_id,
        });
        let mut message = NetlinkMessage::new(header, body.into());
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(|e| netlink_error("cannot send the sock_diag request", e))?;
        Ok(())
    }

    fn dump(&mut self, family: u8, visit: &mut dyn FnMut(TcpSocket), warnings: &mut Vec<String>) -> Result<()> {
        self.request(family)?;
        loop {
            let received = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(|e| netlink_error("cannot receive the sock_diag dump", e))?;
            if received == 0 {
                return Err(Error::Netlink("the sock_diag dump ended without NLMSG_DONE".into()));
            }
            if parse_messages(&self.buffer[..received], visit, warnings)? {
                return Ok(());
            }
        }
    }
}

impl SocketSource for NetlinkSocketSource {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn scan(&mut self, visit: &mut dyn FnMut(TcpSocket), warnings: &mut Vec<String>) -> Result<()> {
        // A namespace with no TCP socket at all (an idle container's) needs no walk.
        if self.counts() == Some((0, 0, 0)) {
            return Ok(());
        }
        let mut time_wait = 0u64;
        self.dump(
            AF_INET,
            &mut |socket| {
                time_wait += u64::from(socket.state == TcpState::TimeWait);
                visit(socket)
            },
            warnings,
        )?;
        // No IPv6 socket: none in use, and every TIME_WAIT was in the IPv4 dump (read after it, so
        // that a socket made during the dump is not lost).
        if let Some((0, _, tw)) = self.counts()
            && u64::try_from(tw).ok() == Some(time_wait)
        {
            return Ok(());
        }
        self.dump(AF_INET6, visit, warnings)
    }
}

/// Walks the netlink messages of one receive. `Ok(true)` once the dump is done.
pub(crate) fn parse_messages(
    bytes: &[u8],
    visit: &mut dyn FnMut(TcpSocket),
    warnings: &mut Vec<String>,
) -> Result<bool> {
    let mut offset = 0;
    while offset + NLMSG_HEADER <= bytes.len() {
        let length = u32::from_ne_bytes(word(bytes, offset)) as usize;
        let kind = u16::from_ne_bytes([bytes[offset + 4], bytes[offset + 5]]);
        if length < NLMSG_HEADER || offset + length > bytes.len() {
            return Err(Error::Netlink(format!("a malformed sock_diag message (length {length})")));
        }
        let payload = &bytes[offset + NLMSG_HEADER..offset + length];
        match kind {
            // A dump that failed part-way ends with the (negative) errno in NLMSG_DONE.
            NLMSG_DONE => {
                let code = if payload.len() >= 4 { i32::from_ne_bytes(word(payload, 0)) } else { 0 };
                if code < 0 {
                    return Err(Error::Netlink(format!(
                        "the dump stopped early: {}",
                        std::io::Error::from_raw_os_error(code.saturating_neg())
                    )));
                }
                return Ok(true);
            }
            NLMSG_ERROR => {
                let code = if payload.len() >= 4 { i32::from_ne_bytes(word(payload, 0)) } else { -1 };
                if code != 0 {
                    return Err(Error::Netlink(format!(
                        "the kernel refused the dump: {}",
                        std::io::Error::from_raw_os_error(code.saturating_neg())
                    )));
                }
            }
            SOCK_DIAG_BY_FAMILY => match parse_inet_diag_msg(payload) {
                Some(socket) => visit(socket),
                None => {
                    warnings.push(format!("a sock_diag record of {} bytes could not be read; skipped", payload.len()))
                }
            },
            _ => {}
        }
        offset += (length + 3) & !3;
    }
    Ok(false)
}

fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
}

/// One `inet_diag_msg`: family, state, timer, retransmits, then the socket id (ports big-endian,
/// addresses in network order, the bound interface, a cookie), then `idiag_expires` (ms left on the
/// timer; for TIME_WAIT, timer 3, the time until it ends), the queues, the uid and the inode.
pub(crate) fn parse_inet_diag_msg(p: &[u8]) -> Option<TcpSocket> {
    if p.len() < INET_DIAG_MSG {
        return None;
    }
    let state = TcpState::from_code(p[1])?;
    let port = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    let address = |at: usize| -> Option<IpAddr> {
        match u16::from(p[0]) {
            f if f == u16::from(AF_INET) => Some(IpAddr::V4(Ipv4Addr::from(word(p, at)))),
            f if f == u16::from(AF_INET6) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&p[at..at + 16]);
                Some(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            _ => None,
        }
    };
    let socket = TcpSocket {
        interface: u32::from_ne_bytes(word(p, 40)),
        timestamps: tcp_info_timestamps(&p[INET_DIAG_MSG..]),
        inode: u32::from_ne_bytes(word(p, 68)),
        // `idiag_cookie`: two native words, low first.
        cookie: u64::from(u32::from_ne_bytes(word(p, 44))) | (u64::from(u32::from_ne_bytes(word(p, 48))) << 32),
        ..TcpSocket::new(state, SocketAddr::new(address(8)?, port(4)), SocketAddr::new(address(24)?, port(6)))
    };
    const TIME_WAIT_TIMER: u8 = 3;
    Some(if state == TcpState::TimeWait && p[2] == TIME_WAIT_TIMER {
        socket.expiring_in(u32::from_ne_bytes(word(p, 52)))
    } else {
        socket
    })
}

/// `INET_DIAG_INFO`: the attribute holding `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// `tcpi_options` is the sixth byte of `struct tcp_info`; `TCPI_OPT_TIMESTAMPS` its first bit.
const TCPI_OPTIONS: usize = 5;
const TCPI_OPT_TIMESTAMPS: u8 = 1;

/// Whether the connection negotiated timestamps, from the `INET_DIAG_INFO` attribute among the
/// attributes that follow an `inet_diag_msg`; `None` without it (TIME_WAIT and listening sockets
/// have none).
fn tcp_info_timestamps(mut attributes: &[u8]) -> Option<bool> {
    while attributes.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([attributes[0], attributes[1]]));
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if length < 4 || length > attributes.len() {
            return None;
        }
        if kind == INET_DIAG_INFO {
            return attributes.get(4 + TCPI_OPTIONS).map(|options| options & TCPI_OPT_TIMESTAMPS != 0);
        }
        attributes = &attributes[((length + 3) & !3).min(attributes.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `inet_diag_msg` as the kernel lays it out.
    fn record(family: u8, state: u8, sport: u16, dport: u16, src: &[u8], dst: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; INET_DIAG_MSG];
        p[0] = family;
        p[1] = state;
        p[4..6].copy_from_slice(&sport.to_be_bytes());
        p[6..8].copy_from_slice(&dport.to_be_bytes());
        p[8..8 + src.len()].copy_from_slice(src);
        p[24..24 + dst.len()].copy_from_slice(dst);
        p
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
    fn records_decode_to_sockets() {
        let v4 = parse_inet_diag_msg(&record(AF_INET, 6, 40000, 8080, &[127, 0, 0, 1], &[127, 0, 0, 2])).expect("v4");
        assert_eq!(v4.state, TcpState::TimeWait);
        assert_eq!(v4.local, "127.0.0.1:40000".parse().expect("addr"));
        assert_eq!(v4.remote, "127.0.0.2:8080".parse().expect("addr"));
        assert_eq!((v4.expires_ms, v4.interface), (None, 0), "no TIME_WAIT timer in this record");
        let mut timed = record(AF_INET, 6, 40000, 8080, &[127, 0, 0, 1], &[127, 0, 0, 2]);
        timed[2] = 3;
        timed[40..44].copy_from_slice(&1u32.to_ne_bytes());
        timed[52..56].copy_from_slice(&58_972u32.to_ne_bytes());
        timed[68..72].copy_from_slice(&4_026_531_999u32.to_ne_bytes());
        timed[44..48].copy_from_slice(&7u32.to_ne_bytes());
        timed[48..52].copy_from_slice(&1u32.to_ne_bytes());
        let timed = parse_inet_diag_msg(&timed).expect("v4 with a timer");
        assert_eq!((timed.inode, timed.cookie), (4_026_531_999, (1 << 32) | 7));
        assert_eq!((timed.expires_ms, timed.interface, timed.timestamps), (Some(58_972), 1, None));
        // An established socket with tcp_info: a padding attribute, then INET_DIAG_INFO.
        let mut live = record(AF_INET, 1, 40001, 8080, &[127, 0, 0, 1], &[127, 0, 0, 2]);
        live.extend_from_slice(&[5, 0, 9, 0, 0xff, 0, 0, 0]);
        for options in [1u8, 0] {
            let mut with_info = live.clone();
            with_info.extend_from_slice(&[12, 0, 2, 0, 1, 0, 0, 0, 0, options, 0, 0]);
            assert_eq!(parse_inet_diag_msg(&with_info).expect("live").timestamps, Some(options == 1));
        }
        assert_eq!(parse_inet_diag_msg(&live).expect("live").timestamps, None, "no INET_DIAG_INFO");
        let one = Ipv6Addr::LOCALHOST.octets();
        let v6 = parse_inet_diag_msg(&record(AF_INET6, 10, 443, 0, &one, &[0; 16])).expect("v6");
        assert_eq!((v6.state, v6.local), (TcpState::Listen, "[::1]:443".parse().expect("addr")));
        assert!(
            parse_inet_diag_msg(&record(AF_INET, 99, 1, 2, &[1, 2, 3, 4], &[1, 2, 3, 4])).is_none(),
            "unknown state"
        );
        assert!(parse_inet_diag_msg(&[0; 10]).is_none(), "short");
    }

    #[test]
    fn a_receive_holds_several_messages_then_done() {
        let mut bytes = message(SOCK_DIAG_BY_FAMILY, &record(AF_INET, 1, 1000, 80, &[10, 0, 0, 1], &[10, 0, 0, 2]));
        bytes.extend(message(SOCK_DIAG_BY_FAMILY, &[0; 8]));
        bytes.extend(message(NLMSG_DONE, &[0; 4]));
        let mut seen = Vec::new();
        let mut warnings = Vec::new();
        assert!(parse_messages(&bytes, &mut |s| seen.push(s), &mut warnings).expect("parses"));
        assert_eq!(seen.len(), 1);
        assert_eq!(warnings.len(), 1, "the short record is reported, not fatal");
    }

    #[test]
    fn errors_and_truncation_are_reported() {
        let refused = message(NLMSG_ERROR, &(-1i32).to_ne_bytes());
        let err = parse_messages(&refused, &mut |_| {}, &mut Vec::new()).expect_err("EPERM");
        assert!(err.to_string().contains("refused the dump"), "{err}");
        let stopped = message(NLMSG_DONE, &(-4i32).to_ne_bytes());
        let err = parse_messages(&stopped, &mut |_| {}, &mut Vec::new()).expect_err("EINTR in DONE");
        assert!(err.to_string().contains("stopped early"), "{err}");
        let mut cut = message(SOCK_DIAG_BY_FAMILY, &record(AF_INET, 1, 1, 2, &[1, 1, 1, 1], &[2, 2, 2, 2]));
        cut.truncate(40);
        assert!(parse_messages(&cut, &mut |_| {}, &mut Vec::new()).is_err());
        assert!(!parse_messages(&[], &mut |_| {}, &mut Vec::new()).expect("empty"), "not done yet");
    }
}
