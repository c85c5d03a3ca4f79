//! Benchmark helper: fills the conntrack table of its network namespace with N entries, each a
//! distinct flow over loopback:
//!
//! - N/50 TCP connections to a listener on 127.0.0.1:9000, the client closing first (conntrack
//!   TIME_WAIT, like the socket);
//! - NAT_FLOWS (default N/10) UDP flows from 127.0.2.1 to NAT_DESTINATIONS (default 10)
//!   destinations 127.0.0.3:9000, 127.0.0.3:9001, ... (50 000 ports from 9000 per address, then
//!   127.0.0.4, ...), each reached from the same NAT_FLOWS/NAT_DESTINATIONS sockets: a source-NAT
//!   rule for 127.0.2.0/24 makes NAT_DESTINATIONS buckets of that many entries each;
//! - the rest UDP flows from 127.0.1.K (one socket per 60 000 flows) to 127.0.0.1, one destination
//!   port each from 1024 up.
//!
//! A datagram to a port nobody listens on only makes the kernel answer ICMP (related, no entry).
//! Conntrack must be active in the namespace (a rule that needs it), and the UDP timeout long enough.
//! Run it only inside a private network namespace (bench/conntrack-bench does).
//! Usage: ct_fill N [NAT_FLOWS NAT_DESTINATIONS]

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::Instant;

use rustix::process::{Resource, Rlimit};

/// Flows per plain UDP socket (one destination port each).
const PER_SOCKET: usize = 60_000;
/// Destination ports per address of the source-NATed share.
const NAT_PORTS: usize = 50_000;

fn udp(source: Ipv4Addr) -> UdpSocket {
    UdpSocket::bind(SocketAddrV4::new(source, 0)).unwrap_or_else(|e| panic!("bind {source}: {e}"))
}

fn main() {
    let numbers: Vec<usize> =
        std::env::args().skip(1).map(|a| a.parse().ok()).collect::<Option<_>>().unwrap_or_default();
    let (n, nat, destinations) = match numbers[..] {
        [n] => (n, n / 10, 10),
        [n, flows, destinations] if destinations > 0 && n / 50 + flows <= n => (n, flows, destinations),
        _ => {
            eprintln!("usage: ct_fill N [NAT_FLOWS NAT_DESTINATIONS] (N/50 + NAT_FLOWS at most N)");
            std::process::exit(2)
        }
    };
    let tcp = n / 50;
    let nat_sockets = nat.div_ceil(destinations);
    let plain = n - tcp - nat;
    let want = (nat_sockets + 64) as u64;
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < want) {
        let maximum = limit.maximum.map(|m| m.max(want));
        let _ = rustix::process::setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum });
    }
    let start = Instant::now();
    let payload = [0u8; 1];

    if tcp > 0 {
        let listener = TcpListener::bind("127.0.0.1:9000").unwrap_or_else(|e| panic!("listen on 127.0.0.1:9000: {e}"));
        let target = listener.local_addr().expect("address");
        let mut buffer = [0u8; 1];
        for _ in 0..tcp {
            let client = TcpStream::connect(target).unwrap_or_else(|e| panic!("connect to {target}: {e}"));
            let (mut server, _) = listener.accept().expect("accept");
            drop(client);
            let _ = server.read(&mut buffer); // end of stream: the server closes in turn
        }
    }

    let nat_source = Ipv4Addr::new(127, 0, 2, 1);
    let sockets: Vec<UdpSocket> = (0..nat_sockets).map(|_| udp(nat_source)).collect();
    for i in 0..nat {
        let d = i % destinations;
        let address = Ipv4Addr::new(127, 0, 0, 3 + (d / NAT_PORTS) as u8);
        let destination = SocketAddrV4::new(address, 9000 + (d % NAT_PORTS) as u16);
        sockets[i / destinations]
            .send_to(&payload, destination)
            .unwrap_or_else(|e| panic!("send to {destination}: {e}"));
    }
    drop(sockets);

    for chunk in 0..plain.div_ceil(PER_SOCKET) {
        let socket = udp(Ipv4Addr::new(127, 0, 1, 1 + chunk as u8));
        let flows = PER_SOCKET.min(plain - chunk * PER_SOCKET);
        for port in 0..flows {
            let destination = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1024 + port as u16);
            socket.send_to(&payload, destination).unwrap_or_else(|e| panic!("send to {destination}: {e}"));
        }
    }
    eprintln!(
        "ct_fill: {n} flows ({tcp} TCP, {nat} UDP to {destinations} NAT destinations, {plain} plain UDP) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
