//! Each built-in rule on hand-built inspections: when it fires, when it must not, and what it says.

use super::*;
use crate::model::records::TcpState;
use crate::testing::Host;

/// What the built-in rules find on a host.
trait Findings {
    fn findings(&self) -> Vec<Finding>;
}

impl Findings for Host {
    fn findings(&self) -> Vec<Finding> {
        evaluate(&self.inspection(), &Thresholds::default())
    }
}

/// A host with the kernel 6.18 defaults.
fn host() -> Host {
    Host::defaults()
}

fn ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.id.as_str()).collect()
}

fn only<'a>(findings: &'a [Finding], id: &str) -> &'a Finding {
    let matching: Vec<&Finding> = findings.iter().filter(|f| f.id == id).collect();
    assert_eq!(matching.len(), 1, "expected one {id} in {:?}", ids(findings));
    matching[0]
}

/// A small range so that tests reach the thresholds with few sockets: 100 ports.
fn small_range() -> Host {
    host().set(PORT_RANGE, "40000 40099")
}

#[test]
fn a_default_idle_host_has_no_findings() {
    assert_eq!(ids(&host().findings()), Vec::<&str>::new());
}

#[test]
fn bucket_usage_below_half_is_quiet() {
    let findings = small_range().outbound(49, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    assert!(!ids(&findings).contains(&"ports.bucket-exhaustion"), "{:?}", ids(&findings));
}

#[test]
fn bucket_at_half_warns_and_at_eighty_percent_is_critical() {
    let findings = small_range().outbound(50, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    let f = only(&findings, "ports.bucket-exhaustion");
    assert_eq!(f.severity, Severity::Warn);
    assert_eq!(f.evidence["usage_pct"], json!(50.0));
    assert_eq!(f.evidence["usable_ports"], json!(100));
    assert_eq!(f.evidence["remote"], json!("10.0.0.2:443"));
    assert!(f.message.contains("EADDRNOTAVAIL"), "{}", f.message);

    let findings = small_range().outbound(80, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    assert_eq!(only(&findings, "ports.bucket-exhaustion").severity, Severity::Crit);
}

#[test]
fn exhaustion_advice_puts_the_application_first_and_each_step_has_a_risk() {
    let findings = small_range().outbound(85, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    let f = only(&findings, "ports.bucket-exhaustion");
    let actions: Vec<&str> = f.advice.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions.len(), 4, "{actions:#?}");
    assert!(actions[0].starts_with("Reuse connections in the application"));
    assert!(actions[1].contains("IP_BIND_ADDRESS_NO_PORT"));
    assert!(actions[2].contains("ip_local_port_range"));
    assert!(actions[3].contains("tcp_tw_reuse=1"));
    assert!(f.advice.iter().all(|a| !a.risk.is_empty()));
    assert!(f.advice[3].risk.contains("timestamps"));
}

#[test]
fn exhaustion_advice_skips_tw_reuse_when_it_is_already_on() {
    let findings = small_range().set(TW_REUSE, "1").outbound(85, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    let f = only(&findings, "ports.bucket-exhaustion");
    assert_eq!(f.advice.len(), 3);
}

#[test]
fn usable_ports_exclude_reserved_ports_and_listeners_in_range() {
    let findings = small_range()
        .set(RESERVED_PORTS, "40090-40099")
        .socket(TcpState::Listen, "0.0.0.0:40080", "0.0.0.0:0")
        .outbound(45, TcpState::TimeWait, 40000, "10.0.0.2:443")
        .findings();
    // 45 of 100 would be quiet; 45 of 89 is over half.
    let f = only(&findings, "ports.bucket-exhaustion");
    assert_eq!(f.evidence["usable_ports"], json!(89));
}

#[test]
fn outbound_time_wait_pressure_recommends_tw_reuse_with_its_risks() {
    let findings = small_range().outbound(60, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    let f = only(&findings, "tw-reuse.outbound-pressure");
    assert_eq!(f.severity, Severity::Warn);
    assert_eq!(
        (f.key.as_deref(), f.current.as_deref(), f.recommended.as_deref()),
        (Some(TW_REUSE), Some("2"), Some("1"))
    );
    for needed in ["connect()", "timestamps", "middleboxes"] {
        assert!(f.risk.contains(needed), "risk lacks {needed}: {}", f.risk);
    }
    assert!(f.message.contains("application first"), "{}", f.message);
}

#[test]
fn no_tw_reuse_advice_when_live_connections_fill_the_bucket() {
    let findings = small_range().outbound(60, TcpState::Established, 40000, "10.0.0.2:443").findings();
    assert!(ids(&findings).contains(&"ports.bucket-exhaustion"));
    assert!(!ids(&findings).contains(&"tw-reuse.outbound-pressure"));
}

#[test]
fn no_tw_reuse_advice_when_it_is_already_one() {
    let findings = small_range().set(TW_REUSE, "1").outbound(60, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    assert!(!ids(&findings).contains(&"tw-reuse.outbound-pressure"));
}

#[test]
fn pressure_finding_says_timestamps_are_needed_when_they_are_off() {
    let findings =
        small_range().set(TIMESTAMPS, "0").outbound(60, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    let f = only(&findings, "tw-reuse.outbound-pressure");
    assert!(f.message.contains("tcp_timestamps, which is 0"), "{}", f.message);
}

#[test]
fn tw_reuse_without_timestamps_cannot_work() {
    let findings = host().set(TW_REUSE, "1").set(TIMESTAMPS, "0").findings();
    let f = only(&findings, "tw-reuse.needs-timestamps");
    assert_eq!(f.severity, Severity::Warn);
    assert_eq!((f.key.as_deref(), f.recommended.as_deref()), (Some(TIMESTAMPS), Some("1")));

    let findings = host().set(TIMESTAMPS, "0").findings();
    assert_eq!(only(&findings, "tw-reuse.needs-timestamps").severity, Severity::Info);

    let findings = host().set(TW_REUSE, "0").set(TIMESTAMPS, "0").findings();
    assert!(!ids(&findings).contains(&"tw-reuse.needs-timestamps"));
}

#[test]
fn mostly_inbound_time_wait_is_explained_and_never_answered_with_tw_reuse() {
    let findings =
        small_range().inbound_time_wait(500, 443).outbound(60, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    let f = only(&findings, "tw.mostly-inbound");
    assert_eq!(f.severity, Severity::Info);
    assert!(f.message.contains("tcp_tw_reuse does not help a server"), "{}", f.message);
    assert!(f.message.contains("no ephemeral ports"), "{}", f.message);
    assert_eq!(f.evidence["time_wait_inbound"], json!(500));
    assert!(
        !findings.iter().any(|f| f.key.as_deref() == Some(TW_REUSE) && f.recommended.as_deref() == Some("1")),
        "a server-side TIME_WAIT host was told to set tcp_tw_reuse=1: {:?}",
        ids(&findings)
    );
}

#[test]
fn a_few_inbound_time_wait_sockets_are_not_worth_a_remark() {
    let findings = host().inbound_time_wait(20, 443).findings();
    assert!(!ids(&findings).contains(&"tw.mostly-inbound"));
}

#[test]
fn lowered_fin_timeout_is_explained_as_not_time_wait() {
    let findings = host().set("net.ipv4.tcp_fin_timeout", "15").findings();
    let f = only(&findings, "fin-timeout.not-time-wait");
    assert_eq!(f.severity, Severity::Info);
    assert_eq!((f.current.as_deref(), f.recommended.as_deref()), (Some("15"), Some("60")));
    assert!(f.message.contains("FIN_WAIT2") && f.message.contains("60 s"), "{}", f.message);
    assert!(
        !host().set("net.ipv4.tcp_fin_timeout", "90").findings().iter().any(|f| f.id == "fin-timeout.not-time-wait")
    );
}

#[test]
fn tw_recycle_on_is_critical() {
    let findings = host().set("net.ipv4.tcp_tw_recycle", "1").findings();
    let f = only(&findings, "tw-recycle.enabled");
    assert_eq!(f.severity, Severity::Crit);
    assert_eq!(f.recommended.as_deref(), Some("0"));
    assert!(f.message.contains("NAT") && f.message.contains("4.12"), "{}", f.message);
    assert!(host().set("net.ipv4.tcp_tw_recycle", "0").findings().is_empty());
}

#[test]
fn time_wait_overflow_warns_and_recommends_a_larger_table() {
    let findings = host().counter("TCPTimeWaitOverflow", 200).findings();
    let f = only(&findings, "tw-buckets.overflow");
    assert_eq!(f.severity, Severity::Warn);
    assert_eq!(f.recommended.as_deref(), Some("262144"));
    assert_eq!(f.evidence["TCPTimeWaitOverflow"], json!(200));
    assert!(f.risk.contains("256 bytes"), "{}", f.risk);
}

#[test]
fn max_tw_buckets_below_the_kernel_default_warns() {
    let findings = host().set(MAX_TW_BUCKETS, "100").counter("TCPTimeWaitOverflow", 5).findings();
    assert_eq!(ids(&findings), vec!["tw-buckets.lowered"], "one finding, not two, for one key");
    let f = &findings[0];
    assert_eq!((f.current.as_deref(), f.recommended.as_deref()), (Some("100"), Some("131072")));
    assert!(f.message.contains("5 times"), "{}", f.message);
}

#[test]
fn a_container_namespace_shares_the_host_hash() {
    // tcp_ehash_entries < 0: the namespace shares the host's hash of that size.
    let findings = host().set("net.ipv4.tcp_ehash_entries", "-262144").set(MAX_TW_BUCKETS, "1000").findings();
    assert_eq!(only(&findings, "tw-buckets.lowered").recommended.as_deref(), Some("131072"));
}

#[test]
fn listening_ports_inside_the_range_should_be_reserved() {
    let findings = small_range()
        .set(RESERVED_PORTS, "8080")
        .socket(TcpState::Listen, "0.0.0.0:40050", "0.0.0.0:0")
        .socket(TcpState::Listen, "[::]:40060", "[::]:0")
        .socket(TcpState::Listen, "0.0.0.0:80", "0.0.0.0:0")
        .findings();
    let f = only(&findings, "ports.listener-in-range");
    assert_eq!(f.severity, Severity::Warn);
    assert!(f.message.contains("40050, 40060") && f.message.contains("EADDRINUSE"), "{}", f.message);
    assert_eq!(f.recommended.as_deref(), Some("8080,40050,40060"));
}

#[test]
fn port_range_shape_rules_are_informational() {
    let findings = host().set(PORT_RANGE, "1024 65534").findings();
    let parity = only(&findings, "port-range.same-parity");
    assert_eq!((parity.severity, parity.recommended.as_deref()), (Severity::Info, Some("1024 65533")));
    let nodeport = only(&findings, "port-range.nodeport-overlap");
    assert_eq!(nodeport.severity, Severity::Info);
    assert_eq!(nodeport.recommended.as_deref(), Some("30000-32767"));
    assert_eq!(nodeport.evidence["unreserved_overlap"], json!(2768));

    let reserved = host().set(PORT_RANGE, "1024 65535").set(RESERVED_PORTS, "30000-32767").findings();
    assert!(reserved.is_empty(), "{:?}", ids(&reserved));

    // Reserved ports outside the range do not count against the overlap (nor underflow it).
    let clear = host().set(RESERVED_PORTS, "30000-32767").findings();
    assert!(clear.is_empty(), "{:?}", ids(&clear));
    let partial = host().set(PORT_RANGE, "32000 60999").set(RESERVED_PORTS, "30000-32100").findings();
    assert_eq!(only(&partial, "port-range.nodeport-overlap").evidence["unreserved_overlap"], json!(667));

    let below = host().set(PORT_RANGE, "800 60999").findings();
    let f = only(&below, "port-range.below-unprivileged");
    assert_eq!((f.severity, f.recommended.as_deref()), (Severity::Info, Some("1024 60999")));
    // A range wholly below the start is flagged too, with no value that merely raises the low bound.
    let wholly = host().set(PORT_RANGE, "100 200").findings();
    assert_eq!(only(&wholly, "port-range.below-unprivileged").recommended, None);
}

#[test]
fn extreme_values_from_a_captured_tree_do_not_panic() {
    let findings = host()
        .set("net.ipv4.tcp_ehash_entries", &i64::MIN.to_string())
        .set(MAX_TW_BUCKETS, &i64::MAX.to_string())
        .counter("TCPTimeWaitOverflow", i64::MAX)
        .findings();
    assert!(ids(&findings).contains(&"tw-buckets.overflow"));
}

#[test]
fn before_linux_6_1_the_default_is_estimated_from_tcp_max_orphans() {
    let mut old = host().set(MAX_TW_BUCKETS, "1000").set("net.ipv4.tcp_max_orphans", "65536");
    old.settings.remove("net.ipv4.tcp_ehash_entries");
    let findings = old.findings();
    let f = only(&findings, "tw-buckets.lowered");
    assert_eq!(f.recommended.as_deref(), Some("65536"));
    assert!(f.message.contains("estimated from tcp_max_orphans"), "{}", f.message);
    assert_eq!(f.evidence["kernel_default_estimated"], json!(true));
}

#[test]
fn listen_overflows_point_at_somaxconn_and_the_application() {
    let findings = host().set("net.core.somaxconn", "128").counter("ListenOverflows", 17).findings();
    let f = only(&findings, "listen.overflows");
    assert_eq!(f.severity, Severity::Warn);
    assert_eq!((f.key.as_deref(), f.recommended.as_deref()), (Some("net.core.somaxconn"), Some("4096")));
    assert!(f.message.contains("listen() backlog"), "{}", f.message);

    let findings = host().counter("ListenOverflows", 17).findings();
    assert_eq!(only(&findings, "listen.overflows").recommended, None, "4096 is already the default");
}

#[test]
fn findings_come_most_severe_first() {
    let findings = small_range()
        .set("net.ipv4.tcp_fin_timeout", "10")
        .set("net.ipv4.tcp_tw_recycle", "1")
        .outbound(60, TcpState::TimeWait, 40000, "10.0.0.2:443")
        .findings();
    let severities: Vec<Severity> = findings.iter().map(|f| f.severity).collect();
    let mut sorted = severities.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(severities, sorted);
    // Two critical findings lead, by id: the 100-port pool, then tcp_tw_recycle.
    let first: Vec<&str> = findings.iter().take(2).map(|f| f.id.as_str()).collect();
    assert_eq!(first, vec!["ports.pool-too-small", "tw-recycle.enabled"]);
}

#[test]
fn absent_keys_produce_no_findings_and_no_panic() {
    let mut bare = host();
    bare.settings.values_mut().for_each(|v| *v = None);
    bare.counters.clear();
    assert!(bare.findings().is_empty());
}

/// `n` TIME_WAIT sockets `age_ms` old from consecutive ports of `local_ip` to `remote`.
fn aged_time_wait(mut host: Host, n: u16, local_ip: &str, remote: &str, age_ms: u32) -> Host {
    use crate::model::records::{Socket, TIME_WAIT_MS};
    for i in 0..n {
        let local = crate::testing::addr(&format!("{local_ip}:{}", 40000 + i));
        let socket = Socket::new(TcpState::TimeWait, local, crate::testing::addr(remote));
        host.sockets.push(socket.expiring_in(TIME_WAIT_MS - age_ms));
    }
    host
}

/// A 1000-port range: the smallest pool no rule calls too small.
fn thousand_ports() -> Host {
    host().set(PORT_RANGE, "40000 40999")
}

#[test]
fn loopback_time_wait_that_reuse_takes_over_is_not_held() {
    // tcp_tw_reuse=2 (the default) over loopback: 900 TIME_WAIT older than the delay, 50 younger.
    let churn = aged_time_wait(thousand_ports(), 900, "127.0.0.1", "127.0.0.1:8080", 5000);
    let churn = aged_time_wait(churn, 50, "127.0.0.2", "127.0.0.1:8080", 200);
    let inspection = churn.inspection();
    let view: Vec<(&str, u32, u32, u32, u32)> = inspection
        .sockets
        .buckets
        .iter()
        .map(|b| (b.local_ip.as_str(), b.count, b.reusable, b.held, b.available))
        .collect();
    assert_eq!(view, vec![("127.0.0.2", 50, 0, 50, 950), ("127.0.0.1", 900, 900, 0, 1000)]);
    let findings = churn.findings();
    assert!(findings.iter().all(|f| f.id != "ports.bucket-exhaustion"), "{:?}", ids(&findings));
    assert!(findings.iter().all(|f| f.id != "tw-reuse.outbound-pressure"), "reuse already applies to loopback");
    // TIME_WAIT fills the bind() budget of 127.0.0.1, but nothing there binds: no bind() finding.
    assert!(findings.iter().all(|f| f.id != "ports.bind-exhaustion"), "{:?}", ids(&findings));

    // The same churn toward another host: tcp_tw_reuse=2 does not apply, every TIME_WAIT is held.
    let remote = aged_time_wait(thousand_ports(), 900, "10.0.0.1", "10.0.0.2:8080", 5000).findings();
    let f = only(&remote, "ports.bucket-exhaustion");
    assert_eq!(f.severity, Severity::Crit);
    assert!(f.message.contains("holds 900 of 1000 usable ephemeral ports"), "{}", f.message);
    assert!(f.advice.iter().any(|a| a.action.contains("tcp_tw_reuse=1")), "reuse=1 would take them over");
    only(&remote, "tw-reuse.outbound-pressure");
}

#[test]
fn a_full_bucket_says_connect_is_failing_now_and_rates_cannot_see_it() {
    let findings = thousand_ports().outbound(1000, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    let f = only(&findings, "ports.bucket-exhaustion");
    assert!(
        f.message.contains("0 left (100.0 % gone): connect() to it is failing now with EADDRNOTAVAIL"),
        "{}",
        f.message
    );
    assert!(f.message.contains("cannot show these failures"), "{}", f.message);
}

#[test]
fn binding_before_connect_exhausts_the_address_and_is_not_answered_with_tw_reuse() {
    // 500 connections to :9000 and 500 to :9001, each on a port of its own (bind before connect).
    let mut bound = thousand_ports().set("net.ipv4.tcp_tw_reuse", "0");
    for i in 0..1000u16 {
        let remote = if i < 500 { "10.0.0.2:9000" } else { "10.0.0.2:9001" };
        bound = bound.socket(TcpState::TimeWait, &format!("10.0.0.1:{}", 40000 + i), remote);
    }
    let findings = bound.findings();
    let bind = only(&findings, "ports.bind-exhaustion");
    assert_eq!(bind.severity, Severity::Crit);
    assert!(bind.message.contains("1000 of its 1000 ports for bind(addr, 0) in use"), "{}", bind.message);
    assert!(bind.message.contains("failing now with EADDRINUSE"), "{}", bind.message);
    assert!(bind.message.contains("probably bind before they connect"), "{}", bind.message);
    assert!(bind.advice[0].action.contains("IP_BIND_ADDRESS_NO_PORT"), "{:?}", bind.advice);
    assert!(bind.advice.iter().all(|a| !a.action.contains("tcp_tw_reuse")), "{:?}", bind.advice);
    for bucket in findings.iter().filter(|f| f.id == "ports.bucket-exhaustion") {
        assert!(bucket.message.contains("the bind() budget of 10.0.0.1 limits it"), "{}", bucket.message);
        assert!(bucket.advice.iter().all(|a| !a.action.contains("tcp_tw_reuse")), "{:?}", bucket.advice);
    }
    assert!(findings.iter().all(|f| f.id != "tw-reuse.outbound-pressure"), "{:?}", ids(&findings));
}

#[test]
fn too_small_a_pool_is_critical_and_an_empty_one_an_outage() {
    let narrow = host().set(PORT_RANGE, "30000 30599").findings();
    let f = only(&narrow, "ports.pool-too-small");
    assert_eq!(f.severity, Severity::Crit);
    assert!(f.message.contains("600 ports - 0 reserved - 0 listening = 600 usable"), "{}", f.message);
    assert!(f.message.contains("about 10 new connections per second"), "{}", f.message);
    assert_eq!(f.recommended.as_deref(), Some("32768 60999"));
    // Reserving the NodePorts is not proposed: it would leave no port; moving the range is.
    let nodeport = only(&narrow, "port-range.nodeport-overlap");
    assert_eq!((nodeport.key.as_deref(), nodeport.recommended.as_deref()), (Some(PORT_RANGE), Some("32768 60999")));
    assert!(nodeport.message.contains("would leave only 0 usable ports"), "{}", nodeport.message);

    let empty = host().set(PORT_RANGE, "30000 30599").set(RESERVED_PORTS, "30000-32767").findings();
    let f = only(&empty, "ports.pool-too-small");
    assert!(
        f.message.contains("= 0 usable") && f.message.contains("every connect() without bind() fails"),
        "{}",
        f.message
    );
    assert!(thousand_ports().findings().iter().all(|f| f.id != "ports.pool-too-small"));
}

#[test]
fn reserving_the_nodeports_is_proposed_only_when_enough_ports_stay() {
    let wide = host().set(PORT_RANGE, "10000 65535").findings();
    let f = only(&wide, "port-range.nodeport-overlap");
    assert_eq!((f.key.as_deref(), f.recommended.as_deref()), (Some(RESERVED_PORTS), Some("30000-32767")));
    let mostly_nodeports = host().set(PORT_RANGE, "30000 33499").findings();
    let f = only(&mostly_nodeports, "port-range.nodeport-overlap");
    // 3500 ports, 2768 of them NodePorts: 732 would be left; above them 32768-33499 is too small too.
    assert_eq!((f.key.as_deref(), f.recommended.as_deref()), (Some(PORT_RANGE), Some("32768 60999")));
}

#[test]
fn a_bucket_running_out_soon_carries_its_own_remedies() {
    let host = thousand_ports().outbound(100, TcpState::Established, 40000, "10.0.0.2:443");
    let mut inspection = host.inspection();
    inspection.sockets.buckets[0].growth_per_sec = Some(10.0);
    inspection.sockets.buckets[0].seconds_to_exhaustion = Some(90.0);
    inspection.sockets.buckets[0].forecast = Some(crate::model::forecast::Forecast {
        closes_per_sec: 20.0,
        window_seconds: 30.0,
        live_growth_per_sec: 0.0,
        level: 1300,
        room: 1000,
        seconds_to_exhaustion: Some(90.0),
    });
    let findings = evaluate(&inspection, &Thresholds::default());
    let f = only(&findings, "ports.bucket-exhaustion-soon");
    assert_eq!(f.severity, Severity::Crit);
    assert!(findings.iter().all(|f| f.id != "ports.bucket-exhaustion"), "10 % full: not exhausted yet");
    assert!(f.advice[0].action.starts_with("Reuse connections in the application"), "{:?}", f.advice);
    assert!(
        f.message.contains("closes 20 connections a second")
            && f.message.contains("level off at about 1300 held ports of the 1000 it may hold: it runs out")
            && f.message.contains("runs out in about 90 s"),
        "{}",
        f.message
    );
    assert_eq!((f.evidence["level"].as_u64(), f.evidence["closes_per_sec"].as_f64()), (Some(1300), Some(20.0)));
}

#[test]
fn raising_a_range_to_the_unprivileged_start_keeps_the_pool() {
    let raise = |range: &str| {
        let findings = host().set(PORT_RANGE, range).findings();
        only(&findings, "port-range.below-unprivileged").recommended.clone()
    };
    // Enough ports stay above 1024: the low bound is raised.
    assert_eq!(raise("1000 60999").as_deref(), Some("1024 60999"));
    // 1000 ports from 1000: raising would leave 976, so the range moves up whole.
    assert_eq!(raise("1000 1999").as_deref(), Some("1024 2023"));
}

#[test]
fn a_client_whose_connect_chooses_its_ports_past_half_the_range_still_gets_reuse_advice() {
    // Two destinations, 600 TIME_WAIT each on the same even-first ports (connect() shares them): the
    // bind() budget of the address is fuller than either bucket, but nothing binds.
    let mut both = thousand_ports().set("net.ipv4.tcp_tw_reuse", "0");
    for remote in ["10.0.0.2:443", "10.0.0.3:443"] {
        for port in (40000..41000).step_by(2).chain((40001..40200).step_by(2)) {
            both = both.socket(TcpState::TimeWait, &format!("10.0.0.1:{port}"), remote);
        }
    }
    let findings = both.findings();
    assert!(findings.iter().all(|f| f.id != "ports.bind-exhaustion"), "{:?}", ids(&findings));
    only(&findings, "tw-reuse.outbound-pressure");
    let bucket = findings.iter().find(|f| f.id == "ports.bucket-exhaustion").expect("600 of 1000 held");
    assert!(bucket.advice.iter().any(|a| a.action.contains("tcp_tw_reuse=1")), "{:?}", bucket.advice);
}

/// A host whose one bucket (toward 10.0.0.2:443) was sampled with this churn and these owners.
fn churning(new_per_sec: f64, life: f64, share: f64, owners: Option<Vec<crate::model::records::Owner>>) -> Inspection {
    let mut inspection = host().outbound(100, TcpState::TimeWait, 40000, "10.0.0.2:443").inspection();
    let bucket = &mut inspection.sockets.buckets[0];
    bucket.churn = Some(crate::model::churn::Churn {
        new_per_sec,
        closed_here_per_sec: new_per_sec * share,
        closed_here_share: Some(share),
        mean_lifetime_seconds: Some(life),
    });
    bucket.owners = owners;
    inspection
}

fn owner(pid: u32, docker: bool) -> crate::model::records::Owner {
    let container =
        docker.then(|| crate::inspect::cgroup::from_path(&format!("/docker/{}", "ab".repeat(32)))).flatten();
    crate::model::records::Owner { pid, command: "curl".into(), container, sockets: 3, identity: None }
}

#[test]
fn many_short_connections_closed_here_are_flagged_with_their_owner() {
    let findings = evaluate(&churning(50.0, 0.05, 1.0, Some(vec![owner(4242, true)])), &Thresholds::default());
    let f = only(&findings, "conn.no-reuse");
    assert_eq!(f.severity, Severity::Warn);
    assert!(
        f.message.starts_with("process 4242 (curl) in docker abababababab opens at least 50 new connections"),
        "{}",
        f.message
    );
    assert!(f.message.contains("after 50 ms on average") && f.message.contains("about 3000 of them"), "{}", f.message);
    assert!(f.message.contains("each holding one of the 28232 ports"), "no reuse toward 10.0.0.2: {}", f.message);
    assert_eq!(f.evidence["owners"][0]["pid"], 4242);
    assert!(f.advice[0].action.starts_with("Reuse connections to 10.0.0.2:443"), "application fix first");
    let all: String = f.advice.iter().map(|a| a.action.as_str()).collect();
    for piece in
        ["MaxIdleConnsPerHost = 2", "30 is 30 ns", "proxy_set_header Connection", "http-reuse", "tcp_tw_reuse=1"]
    {
        assert!(all.contains(piece), "{piece}");
    }
    // Toward loopback, where tcp_tw_reuse=2 (the default) already applies, the kernel has nothing to add.
    let mut loopback = churning(50.0, 0.05, 1.0, Some(vec![owner(4242, false)]));
    loopback.sockets.buckets[0].reuse_applies = true;
    let findings = evaluate(&loopback, &Thresholds::default());
    let f = only(&findings, "conn.no-reuse");
    assert!(f.message.contains("may take over") && f.advice.iter().all(|a| !a.action.contains("tcp_tw_reuse=1")));
}

#[test]
fn churn_below_any_threshold_or_closed_by_the_peer_is_not_flagged() {
    for (rate, life, share) in [(19.0, 0.05, 1.0), (50.0, 1.0, 1.0), (50.0, 0.05, 0.4)] {
        let findings = evaluate(&churning(rate, life, share, Some(vec![owner(1, false)])), &Thresholds::default());
        assert!(findings.iter().all(|f| f.id != "conn.no-reuse"), "{rate}/s, {life} s, {share}: {:?}", ids(&findings));
    }
    let unsampled = host().outbound(100, TcpState::TimeWait, 40000, "10.0.0.2:443").findings();
    assert!(unsampled.iter().all(|f| f.id != "conn.no-reuse"), "needs --sample");
}

#[test]
fn an_owner_not_seen_or_not_looked_up_is_said_so() {
    let unseen = evaluate(&churning(50.0, 0.01, 1.0, Some(Vec::new())), &Thresholds::default());
    assert!(only(&unseen, "conn.no-reuse").message.contains("not live at any read"));
    let unknown = evaluate(&churning(50.0, 0.01, 1.0, None), &Thresholds::default());
    assert!(only(&unknown, "conn.no-reuse").message.contains("run as root"));
}

/// A namespace whose connection tracking holds `count` of `max` entries, with these statistics and
/// source-NAT buckets.
fn tracked(
    count: u64,
    max: u64,
    statistics: &[(&str, u64)],
    buckets: Vec<crate::model::nat::SnatBucket>,
) -> Inspection {
    use crate::inspect::conntrack::Conntrack;
    use crate::model::nat::{FlowSummary, NatRange};
    let mut inspection = host().inspection();
    inspection.conntrack = Some(Conntrack {
        count: Some(count),
        max: Some(max),
        statistics: statistics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        tcp_timeouts: [("time_wait".to_string(), 120)].into_iter().collect(),
        nat_range: NatRange::DEFAULT,
        nat_range_source: "the kernel's default".into(),
        nat_rules: Vec::new(),
        statistics_growth: None,
        table: Some(FlowSummary {
            entries: count,
            tcp_states: Default::default(),
            snat_bucket_count: buckets.len(),
            snat_buckets: buckets,
            untracked_buckets: 0,
            eviction: Default::default(),
        }),
        table_unavailable: None,
    });
    inspection
}

fn snat(count: u32, time_wait: u32, usable: u32) -> crate::model::nat::SnatBucket {
    use crate::model::eviction::{Pool, admission};
    let pool = Pool { usable, held: count - time_wait, closed: time_wait, tcp: true };
    let admitted = admission(pool, Some(crate::sysctl::KernelVersion::new(6, 18)));
    let available = admitted.admitted;
    crate::model::nat::SnatBucket {
        source_ip: "10.2.0.1".into(),
        remote: "10.2.0.2:80".into(),
        protocol: "tcp",
        count,
        time_wait,
        held: count - time_wait,
        usable_ports: usable,
        free: pool.free(),
        available,
        by_eviction: admitted.evicted,
        first_syn_dropped_pct: admitted.first_syn_dropped_pct,
        reclaimable: time_wait,
        usage_pct: f64::from(usable - available) * 100.0 / f64::from(usable),
        nat_range: crate::model::nat::NatRange::DEFAULT,
        nat_rule: "iptables-nft ip nat POSTROUTING handle 2: MASQUERADE".into(),
    }
}

#[test]
fn a_conntrack_table_is_judged_against_its_limit_and_its_drops() {
    let find =
        |i: &Inspection| evaluate(i, &Thresholds::default()).into_iter().find(|f| f.id == "conntrack.table-full");
    assert!(find(&tracked(79_000, 100_000, &[], vec![])).is_none());
    assert_eq!(find(&tracked(80_000, 100_000, &[], vec![])).map(|f| f.severity), Some(Severity::Warn));
    assert_eq!(find(&tracked(95_000, 100_000, &[], vec![])).map(|f| f.severity), Some(Severity::Crit));
    let dropped = find(&tracked(10, 100_000, &[("early_drop", 3)], vec![])).expect("drops since boot");
    assert_eq!(dropped.severity, Severity::Crit);
    assert!(
        dropped.message.contains("3 entries evicted early") && dropped.message.contains("since boot"),
        "{}",
        dropped.message
    );
    // A NAT clash counts in drop and insert_failed both: not a full table. No limit (0): never full.
    assert!(find(&tracked(10, 100_000, &[("drop", 4), ("insert_failed", 4)], vec![])).is_none());
    assert!(find(&tracked(10, 100_000, &[("drop", 5), ("insert_failed", 4)], vec![])).is_some());
    assert!(find(&tracked(1_000_000, 0, &[("early_drop", 3)], vec![])).is_none());
    // Sampled: only growth during the interval counts.
    let mut sampled = tracked(10, 100_000, &[("early_drop", 3)], vec![]);
    sampled.conntrack.as_mut().expect("ct").statistics_growth =
        Some([("early_drop".to_string(), 0)].into_iter().collect());
    assert!(find(&sampled).is_none(), "old drops, none now");
}

#[test]
fn insertions_lost_say_since_when_and_give_random_fully_first() {
    let since_boot = evaluate(&tracked(10, 1000, &[("insert_failed", 7)], vec![]), &Thresholds::default());
    let f = only(&since_boot, "conntrack.insert-failed");
    assert_eq!(f.severity, Severity::Info);
    assert!(f.advice[0].action.contains("--random-fully"));
    let mut sampled = tracked(10, 1000, &[("insert_failed", 7)], vec![]);
    sampled.conntrack.as_mut().expect("ct").statistics_growth =
        Some([("insert_failed".to_string(), 2)].into_iter().collect());
    let now = evaluate(&sampled, &Thresholds::default());
    assert_eq!(only(&now, "conntrack.insert-failed").severity, Severity::Warn);
    assert!(
        evaluate(&tracked(10, 1000, &[], vec![]), &Thresholds::default())
            .iter()
            .all(|f| f.id != "conntrack.insert-failed")
    );
}

#[test]
fn a_nat_bucket_near_its_pool_and_conntrack_time_wait_longer_than_tcp() {
    // 90 live of 100: a warning while the 10 free ports let new flows through; critical at 100.
    let findings = evaluate(&tracked(90, 1000, &[], vec![snat(90, 0, 100)]), &Thresholds::default());
    let f = only(&findings, "snat.bucket-exhaustion");
    assert_eq!(f.severity, Severity::Warn, "90 % used, flows still get through");
    let out = evaluate(&tracked(100, 1000, &[], vec![snat(100, 0, 100)]), &Thresholds::default());
    assert_eq!(only(&out, "snat.bucket-exhaustion").severity, Severity::Crit, "no new flow gets through");
    assert!(f.message.contains("100 ports, 10 of them free; it admits about 10 more flows"), "{}", f.message);
    assert!(f.advice[0].action.starts_with("Reuse connections to 10.2.0.2:80"));
    assert!(findings.iter().all(|f| f.id != "snat.evicting-time-wait"), "nothing to evict");
    // 60 live and 30 in TIME_WAIT: the 10 free ports and most of the 30 get through, so no
    // critical; nor the eviction warning while a port is free.
    let findings = evaluate(&tracked(90, 1000, &[], vec![snat(90, 30, 100)]), &Thresholds::default());
    let f = only(&findings, "snat.bucket-exhaustion");
    assert_eq!(f.severity, Severity::Warn, "{}", f.message);
    assert!(f.message.contains("by evicting TIME_WAIT entries (snat.evicting-time-wait)"), "{}", f.message);
    assert!(findings.iter().all(|f| f.id != "snat.evicting-time-wait"), "a port is free");
    let longer = only(&findings, "conntrack.timewait-longer-than-tcp");
    assert_eq!((longer.recommended.as_deref(), longer.evidence["natted_time_wait"].as_u64()), (Some("60"), Some(30)));
    // No port free: admission relies on evicting, a warning of its own with its cost.
    let full = evaluate(&tracked(100, 1000, &[], vec![snat(100, 40, 100)]), &Thresholds::default());
    let evicting = only(&full, "snat.evicting-time-wait");
    assert_eq!(evicting.severity, Severity::Warn);
    assert!(evicting.message.contains("drops the first SYN of about") && evicting.message.contains("1 s or more"));
    let dropped = evicting.evidence["first_syn_dropped_pct"].as_f64().expect("a share");
    assert!(dropped > 0.0 && dropped < 100.0, "{dropped}");
    assert_ne!(only(&full, "snat.bucket-exhaustion").severity, Severity::Crit, "flows still get through");
    let quiet = evaluate(&tracked(10, 1000, &[], vec![snat(10, 0, 100)]), &Thresholds::default());
    assert!(
        quiet.iter().all(|f| f.id != "snat.bucket-exhaustion" && f.id != "conntrack.timewait-longer-than-tcp"),
        "{:?}",
        ids(&quiet)
    );
}

#[test]
fn paws_rejections_of_a_server_time_wait_are_explained() {
    let findings = host().counter("PAWSTimewait", 156).findings();
    let f = only(&findings, "tcp.paws-timewait");
    assert!(f.message.contains("156 segments, mostly SYNs") && f.risk.contains("do not"), "{}", f.message);
    assert!(host().counter("PAWSTimewait", 0).findings().iter().all(|f| f.id != "tcp.paws-timewait"));
    let mut sampled = host().counter("PAWSTimewait", 156).inspection();
    sampled.counter_growth = Some([("PAWSTimewait".to_string(), 12)].into_iter().collect());
    let now = evaluate(&sampled, &Thresholds::default());
    let f = only(&now, "tcp.paws-timewait");
    assert_eq!(f.severity, Severity::Warn);
    assert!(f.message.starts_with("12 segments, mostly SYNs, were rejected during the sample"), "{}", f.message);
}

/// How long a bucket's closed connections lived over a window: `timed` closes, `short` of them
/// under a second, `typical` of them about `seconds`.
fn lived(inspection: &mut Inspection, timed: u32, short: f64, typical: Option<(f64, f64)>) {
    inspection.sockets.buckets[0].lifetimes = Some(crate::model::churn::Lifetimes {
        method: crate::model::churn::LifetimesMethod::Reads,
        closed_here: timed,
        timed,
        short_share: short,
        typical_seconds: typical.map(|(s, _)| s),
        typical_share: typical.map(|(_, share)| share),
    });
}

#[test]
fn a_client_closing_at_one_lifetime_is_told_a_timeout_and_named() {
    // The seed's client: 5 closes a second, each connection closed by this host at 2 s.
    let mut inspection = churning(5.0, 2.0, 1.0, Some(vec![owner(4242, true)]));
    lived(&mut inspection, 40, 0.0, Some((2.0, 0.95)));
    let findings = evaluate(&inspection, &Thresholds::default());
    let f = only(&findings, "conn.closed-at-timeout");
    assert!(
        f.message.starts_with("process 4242 (curl) in docker abababababab closes its connections to 10.0.0.2:443")
            && f.message.contains("after 2.0 s: 95 % of the 40 closes")
            && f.message.contains("request timeout that closes the connection instead of returning it to the pool"),
        "{}",
        f.message
    );
    assert!(f.advice[0].action.starts_with("Find what times out after 2.0 s"), "{:?}", f.advice);
    assert!(findings.iter().all(|f| f.id != "conn.no-reuse"), "2 s lifetimes are no request per connection");

    // The same rate through a pool: no close here, or lifetimes of no one value, or too few.
    for (timed, typical) in [(40, Some((2.0, 0.3))), (3, Some((2.0, 1.0))), (40, None)] {
        let mut pooled = churning(5.0, 30.0, 0.1, Some(vec![owner(7, false)]));
        lived(&mut pooled, timed, 0.0, typical);
        let findings = evaluate(&pooled, &Thresholds::default());
        assert!(findings.iter().all(|f| !f.id.starts_with("conn.")), "{timed} {typical:?}: {:?}", ids(&findings));
    }
}

#[test]
fn a_client_closing_after_one_request_says_so() {
    let mut inspection = churning(50.0, 0.05, 1.0, Some(vec![owner(4242, false)]));
    lived(&mut inspection, 200, 0.98, None);
    let findings = evaluate(&inspection, &Thresholds::default());
    let f = only(&findings, "conn.no-reuse");
    assert!(f.message.contains("It closes each connection after one request: 98 % of the 200 closes"), "{}", f.message);
    assert!(findings.iter().all(|f| f.id != "conn.closed-at-timeout"));
}
/// An owner identified as running `runtime` `version` with `libraries`.
fn identified(runtime: &'static str, version: &str, libraries: &[(&str, &str)]) -> crate::model::records::Owner {
    let libraries = libraries
        .iter()
        .map(|(name, v)| crate::model::records::Library {
            name: (*name).into(),
            version: Some((*v).into()),
            found_in: "build information",
        })
        .collect();
    let identity = crate::model::records::Identity {
        runtime,
        version: Some(version.into()),
        main_module: Some("example.com/api".into()),
        libraries,
        proxy_config: None,
        unknown: None,
    };
    crate::model::records::Owner { identity: Some(identity), ..owner(4242, false) }
}

#[test]
fn the_fix_for_the_library_and_version_found_comes_first_and_the_sysctl_last() {
    let fasthttp = identified("go", "go1.22.1", &[("github.com/valyala/fasthttp", "v1.59.0")]);
    let mut inspection = churning(5.0, 2.0, 1.0, Some(vec![fasthttp.clone()]));
    lived(&mut inspection, 40, 0.0, Some((2.0, 0.95)));
    let findings = evaluate(&inspection, &Thresholds::default());
    let f = only(&findings, "conn.closed-at-timeout");
    assert!(
        f.message.starts_with(
            "process 4242 (curl), running Go go1.22.1 with github.com/valyala/fasthttp v1.59.0, closes its connections"
        ),
        "{}",
        f.message
    );
    assert!(f.advice[0].action.contains("github.com/valyala/fasthttp v1.59.0: from v1.39.0"), "{:?}", f.advice);
    assert!(f.advice[0].action.contains("PR #1346"));
    assert!(f.advice[1].action.starts_with("Find what times out after 2.0 s"), "{:?}", f.advice);
    assert_eq!(f.evidence["owners"][0]["identity"]["libraries"][0]["version"], "v1.59.0");

    let requests = identified("python", "3.11", &[("requests", "2.32.3")]);
    let findings = evaluate(&churning(50.0, 0.05, 1.0, Some(vec![requests])), &Thresholds::default());
    let f = only(&findings, "conn.no-reuse");
    assert!(f.message.starts_with("process 4242 (curl), running Python 3.11 with requests 2.32.3, opens"));
    assert!(f.advice[0].action.contains("requests 2.32.3: requests.get()"), "{:?}", f.advice);
    assert!(f.advice[1].action.starts_with("Reuse connections to 10.0.0.2:443"));
    assert!(f.advice.last().is_some_and(|a| a.action.contains("tcp_tw_reuse=1")), "the sysctl comes last");
    // Not identified: the general advice, as before.
    let findings = evaluate(&churning(50.0, 0.05, 1.0, Some(vec![owner(4242, false)])), &Thresholds::default());
    assert!(only(&findings, "conn.no-reuse").advice[0].action.starts_with("Reuse connections"));
}

/// `inspection` as `--sample` saw it over `seconds`: its counters grew by `growth`.
fn sampled(mut inspection: Inspection, seconds: f64, growth: &[(&str, i64)]) -> Inspection {
    inspection.counter_growth = Some(growth.iter().map(|(name, n)| (name.to_string(), *n)).collect());
    inspection.sample_seconds = Some(seconds);
    inspection
}

/// The `tcp.syn-retransmits` finding of a sampled inspection, if any.
fn syn_finding(inspection: Inspection) -> Option<Finding> {
    evaluate(&inspection, &Thresholds::default()).into_iter().find(|f| f.id == "tcp.syn-retransmits")
}

#[test]
fn syn_retransmits_warn_from_a_tenth_of_the_connects_and_are_critical_from_half() {
    let over_2s =
        |syns: i64| syn_finding(sampled(host().inspection(), 2.0, &[("ActiveOpens", 100), ("TCPSynRetrans", syns)]));
    assert!(over_2s(9).is_none(), "9 % of the connects");
    let warn = over_2s(10).expect("10 %");
    assert_eq!(warn.severity, Severity::Warn);
    assert_eq!(
        (warn.evidence["syn_retransmits_per_sec"].as_f64(), warn.evidence["active_opens_per_sec"].as_f64()),
        (Some(5.0), Some(50.0))
    );
    assert_eq!((warn.evidence["share_pct"].as_f64(), warn.evidence["TCPSynRetrans"].as_i64()), (Some(10.0), Some(10)));
    assert!(
        warn.message
            .starts_with("5 SYNs a second were retransmitted during the sample, against 50 connects a second (10 %)"),
        "{}",
        warn.message
    );
    assert!(warn.message.contains("connects are stalling, not failing"), "{}", warn.message);
    assert!(warn.message.contains("waited a full second") && warn.message.contains("about two minutes"));
    assert!(warn.key.is_none(), "no sysctl cures it");
    let crit = over_2s(50).expect("50 %");
    assert_eq!(crit.severity, Severity::Crit);
    // Every connect stalled, and again: more retransmits than connects.
    assert_eq!(over_2s(300).map(|f| f.severity), Some(Severity::Crit));
}

#[test]
fn a_few_syn_retransmits_none_without_connects_and_none_without_a_sample_are_quiet() {
    let quiet = |seconds: f64, growth: &[(&str, i64)]| syn_finding(sampled(host().inspection(), seconds, growth));
    // 45 % of the connects, but under one a second (a lost SYN now and then), or only two.
    assert!(quiet(10.0, &[("ActiveOpens", 20), ("TCPSynRetrans", 9)]).is_none());
    assert!(quiet(1.0, &[("ActiveOpens", 4), ("TCPSynRetrans", 2)]).is_none());
    // No connect in the sample: a listener's SYN-ACKs, or connects older than the sample.
    assert!(quiet(2.0, &[("PassiveOpens", 100), ("TCPSynRetrans", 100)]).is_none());
    assert!(quiet(2.0, &[("TCPSynRetrans", 100)]).is_none());
    // Since boot only: counters say nothing of now.
    let unsampled = host().counter("ActiveOpens", 100).counter("TCPSynRetrans", 5000).findings();
    assert!(unsampled.iter().all(|f| f.id != "tcp.syn-retransmits"), "{:?}", ids(&unsampled));
}

#[test]
fn stalled_connects_point_at_the_fullest_nat_bucket_conntrack_losses_and_paws() {
    let mut natted = tracked(90, 1000, &[("insert_failed", 7)], vec![snat(90, 0, 100), snat(20, 0, 100)]);
    natted.conntrack.as_mut().expect("ct").statistics_growth =
        Some([("insert_failed".to_string(), 5), ("drop".to_string(), 5)].into_iter().collect());
    let growth = [("ActiveOpens", 60), ("TCPSynRetrans", 60), ("PAWSTimewait", 4), ("PAWSActive", 2)];
    let f = syn_finding(sampled(natted, 3.0, &growth)).expect("as many retransmits as connects");
    for piece in [
        "the fullest source-NAT bucket here, 10.2.0.1 -> 10.2.0.2:80 (tcp), uses 90.0 % of its ports: 10 free, about 10 more",
        "conntrack lost 5 insertions, dropped 5 packets of new flows",
        "4 SYNs were rejected by TIME_WAIT sockets of this namespace for their timestamps",
        "2 SYN-ACKs were refused by connects here",
        "a full accept queue on the peer drops SYNs out of sight of this namespace",
    ] {
        assert!(f.message.contains(piece), "lacks {piece:?}: {}", f.message);
    }
    let ct = &f.evidence["conntrack"];
    assert_eq!((ct["insert_failed"].as_u64(), ct["fullest_snat_bucket"]["usage_pct"].as_f64()), (Some(5), Some(90.0)));
    assert_eq!((f.evidence["PAWSTimewait"].as_i64(), f.evidence["PAWSActive"].as_i64()), (Some(4), Some(2)));
    assert!(f.advice[0].action.starts_with("Reuse connections"), "application first: {:?}", f.advice);
    assert!(f.advice[1].action.contains("--to-ports") && f.advice[1].action.contains("--to-source"));
    assert!(
        f.advice.last().is_some_and(|a| a.action.starts_with("Then settings") && a.action.contains("tcp_syn_retries"))
    );
    assert!(f.advice.iter().all(|a| !a.risk.is_empty()));

    // No conntrack here, an old kernel, a listener here whose queue overflowed and that accepts too.
    let old = host().kernel(Some(crate::sysctl::KernelVersion::new(6, 1))).inspection();
    let growth = [("ActiveOpens", 40), ("TCPSynRetrans", 10), ("PassiveOpens", 40), ("ListenOverflows", 3)];
    let f = syn_finding(sampled(old, 2.0, &growth)).expect("25 %");
    assert_eq!((f.severity, f.evidence["conntrack"].is_null()), (Severity::Warn, true));
    for piece in [
        "no connection tracking in this namespace",
        "a pod's is the node's",
        "counts them on the server (tcp.paws-timewait there)",
        "3 SYNs or handshakes were dropped by full accept queues of listeners here",
        "each next one waits twice as long",
        "also counts the SYN-ACKs this namespace's listeners send again",
    ] {
        assert!(f.message.contains(piece), "lacks {piece:?}: {}", f.message);
    }
}
