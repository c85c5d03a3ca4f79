//! The netlink socket source, other network namespaces and sampling, on the real kernel.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use predicates::prelude::*;

use crate::netns::{enter, run, set_sysctl};
use crate::util::{Expect, Report, Run, audit_json, audit_json_unchecked, connections, valid_json};

/// Everything the two sources must agree on.
fn socket_view(report: &Report) -> String {
    let s = &report.sockets;
    let buckets: Vec<String> =
        s.buckets.iter().map(|b| format!("{} {} {} {}", b.local_ip, b.remote, b.count, b.time_wait)).collect();
    format!(
        "total={} states={:?} tw={:?} listening={:?} usable={} buckets={} {:?}",
        s.total, s.states, s.time_wait, s.listening_ports, s.ephemeral.usable_ports, s.bucket_count, buckets
    )
}

#[test]
fn netlink_and_proc_give_identical_results() {
    if !enter("netlink::netlink_and_proc_give_identical_results") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "0");
    set_sysctl("net.ipv4.ip_local_port_range", "40000 40999");
    let v4 = TcpListener::bind("127.0.0.1:8080").expect("listen");
    let v6 = TcpListener::bind("[::1]:8443").expect("listen");
    let inside = TcpListener::bind("0.0.0.0:40500").expect("listen in range");
    connections(&v4, 300, true);
    connections(&v6, 120, true);
    connections(&v4, 80, false);
    let _open: Vec<TcpStream> = (0..7).map(|_| TcpStream::connect("[::1]:8443").expect("connect")).collect();
    drop(inside);

    // The reads follow each other closely (TIME_WAIT ages past the reuse delay); checked after.
    let (_, netlink, netlink_text) = audit_json_unchecked(&["--socket-source", "netlink", "--top", "100"]);
    let (_, proc, proc_text) = audit_json_unchecked(&["--socket-source", "proc", "--top", "100"]);
    let (_, auto, auto_text) = audit_json_unchecked(&["--top", "100"]);
    [netlink_text, proc_text, auto_text].iter().for_each(|text| valid_json("audit", text.as_bytes()));
    assert_eq!(
        (netlink.sockets.source.as_str(), proc.sockets.source.as_str(), auto.sockets.source.as_str()),
        ("netlink", "proc", "netlink")
    );
    assert_eq!(socket_view(&netlink), socket_view(&proc));
    assert_eq!(netlink.sockets.time_wait.total, 500);
    assert_eq!((netlink.sockets.time_wait.outbound, netlink.sockets.time_wait.inbound), (420, 80));
    let ss_tw = run("ss", &["-Htan", "state", "time-wait"]).lines().count() as u64;
    assert_eq!(netlink.sockets.time_wait.total, ss_tw);
}

#[test]
fn the_ipv6_table_is_read_whenever_it_holds_a_socket() {
    if !enter("netlink::the_ipv6_table_is_read_whenever_it_holds_a_socket") {
        return;
    }
    // netlink skips the IPv6 dump only when the counts say there is no IPv6 socket. Here: IPv6
    // TIME_WAIT alone (no IPv6 socket in use, but more TIME_WAIT than the IPv4 dump holds), then
    // IPv4 alone, then one live IPv6 socket.
    let v6 = TcpListener::bind("[::1]:8443").expect("listen");
    connections(&v6, 40, true);
    drop(v6);
    let view = |expect_tw: u64| {
        let (_, netlink, netlink_text) = audit_json_unchecked(&["--socket-source", "netlink"]);
        let (_, proc, proc_text) = audit_json_unchecked(&["--socket-source", "proc"]);
        [netlink_text, proc_text].iter().for_each(|text| valid_json("audit", text.as_bytes()));
        assert_eq!(socket_view(&netlink), socket_view(&proc));
        assert_eq!(netlink.sockets.time_wait.total, expect_tw);
        netlink
    };
    assert_eq!(view(40).sockets.buckets[0].remote, "[::1]:8443");
    let v4 = TcpListener::bind("127.0.0.1:8080").expect("listen");
    connections(&v4, 10, true);
    view(50);
    let _live6 = TcpListener::bind("[::1]:9443").expect("listen");
    let report = view(50);
    assert!(report.sockets.listening_ports.contains(&9443), "{:?}", report.sockets.listening_ports);
}

#[test]
fn a_netns_name_is_not_a_path() {
    for name in ["../../proc/1/ns/net", "/proc/1/ns/net", ".."] {
        Run::new(&["audit", "--netns", name])
            .status(2)
            .stderr(format!(
                "twtune: --netns {name:?}: give the name of a namespace in /run/netns (as `ip netns list` shows), \
                 not a path\n"
            ))
            .run();
    }
}

#[test]
fn netlink_is_refused_for_a_root_tree() {
    Run::new(&["audit", "--socket-source", "netlink", "--root"])
        .arg(crate::util::fixture("idle"))
        .status(2)
        .stderr(
            "twtune: --socket-source netlink reads the live system; a --root tree has only /proc/net/tcp (use proc)\n",
        )
        .run();
}

#[test]
fn another_namespace_by_name_and_by_pid() {
    if !enter("netlink::another_namespace_by_name_and_by_pid") {
        return;
    }
    // `ip netns add` keeps its file under /run: give this mount namespace its own /run first.
    run("mount", &["-t", "tmpfs", "-o", "size=1m", "twtune-test", "/run"]);
    run("ip", &["netns", "add", "blue"]);
    run("ip", &["-n", "blue", "link", "set", "lo", "up"]);
    run("ip", &["netns", "exec", "blue", "sysctl", "-qw", "net.ipv4.tcp_fin_timeout=17"]);
    // Our own namespace differs: sockets here, another fin_timeout.
    set_sysctl("net.ipv4.tcp_fin_timeout", "33");
    let listener = TcpListener::bind("127.0.0.1:8080").expect("listen");
    connections(&listener, 40, true);

    let (_, own) = audit_json(&[]);
    assert_eq!(own.settings["net.ipv4.tcp_fin_timeout"].as_deref(), Some("33"));
    assert_eq!(own.sockets.time_wait.total, 40);
    for source in ["netlink", "proc"] {
        let (_, blue) = audit_json(&["--netns", "blue", "--socket-source", source]);
        assert_eq!(blue.settings["net.ipv4.tcp_fin_timeout"].as_deref(), Some("17"), "{source}: sysctls of the target");
        assert_eq!(blue.sockets.time_wait.total, 0, "{source}: sockets of the target");
        assert_eq!(blue.sockets.total, 0, "{source}");
        assert_eq!(blue.counters.get("ActiveOpens"), Some(&0), "{source}: counters of the target");
    }

    // A process in yet another namespace, by PID.
    let mut child = Command::new("unshare").args(["--net", "sleep", "30"]).spawn().expect("spawn");
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == std::fs::read_link("/proc/self/ns/net").ok() {
        assert!(Instant::now() < deadline, "the child never left our namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, other) = audit_json(&["--netns-pid", &pid]);
    assert_eq!(other.settings["net.ipv4.tcp_fin_timeout"].as_deref(), Some("60"), "a fresh namespace has defaults");
    assert_eq!(other.sockets.time_wait.total, 0);
    child.kill().expect("kill");
    let _ = child.wait();

    Run::new(&["audit", "--netns", "no-such-namespace"])
        .status(2)
        .stderr(Expect::satisfies("one line: cannot enter /run/netns/no-such-namespace", |s| {
            s.starts_with(
                "twtune: cannot enter the network namespace /run/netns/no-such-namespace: no such network namespace",
            ) && s.lines().count() == 1
        }))
        .run();
    let refused = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_twtune"))
        .args(["audit", "--netns", "blue"])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot enter the network namespace /run/netns/blue") && stderr.contains("needs root"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(refused.stdout.is_empty(), "{}", String::from_utf8_lossy(&refused.stdout));
}

#[test]
fn sampling_measures_rates_and_time_to_exhaustion() {
    if !enter("netlink::sampling_measures_rates_and_time_to_exhaustion") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "0");
    set_sysctl("net.ipv4.ip_local_port_range", "40000 41999");
    let listener = TcpListener::bind("127.0.0.1:8080").expect("listen");
    // A client that closes every connection, about 200 a second, while twtune samples.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker_stop = stop.clone();
    let worker = std::thread::spawn(move || {
        let mut made = 0;
        while !worker_stop.load(std::sync::atomic::Ordering::Relaxed) && made < 1500 {
            connections(&listener, 10, true);
            made += 10;
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let (code, report) = audit_json(&["--sample", "2s"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().expect("worker");

    let rates = report.rates.as_ref().expect("rates with --sample");
    assert!(rates.interval_seconds >= 2.0, "{rates:?}");
    assert!(rates.active_opens_per_sec > 50.0 && rates.time_wait_entries_per_sec > 50.0, "{rates:?}");
    assert_eq!(rates.overflow_per_sec, 0.0);
    let bucket = &report.sockets.buckets[0];
    assert_eq!(bucket.remote, "127.0.0.1:8080");
    let growth = bucket.growth_per_sec.expect("growth");
    let eta = bucket.seconds_to_exhaustion.expect("growing, so an estimate");
    assert!(growth > 50.0, "{growth}");
    assert!((eta - f64::from(bucket.usable_ports - bucket.count) / growth).abs() < 2.0, "{eta} vs growth {growth}");
    // 2000 ports at ~200/s: gone within minutes, so critical.
    let soon = report.one("ports.bucket-exhaustion-soon");
    assert_eq!(soon.severity, "crit");
    assert_eq!(code, 1);
    let (_, plain) = audit_json(&[]);
    assert!(plain.rates.is_none() && plain.sockets.buckets.iter().all(|b| b.seconds_to_exhaustion.is_none()));
    let rates = predicate::str::is_match(
        r"measured over 0\.\d s: [\d.]+ connects/s, [\d.]+ accepts/s, [\d.]+ TIME_WAIT entries/s, [\d.]+ reused/s, [\d.]+ overflows/s\n  SYN retransmits: [\d.]+/s \(TCPSynRetrans\)",
    )
    .expect("regex");
    // How full the bucket is depends on the timing above: --fail-on never keeps the status at 0.
    Run::new(&["audit", "--sample", "200ms", "--fail-on", "never"])
        .env("COLUMNS", "200")
        .stdout(Expect::satisfies("a human report with a rates line", move |s| rates.eval(s)))
        .run();
}
