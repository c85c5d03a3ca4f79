//! Connection tracking and source NAT on the real kernel: a client namespace behind a NAT namespace
//! (MASQUERADE) in front of a server namespace, all made by the test in its private namespaces.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::netns::{enter, run};
use crate::util::twtune;

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/peers.py");

/// A peer process in a namespace of the topology, killed when dropped. `ip netns exec` execs the
/// peer: the child's pid is python's.
pub(crate) struct Peer(Child, pub(crate) String);

impl Peer {
    /// `peers.py ARGS` in namespace `ns` toward (or listening on) `host`; waits for its first line.
    pub(crate) fn start(ns: &str, host: &str, args: &[&str]) -> Peer {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", PEERS])
            .args(args)
            .env("PEER_HOST", host)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a peer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
        Peer(child, line.trim().to_string())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// client (10.1.0.2, fd01::2) -> nat (10.1.0.1 | 10.2.0.1, fd01::1 | fd02::1, MASQUERADE
/// `masquerade` out of its server side) -> server (10.2.0.2, fd02::2). Removed when dropped.
pub(crate) struct Topology;

impl Topology {
    pub(crate) fn new(masquerade: &[&str]) -> Topology {
        let topology = Topology::bare();
        let mut rule: Vec<&str> = "netns exec tw-nat iptables -t nat -A POSTROUTING -o tw-ns".split(' ').collect();
        if !masquerade.is_empty() {
            rule.extend_from_slice(&["-p", "tcp"]);
        }
        rule.extend_from_slice(&["-j", "MASQUERADE"]);
        rule.extend_from_slice(masquerade);
        run("ip", &rule);
        topology
    }

    /// The namespaces, routed, without a NAT rule.
    pub(crate) fn bare() -> Topology {
        std::fs::create_dir_all("/run/netns").expect("/run/netns");
        run("mount", &["-t", "tmpfs", "-o", "size=1m", "twtune-test", "/run/netns"]);
        for ns in ["tw-client", "tw-nat", "tw-server"] {
            run("ip", &["netns", "add", ns]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        run("ip", &["link", "add", "tw-c", "netns", "tw-client", "type", "veth", "peer", "tw-nc", "netns", "tw-nat"]);
        run("ip", &["link", "add", "tw-s", "netns", "tw-server", "type", "veth", "peer", "tw-ns", "netns", "tw-nat"]);
        for (ns, dev, addr) in [
            ("tw-client", "tw-c", "10.1.0.2/24"),
            ("tw-nat", "tw-nc", "10.1.0.1/24"),
            ("tw-nat", "tw-ns", "10.2.0.1/24"),
            ("tw-server", "tw-s", "10.2.0.2/24"),
        ] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        for (ns, dev, addr) in [
            ("tw-client", "tw-c", "fd01::2/64"),
            ("tw-nat", "tw-nc", "fd01::1/64"),
            ("tw-nat", "tw-ns", "fd02::1/64"),
            ("tw-server", "tw-s", "fd02::2/64"),
        ] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev, "nodad"]);
        }
        run("ip", &["-n", "tw-client", "route", "add", "default", "via", "10.1.0.1"]);
        run("ip", &["-n", "tw-client", "-6", "route", "add", "default", "via", "fd01::1"]);
        run("ip", &["netns", "exec", "tw-nat", "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        run("ip", &["netns", "exec", "tw-nat", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        Topology
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in ["tw-client", "tw-nat", "tw-server"] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

pub(crate) fn audit(args: &[&str]) -> Value {
    let out = twtune().args(["audit", "--format", "json", "--fail-on", "never"]).args(args).output().expect("run");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    crate::util::valid_json("audit", &out.stdout);
    report
}

fn conntrack_count(ns: &str) -> u64 {
    run("ip", &["netns", "exec", ns, "conntrack", "-C"]).trim().parse().expect("conntrack -C")
}

#[test]
fn a_narrowed_nat_range_admits_exactly_the_flows_twtune_says_are_available() {
    if !enter("conntrack::a_narrowed_nat_range_admits_exactly_the_flows_twtune_says_are_available") {
        return;
    }
    let _topology = Topology::new(&["--to-ports", "40000-40099"]);
    let _server = Peer::start("tw-server", "10.2.0.2", &["server", "80"]);
    let held = Peer::start("tw-client", "10.2.0.2", &["hold", "80", "40"]);

    let report = audit(&["--netns", "tw-nat"]);
    let ct = &report["conntrack"];
    assert_eq!(ct["nat_range"], serde_json::json!({"low": 40000, "high": 40099}), "{ct:#}");
    let source = ct["nat_range_source"].as_str().expect("source");
    assert!(source.contains("port range 40000-40099 (read from nf_tables"), "{source}");
    let table = ct;
    assert_eq!(table["entries"].as_u64(), Some(conntrack_count("tw-nat")), "{table:#}");
    assert_eq!(ct["count"].as_u64(), Some(conntrack_count("tw-nat")));
    let bucket = &table["snat_buckets"][0];
    assert_eq!((bucket["source_ip"].as_str(), bucket["remote"].as_str()), (Some("10.2.0.1"), Some("10.2.0.2:80")));
    assert_eq!((bucket["count"].as_u64(), bucket["held"].as_u64()), (Some(40), Some(40)), "{bucket:#}");
    let available = bucket["available"].as_u64().expect("available");
    assert_eq!(available, 60);
    // Judged by the iptables-nft rule, read from its compat target over netlink.
    let rule = bucket["nat_rule"].as_str().expect("nat_rule");
    assert!(
        rule.starts_with("iptables-nft ip nat POSTROUTING handle ") && rule.ends_with(": MASQUERADE to :40000-40099"),
        "{rule}"
    );

    // The differential: open flows until the NAT drops one.
    let fill = Peer::start("tw-client", "10.2.0.2", &["fill", "80"]);
    assert_eq!(fill.1.parse::<u64>().ok(), Some(available), "flows admitted vs twtune's available");
    let full = audit(&["--netns", "tw-nat"]);
    assert_eq!(full["conntrack"]["snat_buckets"][0]["available"], 0);
    let exhausted: Vec<&Value> =
        full["findings"].as_array().expect("findings").iter().filter(|f| f["id"] == "snat.bucket-exhaustion").collect();
    assert_eq!(exhausted.len(), 1, "{:#}", full["findings"]);
    assert_eq!(
        (exhausted[0]["severity"].as_str(), exhausted[0]["evidence"]["available"].as_u64()),
        (Some("crit"), Some(0))
    );

    // Closed by the clients: 100 entries in TIME_WAIT, which conntrack -L lists as twtune counts them.
    // A new flow gets one of their ports only by evicting it, by chance: none is available for sure.
    drop((fill, held));
    // Until the closes have crossed the NAT: no entry left but TIME_WAIT and CLOSE.
    let settled = || {
        let all = conntrack_count("tw-nat");
        let closed = ["TIME_WAIT", "CLOSE"]
            .iter()
            .map(|state| {
                run("ip", &["netns", "exec", "tw-nat", "conntrack", "-L", "-p", "tcp", "--state", state])
                    .lines()
                    .count() as u64
            })
            .sum::<u64>();
        all == closed
    };
    for _ in 0..100 {
        if settled() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let closed = audit(&["--netns", "tw-nat"]);
    let bucket = &closed["conntrack"]["snat_buckets"][0];
    let listed = |state: &str| {
        run("ip", &["netns", "exec", "tw-nat", "conntrack", "-L", "-p", "tcp", "--state", state]).lines().count() as u64
    };
    let states = &closed["conntrack"]["tcp_states"];
    let (time_wait, close) = (listed("TIME_WAIT"), listed("CLOSE"));
    assert_eq!(states["TIME_WAIT"].as_u64().unwrap_or(0), time_wait, "{states}");
    assert_eq!(states["CLOSE"].as_u64().unwrap_or(0), close, "{states}");
    assert_eq!(bucket["time_wait"].as_u64(), Some(time_wait + close), "{bucket:#}");
    assert_eq!((bucket["free"].as_u64(), bucket["reclaimable"].as_u64()), (Some(0), Some(100)), "{bucket:#}");
    // On 6.5 and later new flows evict them, by chance: nat_admission.rs measures how many.
    assert!(bucket["available"].as_u64().is_some_and(|n| n > 0) && bucket["available"] == bucket["by_eviction"]);
    let longer = closed["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "conntrack.timewait-longer-than-tcp");
    assert!(longer.is_some_and(|f| f["evidence"]["timeout"] == 120), "{:#}", closed["findings"]);
    let again = Peer::start("tw-client", "10.2.0.2", &["fill", "80"]);
    let admitted: u64 = again.1.parse().expect("count");
    assert!(admitted <= 100, "at most the reclaimable ones: {admitted}");
}

#[test]
fn statistics_and_timeouts_are_read_per_namespace_and_agree_with_conntrack_s() {
    if !enter("conntrack::statistics_and_timeouts_are_read_per_namespace_and_agree_with_conntrack_s") {
        return;
    }
    let _topology = Topology::new(&[]);
    let _server = Peer::start("tw-server", "10.2.0.2", &["server", "80"]);
    // Client churn through the NAT: 50 connections made and closed, then 5 held open.
    let _churned = Peer::start("tw-client", "10.2.0.2", &["closed", "80", "50"]);
    let held = Peer::start("tw-client", "10.2.0.2", &["hold", "80", "5"]);
    // Until every close has crossed the NAT: 50 in TIME_WAIT (or CLOSE), 5 established.
    let state = |state: &str| {
        run("ip", &["netns", "exec", "tw-nat", "conntrack", "-L", "-p", "tcp", "--state", state]).lines().count()
    };
    for _ in 0..100 {
        if state("TIME_WAIT") + state("CLOSE") == 50 && state("ESTABLISHED") == 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (_, report) = crate::util::audit_json(&["--netns", "tw-nat", "--fail-on", "never"]);
    let ct = report.conntrack.expect("conntrack is loaded");
    assert_eq!(ct.nat_range, crate::util::NatRange { low: 1024, high: 65535 });
    assert!(ct.nat_range_source.contains("no source-NAT rule sets a port range"), "{}", ct.nat_range_source);
    assert_eq!(ct.tcp_timeouts.get("time_wait"), Some(&120));
    assert!(ct.max.is_some_and(|max| max > 0), "the global limit is read");
    // conntrack -S: one line per CPU, `name=value` fields.
    let stats = run("ip", &["netns", "exec", "tw-nat", "conntrack", "-S"]);
    let mut sums = std::collections::BTreeMap::<String, u64>::new();
    for field in stats.split_whitespace().filter_map(|f| f.split_once('=')) {
        if let Ok(n) = field.1.parse::<u64>() {
            *sums.entry(field.0.to_string()).or_default() += n;
        }
    }
    for (ours, theirs) in [
        ("insert_failed", "insert_failed"),
        ("drop", "drop"),
        ("early_drop", "early_drop"),
        ("search_restart", "search_restart"),
    ] {
        assert_eq!(ct.statistics.get(ours), sums.get(theirs), "{ours}: {stats}");
    }
    let table = ct.dumped().expect("dumped");
    assert_eq!(table.entries, conntrack_count("tw-nat"));
    assert_eq!(ct.nat_rules.len(), 1, "{:?}", ct.nat_rules);
    let default = crate::util::NatRange { low: 1024, high: 65535 };
    for b in &table.snat_buckets {
        assert!(
            b.nat_range == default && b.nat_rule.ends_with("MASQUERADE (ports 1024-65535, the kernel's default)"),
            "{b:?}"
        );
    }
    let listed = |state: &str| {
        run("ip", &["netns", "exec", "tw-nat", "conntrack", "-L", "-p", "tcp", "--state", state]).lines().count() as u64
    };
    assert_eq!((table.snat_bucket_count, table.tcp_states.get("ESTABLISHED")), (1, Some(&5)));
    assert_eq!(table.tcp_states.get("TIME_WAIT").copied().unwrap_or(0), listed("TIME_WAIT"));
    let b = &table.snat_buckets[0];
    assert_eq!((b.source_ip.as_str(), b.remote.as_str(), b.protocol.as_str()), ("10.2.0.1", "10.2.0.2:80", "tcp"));
    assert_eq!((b.count, b.held, b.usable_ports), (55, 5, 64512), "the default range 1024-65535");
    assert_eq!(u64::from(b.time_wait), listed("TIME_WAIT") + listed("CLOSE"));
    assert_eq!((b.free, b.reclaimable), (64512 - 55, 50));
    // A pool this large is searched in at most 248 probes from random places: its last free ports
    // are not found.
    assert!(b.available < b.free + b.by_eviction && b.available > 60000, "{b:?}");
    assert!(b.first_syn_dropped_pct.is_none() || b.by_eviction > 0, "{b:?}");
    assert_eq!(ct.eviction.as_ref().map(|e| e["evicts"].clone()), Some(Value::from(true)));

    // Sampled: the statistics' growth over the interval, none here.
    let (_, sampled) = crate::util::audit_json(&["--netns", "tw-nat", "--sample", "500ms", "--fail-on", "never"]);
    let growth = sampled.conntrack.and_then(|ct| ct.statistics_growth).expect("growth with --sample");
    assert_eq!((growth.get("insert_failed"), growth.get("drop")), (Some(&0), Some(&0)), "{growth:?}");
    assert!(!growth.contains_key("entries"), "a count, not a counter");

    // The sweep reads conntrack in each namespace.
    let sweep =
        twtune().args(["audit", "--all-netns", "--format", "json", "--fail-on", "never"]).output().expect("run");
    let sweep: Value = serde_json::from_slice(&sweep.stdout).expect("JSON");
    crate::util::valid_json("audit-all-netns", &sweep.to_string().into_bytes());
    let nat = sweep["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|ns| ns["netns"]["name"] == "tw-nat")
        .expect("the NAT namespace is swept");
    assert_eq!(nat["report"]["conntrack"]["count"].as_u64(), Some(conntrack_count("tw-nat")));
    assert_eq!(nat["report"]["conntrack"]["snat_buckets"][0]["held"], 5);
    let longer = nat["report"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .any(|f| f["id"] == "conntrack.timewait-longer-than-tcp");
    assert!(longer, "50 NATed flows in TIME_WAIT for 120 s: {:#}", nat["report"]["findings"]);

    // In human form: the NAT's fullest source-NAT bucket, and the client's fullest bucket with the
    // process holding it.
    let nat = crate::namespaces::sweep_section("] tw-nat ==");
    let head = format!(
        "fullest SNAT bucket 10.2.0.1 -> 10.2.0.2:80 tcp: entries/usable 55/64512, {:.1} % used, {} left",
        b.usage_pct, b.available
    );
    assert!(nat.contains(&head), "{head}: {nat}");
    let detail = format!("5 live, 50 TIME_WAIT ({} of them evicted for new flows); judged by", b.by_eviction);
    assert!(nat.contains(&detail), "{detail}: {nat}");
    let client = crate::namespaces::sweep_section("] tw-client ==");
    assert!(client.contains("fullest bucket 10.1.0.2 -> 10.2.0.2:80: held/usable "), "{client}");
    assert!(client.contains(&format!("held by pid {} python3 5 sockets", held.0.id())), "{client}");
}

#[test]
fn a_nearly_full_table_and_lost_insertions_on_a_captured_root() {
    // nf_conntrack_max is global: a nearly full table is a captured tree, never the host's limit.
    let (status, report) =
        crate::util::audit_json(&["--root", crate::util::fixture("conntrack-full").to_str().expect("path")]);
    assert_eq!(status, 1);
    let full = report.one("conntrack.table-full");
    assert_eq!(full.severity, "crit", "63000 of 65536");
    assert_eq!(full.key.as_deref(), Some("net.netfilter.nf_conntrack_max"));
    assert_eq!(report.one("conntrack.insert-failed").evidence["insert_failed"], 5);
    assert_eq!(report.one("tcp.paws-timewait").evidence["PAWSTimewait"], 156);
    let ct = report.conntrack.expect("conntrack");
    assert_eq!((ct.count, ct.max), (Some(63000), Some(65536)));
    assert!(ct.dumped().is_none() && ct.table_unavailable.is_some_and(|why| why.contains("offline")));
}

#[test]
fn a_tree_without_conntrack_says_it_is_not_loaded() {
    let (_, report) = crate::util::audit_json(&["--root", crate::util::fixture("idle").to_str().expect("path")]);
    assert!(report.conntrack.is_none());
    let out = twtune().args(["audit", "--root"]).arg(crate::util::fixture("idle")).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nf_conntrack is not loaded here"));
}

/// `conntrack -S` summed over the CPUs, by field.
fn conntrack_stats(ns: &str) -> std::collections::BTreeMap<String, u64> {
    let mut sums = std::collections::BTreeMap::new();
    for field in
        run("ip", &["netns", "exec", ns, "conntrack", "-S"]).split_whitespace().filter_map(|f| f.split_once('='))
    {
        if let Ok(n) = field.1.parse::<u64>() {
            *sums.entry(field.0.to_string()).or_default() += n;
        }
    }
    sums
}

#[test]
fn a_service_address_and_its_backend_share_one_nat_pool() {
    if !enter("conntrack::a_service_address_and_its_backend_share_one_nat_pool") {
        return;
    }
    // kube-proxy's layout: a Service address (10.9.0.1) DNATed to its backend, and pods behind
    // MASQUERADE. The NAT checks ports against the backend, so both paths spend one pool.
    let _topology = Topology::new(&["--to-ports", "40000-40099"]);
    run(
        "ip",
        &[
            "netns",
            "exec",
            "tw-nat",
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            "10.9.0.1",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            "10.2.0.2:80",
        ],
    );
    let _server = Peer::start("tw-server", "10.2.0.2", &["server", "80"]);
    let _via_service = Peer::start("tw-client", "10.9.0.1", &["hold", "80", "20"]);
    let _direct = Peer::start("tw-client", "10.2.0.2", &["hold", "80", "20"]);
    let report = audit(&["--netns", "tw-nat"]);
    let table = &report["conntrack"];
    assert_eq!(table["snat_bucket_count"], 1, "{table:#}");
    let bucket = &table["snat_buckets"][0];
    assert_eq!((bucket["remote"].as_str(), bucket["count"].as_u64()), (Some("10.2.0.2:80"), Some(40)), "{bucket:#}");
    let available = bucket["available"].as_u64().expect("available");
    assert_eq!(available, 60);
    let fill = Peer::start("tw-client", "10.2.0.2", &["fill", "80"]);
    assert_eq!(fill.1.parse::<u64>().ok(), Some(available), "flows admitted to the backend vs twtune's available");

    // The exhausted NAT counted its failures; twtune's sums are conntrack -S's, field by field.
    let (_, typed) = crate::util::audit_json(&["--netns", "tw-nat", "--fail-on", "never"]);
    let ours = typed.conntrack.expect("conntrack").statistics;
    let theirs = conntrack_stats("tw-nat");
    for (name, other) in [
        ("insert_failed", "insert_failed"),
        ("drop", "drop"),
        ("early_drop", "early_drop"),
        ("search_restart", "search_restart"),
        ("clashres", "clash_resolve"),
        ("found", "found"),
        ("invalid", "invalid"),
    ] {
        assert_eq!(ours.get(name), theirs.get(other), "{name} / {other}: {theirs:?}");
    }
}
