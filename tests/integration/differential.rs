//! Differential tests: twtune's prediction of how many more connect() (or bind()) calls succeed,
//! against the kernel asked until the first failure.
//!
//! Each test builds one situation in its own network namespace (and, where it needs a remote host,
//! a second namespace joined by a veth pair), reads twtune's `available` for it, then connects (or
//! binds) until the kernel refuses, holding every success open so that it neither frees a port nor
//! leaves a TIME_WAIT, and compares the two numbers. Nothing expires while counting (TIME_WAIT lasts
//! 60 s, every test takes a few), so the counts must agree exactly.

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket, sockopt};

use crate::netns::{enter, run, set_sysctl};
use crate::util::{Bucket, Closing, Finding, LocalPorts, Report, audit_json};

const EADDRINUSE: i32 = 98;
const EADDRNOTAVAIL: i32 = 99;
/// More attempts than any range here has ports: a run that gets this far is a failure.
const LIMIT: usize = 1010;
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

// --- the situation -------------------------------------------------------------------------------

/// Raises the open-file limit of this (re-executed, per-test) process to its hard limit: a test holds
/// two descriptors per port of its range.
fn enough_descriptors() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the soft open-file limit");
}

/// The port range and tcp_tw_reuse of this namespace.
fn prepare(range: &str, tw_reuse: &str) {
    enough_descriptors();
    set_sysctl("net.ipv4.ip_local_port_range", range);
    set_sysctl("net.ipv4.tcp_tw_reuse", tw_reuse);
}

fn listen(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
}

/// Lets the resets of connections closed with SO_LINGER 0 reach their peers.
fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

/// Longer than a tcp_tw_reuse_delay of 200 ms, with room to spare.
fn age_past_reuse_delay() {
    std::thread::sleep(Duration::from_millis(800));
}

const PEER: &str = "twtune-peer";

/// A second network namespace, joined to ours by a veth pair: 10.203.0.1/24 here (`tw0`),
/// 10.203.0.2/24 there (`tw1`). Dropping it deletes the namespace, and its end of the pair with it.
struct Peer;

impl Peer {
    fn new() -> Self {
        // `ip netns add` keeps its file under /run: give this mount namespace its own /run first.
        run("mount", &["-t", "tmpfs", "-o", "size=1m", "twtune-test", "/run"]);
        run("ip", &["netns", "add", PEER]);
        let peer = Self;
        run("ip", &["link", "add", "name", "tw0", "type", "veth", "peer", "name", "tw1"]);
        run("ip", &["link", "set", "tw1", "netns", PEER]);
        run("ip", &["addr", "add", "10.203.0.1/24", "dev", "tw0"]);
        run("ip", &["link", "set", "tw0", "up"]);
        run("ip", &["-n", PEER, "link", "set", "lo", "up"]);
        run("ip", &["-n", PEER, "addr", "add", "10.203.0.2/24", "dev", "tw1"]);
        run("ip", &["-n", PEER, "link", "set", "tw1", "up"]);
        peer
    }

    /// A listener on 10.203.0.2:`port` in the peer namespace, made by a thread that joins it (the
    /// socket stays in the namespace it was made in; this process stays in its own).
    fn listen(&self, port: u16) -> TcpListener {
        std::thread::spawn(move || {
            let ns = File::open(format!("/run/netns/{PEER}")).expect("open the peer namespace");
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("join the peer namespace");
            TcpListener::bind(("10.203.0.2", port)).expect("listen in the peer namespace")
        })
        .join()
        .expect("listener thread")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", PEER]).status();
    }
}

// --- connecting and binding ----------------------------------------------------------------------

/// How a client socket is made before it connects.
#[derive(Clone, Copy)]
enum Client {
    /// connect() alone: the kernel picks the port for the destination.
    Plain,
    /// bind(addr, 0) first: the port is taken at bind(), whatever the destination.
    BindFirst(Ipv4Addr),
    /// bind(addr, 0) with IP_BIND_ADDRESS_NO_PORT: the port is picked at connect(), as with `Plain`.
    BindNoPort(Ipv4Addr),
}

impl Client {
    fn connect(self, to: SocketAddr) -> io::Result<TcpStream> {
        let (local, no_port) = match self {
            Self::Plain => return TcpStream::connect_timeout(&to, Duration::from_secs(5)),
            Self::BindFirst(local) => (local, false),
            Self::BindNoPort(local) => (local, true),
        };
        let SocketAddr::V4(to) = to else { panic!("IPv4 only: {to}") };
        let fd = bound_socket(local, no_port)?;
        connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
        Ok(TcpStream::from(fd))
    }
}

/// A TCP socket bound to `local`:0, with IP_BIND_ADDRESS_NO_PORT when `no_port`.
fn bound_socket(local: Ipv4Addr, no_port: bool) -> io::Result<OwnedFd> {
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    if no_port {
        setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(local, 0)))?;
    Ok(fd)
}

fn address(server: &TcpListener) -> SocketAddr {
    server.local_addr().expect("listener address")
}

/// `n` connections to `server`, the client closing first: `n` TIME_WAIT on the client side.
fn time_waits(server: &TcpListener, n: usize, client: Client) {
    let to = address(server);
    let mut closing = Closing::default();
    for _ in 0..n {
        let stream = client.connect(to).unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        let (mut accepted, _) = server.accept().expect("accept");
        closing.add(&stream);
        drop(stream);
        assert_eq!(accepted.read(&mut [0u8; 1]).expect("read EOF"), 0, "the client closed first");
    }
    // Every closed client in TIME_WAIT, not still FIN_WAIT2 (which connect() never takes over).
    closing.settle();
}

/// `n` connections to `server`, the server closing first: `n` TIME_WAIT on the server's port. The
/// clients stay open until the server has closed all `n`, so that no client port comes round again
/// while its old tuple is in TIME_WAIT (a SYN on that tuple would end the TIME_WAIT early).
fn server_time_waits(server: &TcpListener, n: usize) {
    let to = address(server);
    let (mut clients, mut closing) = (Vec::new(), Closing::default());
    for _ in 0..n {
        let mut stream = TcpStream::connect(to).unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        let (accepted, _) = server.accept().expect("accept");
        closing.add(&accepted);
        drop(accepted);
        assert_eq!(stream.read(&mut [0u8; 1]).expect("read EOF"), 0, "the server closed first");
        clients.push(stream);
    }
    drop(clients);
    closing.settle();
}

/// Open connections: (client, accepted) pairs.
type Held = Vec<(TcpStream, TcpStream)>;

/// Connections to `server` made as `client` says, until the first failure (at most `limit`). Each
/// is accepted at once (a full accept queue would stall connect() instead of failing it) and held
/// open. Returns them and the error that ended the run.
fn connect_until_failure(server: &TcpListener, limit: usize, client: Client) -> (Held, io::Error) {
    let to = address(server);
    let mut held = Vec::new();
    while held.len() < limit {
        match client.connect(to) {
            Ok(stream) => held.push((stream, server.accept().expect("accept").0)),
            Err(e) => return (held, e),
        }
    }
    panic!("{limit} connections to {to} succeeded: more than the range has ports");
}

/// bind(`local`, 0) without SO_REUSEADDR until the first failure (at most `limit`), holding every
/// bound socket.
fn bind_until_failure(local: Ipv4Addr, limit: usize) -> (Vec<OwnedFd>, io::Error) {
    let mut bound = Vec::new();
    while bound.len() < limit {
        match bound_socket(local, false) {
            Ok(fd) => bound.push(fd),
            Err(e) => return (bound, e),
        }
    }
    panic!("{limit} binds to {local}:0 succeeded: more than the range has ports");
}

/// The differential assertion: the kernel gave exactly `predicted` successes, then refused with `errno`.
#[track_caller]
fn kernel_agrees(what: &str, predicted: i64, successes: usize, err: &io::Error, errno: i32) {
    let mut differences = Differences::default();
    differences.check(what, predicted, successes, err, errno);
    differences.assert_none();
}

/// Disagreements between twtune and the kernel, gathered so that a test with several counts reports
/// all of them.
#[derive(Default)]
struct Differences(Vec<String>);

impl Differences {
    fn check(&mut self, what: &str, predicted: i64, successes: usize, err: &io::Error, errno: i32) {
        if err.raw_os_error() != Some(errno) || i64::try_from(successes).ok() != Some(predicted) {
            self.0.push(format!(
                "{what}: twtune predicted {predicted} more; the kernel gave {successes}, then failed with {err} \
                 (expected errno {errno})"
            ));
        }
    }

    #[track_caller]
    fn assert_none(self) {
        assert!(self.0.is_empty(), "twtune and the kernel disagree:\n  {}", self.0.join("\n  "));
    }
}

// --- reading the report --------------------------------------------------------------------------

/// The audit through netlink, checked against the same audit through /proc/net/tcp{,6}: both
/// sources must predict the same (the TIME_WAIT ages come from the timers each source reports).
fn audit() -> Report {
    let args = ["--fail-on", "never", "--top", "1000"];
    let (_, netlink) = audit_json(&[&args[..], &["--socket-source", "netlink"]].concat());
    let (_, proc) = audit_json(&[&args[..], &["--socket-source", "proc"]].concat());
    assert_eq!(prediction(&netlink), prediction(&proc), "netlink (left) and proc (right) predict differently");
    netlink
}

/// Everything of a report that predicts what connect() and bind() can still get.
fn prediction(report: &Report) -> String {
    let s = &report.sockets;
    let buckets: Vec<String> =
        s.buckets.iter().map(|b| format!("{} {} {:?}", b.local_ip, b.remote, numbers(b))).collect();
    let local: Vec<String> = s
        .local_ports
        .iter()
        .map(|l| format!("{} {} {} {}", l.local_ip, l.ports_in_use, l.usable_ports, l.available))
        .collect();
    format!("tw={:?} usable={} buckets={buckets:#?} local={local:#?}", s.time_wait, s.ephemeral.usable_ports)
}

#[track_caller]
fn bucket<'a>(report: &'a Report, remote: &str) -> &'a Bucket {
    let found = report.sockets.buckets.iter().find(|b| b.remote == remote);
    found.unwrap_or_else(|| panic!("no bucket toward {remote}: {:#?}", report.sockets.buckets))
}

#[track_caller]
fn local_ports<'a>(report: &'a Report, ip: &str) -> &'a LocalPorts {
    let found = report.sockets.local_ports.iter().find(|l| l.local_ip == ip);
    found.unwrap_or_else(|| panic!("no local_ports entry for {ip}: {:#?}", report.sockets.local_ports))
}

/// The one finding with this id whose evidence names `field` = `value`.
#[track_caller]
fn finding_with<'a>(report: &'a Report, id: &str, field: &str, value: &str) -> &'a Finding {
    let found: Vec<&Finding> = report
        .with_id(id)
        .into_iter()
        .filter(|f| f.evidence.get(field).and_then(|v| v.as_str()) == Some(value))
        .collect();
    assert_eq!(found.len(), 1, "one {id} with {field} {value}: {:#?}", report.findings);
    found[0]
}

/// (count, time_wait, reusable, held, usable_ports, available) of a bucket, to compare in one go.
fn numbers(b: &Bucket) -> (u32, u32, u32, u32, u32, i64) {
    (b.count, b.time_wait, b.reusable, b.held, b.usable_ports, b.available)
}

fn tw_recycled(report: &Report) -> i64 {
    *report.counters.get("TWRecycled").expect("TWRecycled counter in the report")
}

/// Ports of a `ip_local_reserved_ports`-style list ("8080,30000-32767").
fn port_list(list: &str) -> Vec<u32> {
    let mut ports = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let (lo, hi): (u32, u32) = (lo.trim().parse().expect("port"), hi.trim().parse().expect("port"));
        ports.extend(lo..=hi);
    }
    ports
}

// --- scenarios -----------------------------------------------------------------------------------

/// Scenario 1: tcp_tw_reuse=0 toward a real (veth) peer: every TIME_WAIT holds its port for that
/// destination.
#[test]
fn no_reuse_over_a_veth_each_time_wait_holds_its_port() {
    if !enter("differential::no_reuse_over_a_veth_each_time_wait_holds_its_port") {
        return;
    }
    prepare("40000 40499", "0");
    let peer = Peer::new();
    let server = peer.listen(9000);
    let other = peer.listen(9001);
    time_waits(&server, 300, Client::Plain);

    let report = audit();
    let b = bucket(&report, "10.203.0.2:9000");
    assert_eq!(b.local_ip, "10.203.0.1");
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees("veth, tcp_tw_reuse=0, 300 TIME_WAIT of 500 ports", b.available, held.len(), &err, EADDRNOTAVAIL);
    assert_eq!(numbers(b), (300, 300, 0, 300, 500, 200), "{b:?}");

    // Now full: twtune says connect() is failing, which no counter shows.
    let full = audit();
    assert_eq!(bucket(&full, "10.203.0.2:9000").available, 0);
    let finding = finding_with(&full, "ports.bucket-exhaustion", "remote", "10.203.0.2:9000");
    assert_eq!(finding.severity, "crit");
    assert!(finding.message.contains("is failing now"), "{}", finding.message);
    // Another port of the same server is another bucket, with every port still free.
    let _other = Client::Plain.connect(address(&other)).expect("another destination port still connects");
    drop(held);
    drop(peer);
}

/// Scenario 2: tcp_tw_reuse=1, TIME_WAIT younger than tcp_tw_reuse_delay: none of it can be taken
/// over yet.
#[test]
fn reuse_waits_for_the_delay_young_time_wait_is_held() {
    if !enter("differential::reuse_waits_for_the_delay_young_time_wait_is_held") {
        return;
    }
    prepare("40000 40499", "1");
    set_sysctl("net.ipv4.tcp_tw_reuse_delay", "30000");
    let server = listen("127.0.0.1:9000");
    time_waits(&server, 300, Client::Plain);

    let report = audit();
    let b = bucket(&report, "127.0.0.1:9000");
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees("tcp_tw_reuse=1, delay 30 s, 300 young TIME_WAIT", b.available, held.len(), &err, EADDRNOTAVAIL);
    assert_eq!(numbers(b), (300, 300, 0, 300, 500, 200), "younger than 30 s: nothing reusable yet; {b:?}");
}

/// Scenario 3: tcp_tw_reuse=1, TIME_WAIT older than the delay, toward a non-loopback peer:
/// connect() takes every one over, so only live sockets hold ports.
#[test]
fn reuse_takes_over_old_time_wait_toward_any_destination() {
    if !enter("differential::reuse_takes_over_old_time_wait_toward_any_destination") {
        return;
    }
    prepare("40000 40499", "1");
    set_sysctl("net.ipv4.tcp_tw_reuse_delay", "200");
    let peer = Peer::new();
    let server = peer.listen(9000);
    time_waits(&server, 300, Client::Plain);
    let live: Held = (0..20)
        .map(|_| (Client::Plain.connect(address(&server)).expect("connect"), server.accept().expect("accept").0))
        .collect();
    age_past_reuse_delay();

    let report = audit();
    let b = bucket(&report, "10.203.0.2:9000");
    let before = tw_recycled(&report);
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees(
        "veth, tcp_tw_reuse=1, 300 old TIME_WAIT + 20 live of 500",
        b.available,
        held.len(),
        &err,
        EADDRNOTAVAIL,
    );
    assert_eq!(numbers(b), (320, 300, 300, 20, 500, 480), "every TIME_WAIT is reusable; {b:?}");
    let after = audit();
    assert_eq!(tw_recycled(&after) - before, 300, "connect() took over every TIME_WAIT");
    assert_eq!(after.sockets.time_wait.total, 0);
    drop((live, held));
    drop(peer);
}

/// Scenario 4: tcp_tw_reuse=2 reuses only loopback TIME_WAIT: 127.0.0.1 yes, an address of lo
/// outside 127/8 no.
#[test]
fn reuse_2_is_loopback_only() {
    if !enter("differential::reuse_2_is_loopback_only") {
        return;
    }
    prepare("40000 40499", "2");
    set_sysctl("net.ipv4.tcp_tw_reuse_delay", "200");
    run("ip", &["addr", "add", "10.204.0.1/32", "dev", "lo"]);
    let loopback = listen("127.0.0.1:9000");
    let local = listen("10.204.0.1:9000");
    time_waits(&loopback, 200, Client::Plain);
    time_waits(&local, 200, Client::Plain);
    age_past_reuse_delay();

    let report = audit();
    let lo = bucket(&report, "127.0.0.1:9000");
    let not_lo = bucket(&report, "10.204.0.1:9000");
    assert_eq!(not_lo.local_ip, "10.204.0.1");

    let mut differences = Differences::default();
    let (held_not_lo, err) = connect_until_failure(&local, LIMIT, Client::Plain);
    differences.check(
        "tcp_tw_reuse=2 toward 10.204.0.1 (on lo)",
        not_lo.available,
        held_not_lo.len(),
        &err,
        EADDRNOTAVAIL,
    );
    let (held_lo, err) = connect_until_failure(&loopback, LIMIT, Client::Plain);
    differences.check("tcp_tw_reuse=2 toward 127.0.0.1", lo.available, held_lo.len(), &err, EADDRNOTAVAIL);
    differences.assert_none();
    assert_eq!(numbers(lo), (200, 200, 200, 0, 500, 500), "loopback TIME_WAIT is reusable; {lo:?}");
    assert_eq!(numbers(not_lo), (200, 200, 0, 200, 500, 300), "10.204.0.1 is not loopback; {not_lo:?}");
    run("ip", &["addr", "del", "10.204.0.1/32", "dev", "lo"]);
}

/// Scenario 5: tcp_timestamps=0: the TIME_WAIT carries no timestamp, so tcp_tw_reuse cannot take it
/// over.
#[test]
fn reuse_without_timestamps_takes_nothing_over() {
    if !enter("differential::reuse_without_timestamps_takes_nothing_over") {
        return;
    }
    prepare("40000 40499", "1");
    set_sysctl("net.ipv4.tcp_tw_reuse_delay", "200");
    set_sysctl("net.ipv4.tcp_timestamps", "0");
    let server = listen("127.0.0.1:9000");
    time_waits(&server, 300, Client::Plain);
    age_past_reuse_delay();

    let report = audit();
    let b = bucket(&report, "127.0.0.1:9000");
    report.one("tw-reuse.needs-timestamps");
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees("tcp_tw_reuse=1, tcp_timestamps=0, 300 old TIME_WAIT", b.available, held.len(), &err, EADDRNOTAVAIL);
    assert_eq!(numbers(b), (300, 300, 0, 300, 500, 200), "no timestamps, no reuse; {b:?}");
}

/// Scenario 6: bind(addr, 0) before connect(): the port is taken for the address, whatever the
/// destination, and TIME_WAIT toward two servers adds up in the bind() budget.
#[test]
fn bind_before_connect_exhausts_the_address_across_destinations() {
    if !enter("differential::bind_before_connect_exhausts_the_address_across_destinations") {
        return;
    }
    // tcp_tw_reuse on: bind() never takes TIME_WAIT over, whatever it says.
    prepare("40000 40999", "1");
    let a = listen("127.0.0.1:9000");
    let b = listen("127.0.0.1:9001");
    time_waits(&a, 500, Client::BindFirst(LOOPBACK));
    time_waits(&b, 300, Client::BindFirst(LOOPBACK));

    let report = audit();
    let ports = local_ports(&report, "127.0.0.1");
    let (bound, err) = bind_until_failure(LOOPBACK, LIMIT);
    kernel_agrees("bind(127.0.0.1:0), 800 of 1000 ports in TIME_WAIT", ports.available, bound.len(), &err, EADDRINUSE);
    drop(bound);
    assert_eq!((ports.ports_in_use, ports.usable_ports, ports.available), (800, 1000, 200), "{ports:?}");
    assert_eq!(ports.usage_pct, 80.0);
    let finding = report.one("ports.bind-exhaustion");
    assert_eq!(finding.severity, "crit");
    assert!(finding.message.contains("EADDRINUSE"), "{}", finding.message);
    assert!(
        finding.advice.first().is_some_and(|a| a.action.contains("IP_BIND_ADDRESS_NO_PORT")),
        "{:#?}",
        finding.advice
    );
    assert!(finding.advice.iter().all(|a| !a.action.contains("tcp_tw_reuse")), "{:#?}", finding.advice);

    // 200 more: the address has no port left, and twtune says bind() is failing.
    time_waits(&b, 200, Client::BindFirst(LOOPBACK));
    let full = audit();
    let ports = local_ports(&full, "127.0.0.1");
    let (bound, err) = bind_until_failure(LOOPBACK, LIMIT);
    kernel_agrees("bind(127.0.0.1:0), 1000 of 1000 ports in TIME_WAIT", ports.available, bound.len(), &err, EADDRINUSE);
    assert_eq!((ports.ports_in_use, ports.available), (1000, 0), "{ports:?}");
    let finding = full.one("ports.bind-exhaustion");
    assert_eq!(finding.severity, "crit");
    assert!(finding.message.contains("is failing now"), "{}", finding.message);

    // connect() without bind() skips every port bind() chose, toward any destination: twtune infers
    // from the ports' parity and sharing that these were bound, and predicts nothing left.
    let e = &full.sockets.ephemeral;
    assert_eq!((e.usable_ports, e.bound_ports), (1000, 1000), "{e:?}");
    assert_eq!(bucket(&full, "127.0.0.1:9000").available, 0);
    let third = listen("127.0.0.1:9002");
    let (held, err) = connect_until_failure(&third, LIMIT, Client::Plain);
    kernel_agrees(
        "connect() to a third destination, every port bound before connect()",
        i64::from(e.usable_ports - e.bound_ports),
        held.len(),
        &err,
        EADDRNOTAVAIL,
    );
}

/// Scenario 6b: the TIME_WAIT of a bind()-before-connect() socket keeps its port from connect()
/// toward every destination, its own included, and tcp_tw_reuse cannot take it over: the kernel
/// skips every port that bind() took (its bind bucket is not connect()'s) before it looks at the
/// 4-tuple.
#[test]
fn time_wait_of_bound_sockets_blocks_connect_to_every_destination() {
    if !enter("differential::time_wait_of_bound_sockets_blocks_connect_to_every_destination") {
        return;
    }
    prepare("40000 40499", "1");
    set_sysctl("net.ipv4.tcp_tw_reuse_delay", "200");
    let own = listen("127.0.0.1:9000");
    let fresh = listen("127.0.0.1:9001");
    time_waits(&own, 300, Client::BindFirst(LOOPBACK));
    age_past_reuse_delay();

    // One audit predicts both: toward the destination of the TIME_WAIT, and toward a destination
    // without a bucket, which gets the usable ports that bind() users do not hold.
    let report = audit();
    let b = bucket(&report, "127.0.0.1:9000");
    assert_eq!((b.reusable, report.sockets.ephemeral.bound_ports), (0, 300), "a plain connect() takes none over");
    assert!(report.sockets.buckets.iter().all(|b| b.remote != "127.0.0.1:9001"));
    let predicted_fresh = i64::from(report.sockets.ephemeral.usable_ports - report.sockets.ephemeral.bound_ports);
    // The fresh destination first: its connections take the free ports, which connect() then shares
    // with the other destination, so the bucket's prediction still holds after it.
    let (held_fresh, err_fresh) = connect_until_failure(&fresh, LIMIT, Client::Plain);
    let (held_own, err_own) = connect_until_failure(&own, LIMIT, Client::Plain);

    let mut differences = Differences::default();
    differences.check(
        "connect() to 127.0.0.1:9001 (no bucket: usable_ports - bound_ports)",
        predicted_fresh,
        held_fresh.len(),
        &err_fresh,
        EADDRNOTAVAIL,
    );
    differences.check(
        "then connect() to 127.0.0.1:9000, 300 of 500 ports in old TIME_WAIT of bind()-before-connect() sockets toward it",
        b.available,
        held_own.len(),
        &err_own,
        EADDRNOTAVAIL,
    );
    differences.assert_none();
}

/// Scenario 7: IP_BIND_ADDRESS_NO_PORT: bind() names the address only, connect() picks the port per
/// destination, so the bucket budget applies.
#[test]
fn bind_address_no_port_follows_the_bucket_budget() {
    if !enter("differential::bind_address_no_port_follows_the_bucket_budget") {
        return;
    }
    prepare("40000 40499", "0");
    let server = listen("127.0.0.1:9000");
    time_waits(&server, 300, Client::BindNoPort(LOOPBACK));

    let report = audit();
    let b = bucket(&report, "127.0.0.1:9000");
    // A plain bind(127.0.0.1:0) may not take a port a socket on that address holds.
    let ports = local_ports(&report, "127.0.0.1");
    let mut differences = Differences::default();
    let (bound, err) = bind_until_failure(LOOPBACK, LIMIT);
    differences.check(
        "bind(127.0.0.1:0), 300 of 500 ports in TIME_WAIT",
        ports.available,
        bound.len(),
        &err,
        EADDRINUSE,
    );
    drop(bound);
    let (held, err) = connect_until_failure(&server, LIMIT, Client::BindNoPort(LOOPBACK));
    differences.check(
        "IP_BIND_ADDRESS_NO_PORT, 300 TIME_WAIT of 500 ports",
        b.available,
        held.len(),
        &err,
        EADDRNOTAVAIL,
    );
    differences.assert_none();
    assert_eq!(numbers(b), (300, 300, 0, 300, 500, 200), "{b:?}");
    assert_eq!((ports.ports_in_use, ports.usable_ports, ports.available), (300, 500, 200), "{ports:?}");
}

/// Scenario 8: ports in ip_local_reserved_ports are never handed out.
#[test]
fn reserved_ports_are_left_out_of_the_budget() {
    if !enter("differential::reserved_ports_are_left_out_of_the_budget") {
        return;
    }
    prepare("40000 40499", "0");
    set_sysctl("net.ipv4.ip_local_reserved_ports", "40100-40199,50000");
    let server = listen("127.0.0.1:9000");
    time_waits(&server, 150, Client::Plain);

    let report = audit();
    assert_eq!((report.sockets.ephemeral.reserved_in_range, report.sockets.ephemeral.usable_ports), (100, 400));
    let b = bucket(&report, "127.0.0.1:9000");
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees("100 of 500 ports reserved, 150 TIME_WAIT", b.available, held.len(), &err, EADDRNOTAVAIL);
    assert_eq!(numbers(b), (150, 150, 0, 150, 400, 250), "{b:?}");
    let reserved: Vec<u32> = port_list("40100-40199");
    assert!(held.iter().all(|(c, _)| !reserved.contains(&u32::from(c.local_addr().expect("addr").port()))));
}

/// Scenario 9: a listener inside the range takes its port from every destination.
#[test]
fn listeners_inside_the_range_are_left_out_of_the_budget() {
    if !enter("differential::listeners_inside_the_range_are_left_out_of_the_budget") {
        return;
    }
    prepare("40000 40499", "0");
    let _wildcard = listen("0.0.0.0:40250");
    let _specific = listen("127.0.0.1:40300");
    let server = listen("127.0.0.1:9000");
    time_waits(&server, 100, Client::Plain);

    let report = audit();
    assert_eq!(report.sockets.ephemeral.listeners_in_range, vec![40250, 40300]);
    let b = bucket(&report, "127.0.0.1:9000");
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees("2 listeners in 500 ports, 100 TIME_WAIT", b.available, held.len(), &err, EADDRNOTAVAIL);
    assert_eq!(numbers(b), (100, 100, 0, 100, 498, 398), "{b:?}");
}

/// A server on `addr` that closed first 200 times and then stopped listening, in a range of 1 000
/// ports: its TIME_WAIT is no outbound TIME_WAIT and no destination of this host's clients, and
/// connect() to a new destination gets `usable_ports` ports, which must be `usable`. Returns the
/// report.
fn a_stopped_server(addr: &str, usable: i64) -> Report {
    prepare("40000 40999", "0");
    let stopped = listen(addr);
    server_time_waits(&stopped, 200);
    drop(stopped);
    let server = listen("127.0.0.1:9000");

    let report = audit();
    let tw = &report.sockets.time_wait;
    assert_eq!((tw.total, tw.outbound, tw.inbound, tw.without_listener), (200, 0, 0, 200), "{tw:?}");
    for b in &report.sockets.buckets {
        let port: u16 = b.remote.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("remote port");
        assert!(!(40000..=40999).contains(&port), "a bucket toward a client's ephemeral port: {b:?}");
    }
    assert!(report.sockets.buckets.iter().all(|b| b.remote != "127.0.0.1:9000"));
    let predicted = i64::from(report.sockets.ephemeral.usable_ports);
    assert_eq!(predicted, usable);
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees(&format!("200 TIME_WAIT of a stopped server on {addr}"), predicted, held.len(), &err, EADDRNOTAVAIL);
    report
}

/// Scenario 10: a server that closed first and then stopped listening: its TIME_WAIT sits on a port
/// outside the range and holds nothing connect() needs.
#[test]
fn time_wait_of_a_stopped_listener_holds_no_ephemeral_port() {
    if !enter("differential::time_wait_of_a_stopped_listener_holds_no_ephemeral_port") {
        return;
    }
    a_stopped_server("127.0.0.1:8080", 1000);
}

/// Scenario 10b: the same inside the range: a server on 127.0.0.1:40500. Its TIME_WAIT (one local
/// port toward the clients' many ports) is a server's, not 200 destinations; and its port stays
/// taken for connect() until that TIME_WAIT ends, since the TIME_WAIT keeps the listener's bind
/// bucket, which connect() skips.
#[test]
fn time_wait_of_a_stopped_listener_inside_the_range_holds_its_one_port() {
    if !enter("differential::time_wait_of_a_stopped_listener_inside_the_range_holds_its_one_port") {
        return;
    }
    let report = a_stopped_server("127.0.0.1:40500", 999);
    assert_eq!(report.sockets.ephemeral.stopped_listeners_in_range, vec![40500]);
    assert!(report.sockets.buckets.is_empty(), "no bucket toward a client's port: {:#?}", report.sockets.buckets);
}

/// Scenario 11: a range inside the Kubernetes NodePorts: too small, and reserving the NodePorts
/// would leave nothing; once they are reserved anyway, every connect() fails.
#[test]
fn nodeport_range_too_small_and_fully_reserved() {
    if !enter("differential::nodeport_range_too_small_and_fully_reserved") {
        return;
    }
    prepare("30000 30599", "0");
    let server = listen("127.0.0.1:9000");

    // No advice may reserve ports so that fewer than 1000 are left in the range.
    let reserved_leaves_enough = |report: &Report, range: (u32, u32)| {
        for f in report.findings.iter().filter(|f| f.key.as_deref() == Some("net.ipv4.ip_local_reserved_ports")) {
            let recommended = f.recommended.as_deref().unwrap_or("");
            let in_range = port_list(recommended).into_iter().filter(|p| (range.0..=range.1).contains(p)).count();
            let left = (range.1 - range.0 + 1) as usize - in_range.min((range.1 - range.0 + 1) as usize);
            assert!(left >= 1000, "{} recommends reserved ports {recommended:?}: {left} usable left", f.id);
        }
    };

    let report = audit();
    assert_eq!(report.sockets.ephemeral.usable_ports, 600);
    assert_eq!(report.one("ports.pool-too-small").severity, "crit");
    reserved_leaves_enough(&report, (30000, 30599));
    let nodeport = report.one("port-range.nodeport-overlap");
    assert_eq!(nodeport.key.as_deref(), Some("net.ipv4.ip_local_port_range"), "{nodeport:#?}");
    let moved = nodeport.recommended.as_deref().expect("a range to move to");
    let (lo, hi) = moved.split_once(' ').expect("\"low high\"");
    let (lo, hi): (u32, u32) = (lo.parse().expect("low"), hi.parse().expect("high"));
    assert!(hi >= lo + 999, "the new range {moved:?} has at least 1000 ports");
    assert!(lo > 32767 || hi < 30000, "the new range {moved:?} leaves the NodePorts");

    set_sysctl("net.ipv4.ip_local_reserved_ports", "30000-32767");
    let report = audit();
    assert_eq!(report.sockets.ephemeral.usable_ports, 0);
    assert_eq!(report.one("ports.pool-too-small").severity, "crit");
    reserved_leaves_enough(&report, (30000, 30599));
    let predicted = i64::from(report.sockets.ephemeral.usable_ports);
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees("every port of the range reserved", predicted, held.len(), &err, EADDRNOTAVAIL);
}

/// The loopback churn: a client closing first at about 150 connections a second, over a
/// 500-port range, with the default tcp_tw_reuse=2. The kernel keeps up by taking over TIME_WAIT
/// older than the delay (no connect error, TWRecycled climbs); twtune must see that: reusable
/// TIME_WAIT is not held, no time to exhaustion, no advice to turn reuse on. Right after the churn,
/// its `available` is what connect() gets.
#[test]
fn loopback_churn_with_the_default_reuse_is_not_an_emergency() {
    if !enter("differential::loopback_churn_with_the_default_reuse_is_not_an_emergency") {
        return;
    }
    prepare("40000 40499", "2");
    set_sysctl("net.ipv4.tcp_tw_reuse_delay", "1000");
    let server = listen("127.0.0.1:9000");
    let to = address(&server);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut made = 0u32;
            // Bounded: 8 s at most, then it stops by itself.
            let deadline = std::time::Instant::now() + Duration::from_secs(8);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
                let stream = TcpStream::connect(to).unwrap_or_else(|e| panic!("churn connect {made}: {e}"));
                let (mut accepted, _) = server.accept().expect("accept");
                drop(stream);
                assert_eq!(accepted.read(&mut [0u8; 1]).expect("read EOF"), 0);
                made += 1;
                std::thread::sleep(Duration::from_micros(6_500));
            }
            (made, server)
        })
    };
    // Past the first delay, the pool is in its steady state: ports come back as TIME_WAIT ages.
    std::thread::sleep(Duration::from_millis(3500));
    let (_, sampled) = audit_json(&["--fail-on", "never", "--sample", "2s"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (made, server) = churn.join().expect("the churn ran without a connect error");
    assert!(made > 500, "the churn used more connections ({made}) than the range has ports");

    let rates = sampled.rates.as_ref().expect("rates");
    assert!(rates.time_wait_reused_per_sec > 0.0, "{rates:?}");
    let b = bucket(&sampled, "127.0.0.1:9000");
    assert!(b.reusable > 0 && b.held < b.count, "{b:?}");
    // Nothing here binds, and reuse holds the pool at about a third: no alarm but the small range's.
    for quiet in [
        "ports.bucket-exhaustion-soon",
        "tw-reuse.outbound-pressure",
        "ports.bind-exhaustion",
        "ports.bucket-exhaustion",
    ] {
        assert!(sampled.with_id(quiet).is_empty(), "{quiet}: {:?}", sampled.ids());
    }

    // Differential: once the last TIME_WAIT is older than the delay, connect() gets what twtune says
    // is available (every TIME_WAIT taken over, so the whole range).
    std::thread::sleep(Duration::from_millis(1300));
    let report = audit();
    let b = bucket(&report, "127.0.0.1:9000");
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees("connect() to 127.0.0.1:9000 after the churn", b.available, held.len(), &err, EADDRNOTAVAIL);
}

/// A peer that sends no timestamps (here: tcp_timestamps=0 in the peer namespace; Windows hosts and
/// some middleboxes in real life) with tcp_tw_reuse=1 here: its TIME_WAIT carries no timestamp, so
/// connect() takes none over. Only the live connections' tcp_info (netlink) tells; /proc cannot.
#[test]
fn a_peer_without_timestamps_leaves_nothing_to_take_over() {
    if !enter("differential::a_peer_without_timestamps_leaves_nothing_to_take_over") {
        return;
    }
    prepare("40000 40499", "1");
    set_sysctl("net.ipv4.tcp_tw_reuse_delay", "200");
    let peer = Peer::new();
    run("ip", &["netns", "exec", PEER, "sysctl", "-qw", "net.ipv4.tcp_timestamps=0"]);
    let server = peer.listen(9000);
    time_waits(&server, 300, Client::Plain);
    let live: Held = (0..20)
        .map(|_| (Client::Plain.connect(address(&server)).expect("connect"), server.accept().expect("accept").0))
        .collect();
    age_past_reuse_delay();

    let (_, report) = audit_json(&["--fail-on", "never", "--top", "1000", "--socket-source", "netlink"]);
    let b = bucket(&report, "10.203.0.2:9000");
    assert_eq!((b.count, b.reusable, b.held), (320, 0, 320), "{b:?}");
    assert!(report.with_id("tw-reuse.outbound-pressure").is_empty(), "reuse is on already: {:?}", report.ids());
    let (held, err) = connect_until_failure(&server, LIMIT, Client::Plain);
    kernel_agrees(
        "veth, peer without timestamps, 300 old TIME_WAIT + 20 live of 500",
        b.available,
        held.len(),
        &err,
        EADDRNOTAVAIL,
    );
    drop((live, held));
    drop(peer);
}

// --- over time -------------------------------------------------------------------------------------

/// A client that opens `rate` connections a second to `server` and closes each first (a TIME_WAIT
/// on its side), on threads of its own until dropped; it remembers when connect() first failed
/// with EADDRNOTAVAIL. The server's side reads to the end and closes.
struct Churner {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    first_failure: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Churner {
    fn start(server: TcpListener, rate: u32) -> Churner {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first_failure = std::sync::Arc::new(std::sync::Mutex::new(None));
        let to = address(&server);
        server.set_nonblocking(true).expect("nonblocking listener");
        let accepting = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match server.accept() {
                        Ok((mut accepted, _)) => {
                            accepted.set_nonblocking(false).expect("blocking stream");
                            let _ = accepted.read(&mut [0u8; 1]);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        let connecting = {
            let (stop, first_failure) = (stop.clone(), first_failure.clone());
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                let mut made = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    // Paced against the clock, so that a slow moment is caught up.
                    let due = start + Duration::from_secs_f64(f64::from(made) / f64::from(rate));
                    if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    made += 1;
                    match TcpStream::connect(to) {
                        Ok(stream) => drop(stream),
                        Err(e) if e.raw_os_error() == Some(EADDRNOTAVAIL) => {
                            first_failure.lock().expect("lock").get_or_insert_with(std::time::Instant::now);
                        }
                        Err(e) => panic!("connect to {to}: {e}"),
                    }
                }
            })
        };
        Churner { stop, first_failure, threads: vec![accepting, connecting] }
    }

    fn first_failure(&self) -> Option<std::time::Instant> {
        *self.first_failure.lock().expect("lock")
    }
}

impl Drop for Churner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Scenario 14a: a client that closes 8 connections a second in a range of 1 000 ports. Each
/// TIME_WAIT holds its port 60 s, so the bucket levels off near 480 held ports and never runs out:
/// a straight line through the first seconds (8 more a second, "runs out in about 2 min") is a
/// false alarm. The forecast gives the level and no time.
#[test]
fn churn_that_levels_off_below_the_range_is_not_forecast_to_run_out() {
    if !enter("differential::churn_that_levels_off_below_the_range_is_not_forecast_to_run_out") {
        return;
    }
    prepare("40000 40999", "0");
    let churner = Churner::start(listen("127.0.0.1:9000"), 8);
    std::thread::sleep(Duration::from_secs(4));
    let (_, report) = audit_json(&["--fail-on", "never", "--sample", "3s"]);
    drop(churner);
    let b = bucket(&report, "127.0.0.1:9000");
    let forecast = b.forecast.as_ref().expect("a sampled bucket has a forecast");
    assert!((7.0..=9.0).contains(&forecast.closes_per_sec), "8 closes a second: {forecast:?}");
    assert!((400..=560).contains(&forecast.level), "it levels off near 480 of 1 000: {forecast:?}");
    assert_eq!((b.seconds_to_exhaustion, forecast.seconds_to_exhaustion), (None, None), "{b:?}");
    assert!(report.with_id("ports.bucket-exhaustion-soon").is_empty(), "no forecast finding: {:#?}", report.findings);
}

/// Scenario 14b: 40 closes a second in 1 000 ports levels off near 2 400: the bucket runs out, and
/// the forecast says when, within a quarter of the time the kernel takes to refuse the first
/// connect() with EADDRNOTAVAIL.
#[test]
fn churn_above_the_range_is_forecast_to_run_out_when_the_kernel_refuses() {
    if !enter("differential::churn_above_the_range_is_forecast_to_run_out_when_the_kernel_refuses") {
        return;
    }
    prepare("40000 40999", "0");
    let churner = Churner::start(listen("127.0.0.1:9000"), 40);
    std::thread::sleep(Duration::from_secs(3));
    let (_, report) = audit_json(&["--fail-on", "never", "--sample", "3s"]);
    let read = std::time::Instant::now();
    let b = bucket(&report, "127.0.0.1:9000");
    let predicted = b.seconds_to_exhaustion.expect("forecast to run out");
    let deadline = read + Duration::from_secs(60);
    while churner.first_failure().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed = churner.first_failure().expect("connect() failed with EADDRNOTAVAIL within a minute");
    drop(churner);
    let actual = failed.saturating_duration_since(read).as_secs_f64();
    eprintln!("forecast: runs out {predicted} s after the read; the kernel refused {actual:.1} s after it");
    assert!(
        (predicted - actual).abs() <= 0.25 * actual,
        "twtune forecast {predicted} s; the kernel refused the first connect() {actual:.1} s after the read: {:?}",
        b.forecast
    );
    let f = report.with_id("ports.bucket-exhaustion-soon");
    assert_eq!(f.len(), 1, "{:#?}", report.findings);
    assert!(f[0].message.contains("level off at about"), "{}", f[0].message);
}

/// Closes a connection with a reset (SO_LINGER 0), so that checking a budget leaves no TIME_WAIT.
fn reset(held: Held) {
    for (client, _accepted) in held {
        setsockopt(&client, sockopt::Linger, &nix::libc::linger { l_onoff: 1, l_linger: 0 }).expect("SO_LINGER");
    }
    settle();
}

/// Scenario 15: a plain connect() client fills its 1 000 ports toward one destination in four
/// bursts of 250, twelve seconds apart, and stops. connect() took the even ports first (the parity
/// of the range's low bound), so a minute later they end first: for a while most ports in use are
/// odd, bind(0)'s parity. That is a connect() client draining, not one that binds first. At three
/// moments of the drain, both destinations' `available` equals what connect() then gets and there
/// is no bind finding; at the last, after `tcp_tw_reuse=1` (twtune's own advice), the drained
/// destination's old TIME_WAIT is all taken over. Each moment is 65.5 s after a burst ended and
/// well before the next burst is 60 s old: a TIME_WAIT's 60 s timer may fire some seconds late (the
/// kernel's timer wheel is coarse at a minute), and nothing may end while the kernel is asked.
#[test]
fn a_draining_connect_client_is_not_taken_for_one_that_binds_first() {
    if !enter("differential::a_draining_connect_client_is_not_taken_for_one_that_binds_first") {
        return;
    }
    prepare("40000 40999", "0");
    let own = listen("127.0.0.1:9000");
    let fresh = listen("127.0.0.1:9001");
    let start = std::time::Instant::now();
    let mut bursts = Vec::new();
    for burst in 0..4u64 {
        let due = start + Duration::from_secs(12 * burst);
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        let began = std::time::Instant::now();
        time_waits(&own, 250, Client::Plain);
        bursts.push((began, std::time::Instant::now()));
    }
    // After the first even burst, after both even ones (the odd ones alone), after an odd one too.
    for (check, ended) in [(1, 0), (2, 1), (3, 2)] {
        let (_, end) = bursts[ended];
        let (next, _) = bursts[ended + 1];
        let at = end + Duration::from_millis(65_500);
        std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
        assert!(
            next + Duration::from_secs(60) > std::time::Instant::now() + Duration::from_millis(1500),
            "check {check}: the next burst's TIME_WAIT ends too soon to ask the kernel in between"
        );
        if check == 3 {
            set_sysctl("net.ipv4.tcp_tw_reuse", "1");
        }
        let report = audit();
        assert!(report.with_id("ports.bind-exhaustion").is_empty(), "check {check}: {:#?}", report.findings);
        assert_eq!(report.sockets.ephemeral.bound_ports, 0, "check {check}: no client binds first");
        let own_available = report.sockets.buckets.iter().find(|b| b.remote == "127.0.0.1:9000").map(|b| b.available);
        let fresh_predicted = i64::from(report.sockets.ephemeral.usable_ports);
        let (held_fresh, err_fresh) = connect_until_failure(&fresh, LIMIT, Client::Plain);
        let fresh_count = held_fresh.len();
        reset(held_fresh);
        let (held_own, err_own) = connect_until_failure(&own, LIMIT, Client::Plain);
        let own_count = held_own.len();
        reset(held_own);
        let mut differences = Differences::default();
        differences.check(
            &format!("check {check}: connect() to a fresh destination"),
            fresh_predicted,
            fresh_count,
            &err_fresh,
            EADDRNOTAVAIL,
        );
        differences.check(
            &format!("check {check}: connect() to the drained destination"),
            own_available.unwrap_or(fresh_predicted),
            own_count,
            &err_own,
            EADDRNOTAVAIL,
        );
        differences.assert_none();
        eprintln!("drain check {check}: fresh {fresh_count}, drained {own_count}");
    }
}
