//! `twtune audit` on real sockets of the running kernel, each test in its own network namespace:
//! client-side and server-side closes, a narrowed port range, a lowered tcp_max_tw_buckets, a
//! listener inside the range and connects stalled by dropped SYNs, checked against `ss` and
//! against what connect() really does.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::netns::{enter, run, set_sysctl, sysctl};
use crate::util::{Report, audit_json, connections};

fn listen(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen on {addr}: {e}"))
}

/// The socket table as `ss` sees it: (state, local, peer) per socket.
fn ss() -> Vec<(String, SocketAddr, SocketAddr)> {
    let parse = |s: &str| -> SocketAddr {
        let (ip, port) = s.rsplit_once(':').expect("addr:port");
        let ip: IpAddr = ip.trim_matches(|c| c == '[' || c == ']').parse().expect("ip");
        SocketAddr::new(ip.to_canonical(), if port == "*" { 0 } else { port.parse().expect("port") })
    };
    run("ss", &["-Htan"])
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f[0].to_string(), parse(f[3]), parse(f[4]))
        })
        .collect()
}

/// Per (local IP, remote) bucket: sockets holding an ephemeral port, counted from `ss`.
fn ss_buckets(range: (u16, u16)) -> BTreeMap<(String, String), u32> {
    let listening: Vec<u16> = ss().iter().filter(|(s, ..)| s == "LISTEN").map(|(_, l, _)| l.port()).collect();
    let mut buckets = BTreeMap::new();
    for (state, local, peer) in ss() {
        let port = local.port();
        if state == "LISTEN" || port < range.0 || port > range.1 || listening.contains(&port) {
            continue;
        }
        *buckets.entry((local.ip().to_string(), peer.to_string())).or_insert(0) += 1;
    }
    buckets
}

fn ss_count(state: &str) -> u64 {
    ss().iter().filter(|(s, ..)| s == state).count() as u64
}

fn audit() -> (i32, Report) {
    audit_json(&["--top", "50"])
}

#[test]
fn connect_fails_exactly_when_twtune_says_the_bucket_is_full() {
    if !enter("real_kernel::connect_fails_exactly_when_twtune_says_the_bucket_is_full") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "0");
    set_sysctl("net.ipv4.ip_local_port_range", "40000 40009");
    let full = listen("127.0.0.1:8080");
    let other = listen("127.0.0.1:8081");
    connections(&full, 10, true);

    let (code, report) = audit();
    assert_eq!(code, 1);
    let bucket = &report.sockets.buckets[0];
    assert_eq!((bucket.remote.as_str(), bucket.count, bucket.usable_ports), ("127.0.0.1:8080", 10, 10));
    assert_eq!(bucket.usage_pct, 100.0);
    assert_eq!(report.one("ports.bucket-exhaustion").severity, "crit");

    // The kernel agrees: the full bucket refuses, another destination port still has all 10 ports.
    let err = TcpStream::connect("127.0.0.1:8080").expect_err("bucket is full");
    assert_eq!(err.raw_os_error(), Some(99), "EADDRNOTAVAIL, got {err}");
    let _fine = TcpStream::connect("127.0.0.1:8081").expect("another bucket has ports");
    drop(other);
}

#[test]
fn client_side_time_wait_is_outbound_and_matches_ss() {
    if !enter("real_kernel::client_side_time_wait_is_outbound_and_matches_ss") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "0");
    set_sysctl("net.ipv4.ip_local_port_range", "40000 40199");
    let backend = listen("127.0.0.1:8080");
    let other = listen("127.0.0.1:9090");
    let v6 = listen("[::1]:9443");
    connections(&backend, 170, true);
    connections(&other, 30, true);
    connections(&v6, 20, true);
    let _live: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect("127.0.0.1:9090").expect("connect")).collect();

    let (code, report) = audit();
    assert_eq!(code, 1);
    let tw = &report.sockets.time_wait;
    assert_eq!(tw.total, ss_count("TIME-WAIT"));
    assert_eq!((tw.total, tw.outbound, tw.inbound), (220, 220, 0));
    assert_eq!(report.sockets.states["ESTABLISHED"], ss_count("ESTAB"));
    assert_eq!(report.sockets.states["LISTEN"], ss_count("LISTEN"));
    assert_eq!(report.sockets.total, ss().len() as u64);

    let ours: BTreeMap<(String, String), u32> =
        report.sockets.buckets.iter().map(|b| ((b.local_ip.clone(), b.remote.clone()), b.count)).collect();
    assert_eq!(ours, ss_buckets((40000, 40199)), "buckets differ from ss");
    assert_eq!(ours[&("::1".to_string(), "[::1]:9443".to_string())], 20);

    let exhaustion = report.one("ports.bucket-exhaustion");
    assert_eq!(exhaustion.evidence["remote"], "127.0.0.1:8080");
    assert_eq!(exhaustion.severity, "crit", "170 of 200 ports is 85 %");
    let pressure = report.one("tw-reuse.outbound-pressure");
    assert_eq!((pressure.current.as_deref(), pressure.recommended.as_deref()), (Some("0"), Some("1")));
    assert!(report.with_id("tw.mostly-inbound").is_empty());
}

#[test]
fn server_side_time_wait_is_inbound_and_never_answered_with_tw_reuse() {
    if !enter("real_kernel::server_side_time_wait_is_inbound_and_never_answered_with_tw_reuse") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "0");
    let web = listen("127.0.0.1:8080");
    let web6 = listen("[::1]:8443");
    connections(&web, 150, false);
    connections(&web6, 60, false);

    let (code, report) = audit();
    assert_eq!(code, 0, "an info finding only: {:?}", report.ids());
    let on_listeners = ss().iter().filter(|(s, l, _)| s == "TIME-WAIT" && [8080, 8443].contains(&l.port())).count();
    assert_eq!(report.sockets.time_wait.inbound, on_listeners as u64);
    assert_eq!((report.sockets.time_wait.inbound, report.sockets.time_wait.outbound), (210, 0));
    assert_eq!(report.sockets.listening_ports, vec![8080, 8443]);
    let finding = report.one("tw.mostly-inbound");
    assert!(finding.message.contains("tcp_tw_reuse does not help a server"), "{}", finding.message);
    assert!(report.findings.iter().all(|f| f.key.as_deref() != Some("net.ipv4.tcp_tw_reuse")));
}

#[test]
fn lowered_max_tw_buckets_overflows_and_is_flagged() {
    if !enter("real_kernel::lowered_max_tw_buckets_overflows_and_is_flagged") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "0");
    set_sysctl("net.ipv4.tcp_max_tw_buckets", "50");
    let server = listen("127.0.0.1:8080");
    connections(&server, 120, true);

    let (code, report) = audit();
    assert_eq!(code, 1);
    assert_eq!(report.sockets.time_wait.total, ss_count("TIME-WAIT"));
    assert_eq!(report.sockets.time_wait.total, 50, "the table holds 50");
    assert_eq!(report.counters["sockstat_tw"], 50);
    assert_eq!(report.counters["TCPTimeWaitOverflow"], 70);
    let finding = report.one("tw-buckets.lowered");
    let ehash: i64 = sysctl("net.ipv4.tcp_ehash_entries").parse().expect("integer");
    assert_eq!(finding.current.as_deref(), Some("50"));
    assert_eq!(finding.recommended, Some((ehash.abs() / 2).to_string()));
    assert!(finding.message.contains("70 times"), "{}", finding.message);
}

#[test]
fn listener_inside_the_range_is_named_and_leaves_the_budget() {
    if !enter("real_kernel::listener_inside_the_range_is_named_and_leaves_the_budget") {
        return;
    }
    set_sysctl("net.ipv4.ip_local_port_range", "40000 40199");
    set_sysctl("net.ipv4.ip_local_reserved_ports", "40190-40199");
    let _inside = listen("0.0.0.0:40100");
    let _reserved = listen("127.0.0.1:40195");
    let backend = listen("127.0.0.1:8080");
    connections(&backend, 5, true);

    let (code, report) = audit();
    assert_eq!(code, 1);
    let ephemeral = &report.sockets.ephemeral;
    assert_eq!((ephemeral.range.as_str(), ephemeral.size), ("40000 40199", 200));
    assert_eq!(ephemeral.reserved_in_range, 10);
    assert_eq!(ephemeral.listeners_in_range, vec![40100], "40195 is reserved, so it is safe");
    assert_eq!(ephemeral.usable_ports, 189);
    let finding = report.one("ports.listener-in-range");
    assert_eq!(finding.severity, "warn");
    assert!(finding.message.contains("40100"), "{}", finding.message);
    assert_eq!(finding.recommended.as_deref(), Some("40100,40190-40199"));
}

#[test]
fn folklore_settings_read_from_the_kernel_are_flagged() {
    if !enter("real_kernel::folklore_settings_read_from_the_kernel_are_flagged") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "1");
    set_sysctl("net.ipv4.tcp_timestamps", "0");
    set_sysctl("net.ipv4.tcp_fin_timeout", "10");
    set_sysctl("net.ipv4.ip_local_port_range", "1024 65534");

    let (_, report) = audit();
    assert_eq!(report.one("tw-reuse.needs-timestamps").severity, "warn");
    assert_eq!(report.one("fin-timeout.not-time-wait").current.as_deref(), Some("10"));
    assert_eq!(report.one("port-range.same-parity").recommended.as_deref(), Some("1024 65533"));
    assert_eq!(report.one("port-range.nodeport-overlap").severity, "info");
    assert_eq!(report.settings["net.ipv4.ip_local_port_range"].as_deref(), Some("1024 65534"), "tab folded");
    assert_eq!(report.settings["net.ipv4.tcp_max_orphans"], None, "global key, absent in a child namespace");
    for finding in &report.findings {
        assert!(!finding.message.is_empty() && !finding.risk.is_empty(), "{}", finding.id);
    }
}

#[test]
fn audit_against_profiles_reads_their_keys_from_the_kernel() {
    if !enter("real_kernel::audit_against_profiles_reads_their_keys_from_the_kernel") {
        return;
    }
    let profile_ids = |report: &Report| -> Vec<String> {
        let mut ids: Vec<String> =
            report.ids().into_iter().filter(|i| i.starts_with("profile.")).map(String::from).collect();
        ids.sort();
        ids
    };
    // A fresh namespace has kernel defaults: outbound-heavy wants reuse and a wider range.
    let (_, report) = audit_json(&["--profile", "outbound-heavy"]);
    assert_eq!(
        profile_ids(&report),
        vec![
            "profile.net.ipv4.ip_local_port_range",
            "profile.net.ipv4.ip_local_reserved_ports",
            "profile.net.ipv4.tcp_tw_reuse"
        ]
    );
    set_sysctl("net.ipv4.tcp_tw_reuse", "1");
    set_sysctl("net.ipv4.ip_local_port_range", "10000 65535");
    set_sysctl("net.ipv4.ip_local_reserved_ports", "30000-32767");
    let (_, report) = audit_json(&["--profile", "outbound-heavy"]);
    assert!(profile_ids(&report).is_empty(), "{:?}", report.ids());
    assert!(
        report.warnings.is_empty(),
        "tcp_max_tw_buckets >= default is judged from tcp_ehash_entries: {:?}",
        report.warnings
    );
    set_sysctl("net.ipv4.ip_local_reserved_ports", "\n");

    // inbound-heavy: somaxconn below 4096 is unmet, a lowered tcp_max_tw_buckets breaks the baseline.
    set_sysctl("net.core.somaxconn", "1024");
    set_sysctl("net.ipv4.tcp_max_tw_buckets", "1000");
    let (code, report) = audit_json(&["--profile", "inbound-heavy"]);
    assert_eq!(code, 1);
    assert_eq!(profile_ids(&report), vec!["profile.net.core.somaxconn", "profile.net.ipv4.tcp_max_tw_buckets"]);
    let somaxconn = report.one("profile.net.core.somaxconn");
    assert_eq!((somaxconn.current.as_deref(), somaxconn.recommended.as_deref()), (Some("1024"), Some("4096")));
    let ehash: i64 = sysctl("net.ipv4.tcp_ehash_entries").parse().expect("integer");
    assert_eq!(report.one("profile.net.ipv4.tcp_max_tw_buckets").recommended, Some((ehash.abs() / 2).to_string()));

    // kubernetes-node: the wide range reaches the NodePorts until they are reserved.
    let (_, report) = audit_json(&["--profile", "kubernetes-node"]);
    let range = report.one("profile.net.ipv4.ip_local_port_range");
    assert_eq!(range.recommended.as_deref(), Some("32768 65535"));
    assert_eq!(report.one("port-range.nodeport-overlap").evidence["unreserved_overlap"], 2768);
    set_sysctl("net.ipv4.ip_local_reserved_ports", "8080,29000-33000");
    let (_, report) = audit_json(&["--profile", "kubernetes-node"]);
    assert!(report.with_id("profile.net.ipv4.ip_local_port_range").is_empty(), "{:?}", report.ids());
    assert!(report.with_id("port-range.nodeport-overlap").is_empty());
    assert_eq!(report.settings["net.ipv4.ip_local_reserved_ports"].as_deref(), Some("8080,29000-33000"));

    // The default range with the NodePorts reserved (what the profile's advice leads to): quiet,
    // and no arithmetic on reserved ports outside the range.
    set_sysctl("net.ipv4.ip_local_port_range", "32768 60999");
    set_sysctl("net.ipv4.ip_local_reserved_ports", "30000-32767");
    let (_, report) = audit_json(&["--profile", "kubernetes-node"]);
    assert!(report.with_id("port-range.nodeport-overlap").is_empty());
    assert!(report.with_id("profile.net.ipv4.ip_local_port_range").is_empty());
}

/// Starts about 20 connects a second to `target`, each giving up after 1.5 s, until `stop`; the
/// thread returns how many succeeded.
fn stalling_client(target: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut connects = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // A thread each: a stalled connect blocks for its whole timeout.
            connects.push(std::thread::spawn(move || {
                TcpStream::connect_timeout(&target, Duration::from_millis(1500)).is_ok()
            }));
            std::thread::sleep(Duration::from_millis(50));
        }
        connects.into_iter().map(|c| c.join().unwrap_or(false)).filter(|ok| *ok).count()
    })
}

#[test]
fn connects_stalled_by_dropped_syns_are_measured_and_flagged() {
    if !enter("real_kernel::connects_stalled_by_dropped_syns_are_measured_and_flagged") {
        return;
    }
    let _server = listen("127.0.0.1:9000");
    // SYNs to the server are dropped, as a full NAT or a server's PAWS check drops them: a connect
    // sends its SYN again after 1 s and gives up (in the client) at 1.5 s. Nothing fails in the
    // kernel: only TCPSynRetrans counts.
    let rule = ["INPUT", "-p", "tcp", "--dport", "9000", "--syn", "-j", "DROP"];
    run("iptables", &[&["-A"], &rule[..]].concat());
    let stop = Arc::new(AtomicBool::new(false));
    let client = stalling_client("127.0.0.1:9000".parse().expect("address"), stop.clone());
    // Past the first retransmits, so that the sample sees as many as connects.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, report) = audit_json(&["--sample", "3s", "--fail-on", "never"]);
    stop.store(true, Ordering::Relaxed);
    let succeeded = client.join().expect("client");
    run("iptables", &[&["-D"], &rule[..]].concat());

    assert_eq!((code, succeeded), (0, 0), "every SYN was dropped");
    let rates = report.rates.as_ref().expect("rates with --sample");
    assert!(rates.syn_retransmits_per_sec > 0.0, "{rates:?}");
    // One retransmit per connect, at about 20 a second each.
    assert!(rates.active_opens_per_sec >= 10.0 && rates.syn_retransmits_per_sec >= 10.0, "{rates:?}");
    let f = report.one("tcp.syn-retransmits");
    assert_eq!(f.severity, "crit", "{}", f.message);
    assert_eq!(f.evidence["syn_retransmits_per_sec"].as_f64(), Some(rates.syn_retransmits_per_sec));
    assert_eq!(f.evidence["active_opens_per_sec"].as_f64(), Some(rates.active_opens_per_sec));
    assert!(f.message.contains("connects are stalling, not failing"), "{}", f.message);
    // The client is here, the dropped SYNs too: nothing of PAWS or a queue, and the answer is not a sysctl.
    assert!(f.message.contains("no PAWS rejection here"), "{}", f.message);
    assert!(f.key.is_none());
}
