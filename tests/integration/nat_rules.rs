//! Source-NAT rules read from nf_tables over netlink, on the real kernel: native nftables rules
//! (which `iptables-nft-save` does not show), iptables-nft's compat targets, IPv6, several rules
//! of different ranges and an snat to two addresses, each conntrack bucket judged by its own
//! rule. The client -> nat -> server topology is conntrack.rs's, in the test's private namespaces.

use serde_json::Value;

use crate::conntrack::{Peer, Topology, audit};
use crate::netns::{enter, run};

/// `nft -f` of `ruleset` in the NAT namespace.
pub(crate) fn nft(ruleset: &str) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), ruleset).expect("write the ruleset");
    run("ip", &["netns", "exec", "tw-nat", "nft", "-f", &file.path().to_string_lossy()]);
}

/// The NAT namespace's report's conntrack section.
fn conntrack() -> Value {
    audit(&["--netns", "tw-nat"])["conntrack"].clone()
}

/// The bucket toward `remote`.
fn bucket<'a>(ct: &'a Value, remote: &str) -> &'a Value {
    let buckets = ct["snat_buckets"].as_array().expect("buckets");
    buckets.iter().find(|b| b["remote"] == remote).unwrap_or_else(|| panic!("no bucket to {remote}: {ct:#}"))
}

fn counts(b: &Value) -> (u64, u64, f64) {
    (
        b["count"].as_u64().expect("count"),
        b["usable_ports"].as_u64().expect("usable"),
        b["usage_pct"].as_f64().expect("pct"),
    )
}

#[test]
fn a_native_nftables_masquerade_is_read_with_its_port_range() {
    if !enter("nat_rules::a_native_nftables_masquerade_is_read_with_its_port_range") {
        return;
    }
    let _topology = Topology::bare();
    nft("table ip t {\n chain post {\n  type nat hook postrouting priority srcnat;\n  \
         oifname \"tw-ns\" meta l4proto tcp masquerade to :40000-40099 random\n }\n}\n");
    // What iptables-nft-save printed for it: no rule at all.
    let saved = run("ip", &["netns", "exec", "tw-nat", "iptables-nft-save", "-t", "nat"]);
    assert!(!saved.contains("MASQUERADE"), "{saved}");
    let _server = Peer::start("tw-server", "10.2.0.2", &["server", "80"]);
    let _held = Peer::start("tw-client", "10.2.0.2", &["hold", "80", "40"]);
    let ct = conntrack();
    let rules = ct["nat_rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "{ct:#}");
    assert_eq!(
        (&rules[0]["origin"], &rules[0]["family"], &rules[0]["table"], &rules[0]["chain"], &rules[0]["flags"]),
        (
            &Value::from("nftables"),
            &Value::from("ip"),
            &Value::from("t"),
            &Value::from("post"),
            &serde_json::json!(["random"])
        )
    );
    let b = bucket(&ct, "10.2.0.2:80");
    assert_eq!((counts(b), &b["available"]), ((40, 100, 40.0), &Value::from(60)), "{b:#}");
    let rule = b["nat_rule"].as_str().expect("rule");
    assert!(
        rule.starts_with("nftables ip t post handle ") && rule.ends_with("masquerade to :40000-40099 random"),
        "{rule}"
    );
}

#[test]
fn two_masquerade_rules_of_different_ranges_each_judge_their_own_flows() {
    if !enter("nat_rules::two_masquerade_rules_of_different_ranges_each_judge_their_own_flows") {
        return;
    }
    let _topology = Topology::bare();
    for (port, range) in [("80", "40000-40999"), ("81", "50000-50099")] {
        let rule = format!(
            "netns exec tw-nat iptables -t nat -A POSTROUTING -o tw-ns -p tcp --dport {port} -j MASQUERADE --to-ports {range}"
        );
        run("ip", &rule.split(' ').collect::<Vec<_>>());
    }
    let _servers = [80, 81].map(|p| Peer::start("tw-server", "10.2.0.2", &["server", &p.to_string()]));
    let _held = Peer::start("tw-client", "10.2.0.2", &["hold", "80", "997"]);
    let _other = Peer::start("tw-client", "10.2.0.2", &["hold", "81", "50"]);
    let ct = conntrack();
    // The 1 000-port pool with 997 in use is 99.7 % full or more (it read 1.5 % of 64 512 when
    // every bucket was judged by one range): of its 3 free ports, a patient client gets 2 or 3, as
    // its 248-probe searches happen to meet them (the kernel gave 3, 3, 2, 2, 3 and 3 in six runs).
    let full = bucket(&ct, "10.2.0.2:80");
    let (count, usable, used) = counts(full);
    assert_eq!((count, usable, &full["free"]), (997, 1000, &serde_json::json!(3)), "{full:#}");
    assert!([99.7, 99.8].contains(&used), "{full:#}");
    assert_eq!(full["nat_range"], serde_json::json!({"low": 40000, "high": 40999}));
    let half = bucket(&ct, "10.2.0.2:81");
    assert_eq!(counts(half), (50, 100, 50.0), "{half:#}");
    assert!(half["nat_rule"].as_str().is_some_and(|r| r.ends_with("MASQUERADE to :50000-50099")), "{half:#}");
    let source = ct["nat_range_source"].as_str().expect("source");
    assert!(source.contains("each bucket's own rule") && source.contains("2 source-NAT rules"), "{source}");
}

#[test]
fn an_ipv6_masquerade_and_an_snat_to_two_addresses_are_read_and_judge_their_buckets() {
    if !enter("nat_rules::an_ipv6_masquerade_and_an_snat_to_two_addresses_are_read_and_judge_their_buckets") {
        return;
    }
    let _topology = Topology::bare();
    for address in ["10.2.0.10/24", "10.2.0.11/24"] {
        run("ip", &["-n", "tw-nat", "addr", "add", address, "dev", "tw-ns"]);
    }
    nft("table ip6 t6 {\n chain post {\n  type nat hook postrouting priority srcnat;\n  \
         oifname \"tw-ns\" meta l4proto tcp masquerade to :30000-30099\n }\n}\n\
         table inet t {\n chain post {\n  type nat hook postrouting priority srcnat;\n  \
         oifname \"tw-ns\" meta l4proto tcp snat ip to 10.2.0.10-10.2.0.11:45000-45019 persistent\n }\n}\n");
    let _server6 = Peer::start("tw-server", "fd02::2", &["server", "80"]);
    let _server4 = Peer::start("tw-server", "10.2.0.2", &["server", "80"]);
    let _held6 = Peer::start("tw-client", "fd02::2", &["hold", "80", "10"]);
    let _held4 = Peer::start("tw-client", "10.2.0.2", &["hold", "80", "15"]);
    let ct = conntrack();
    let v6 = bucket(&ct, "[fd02::2]:80");
    assert_eq!((v6["source_ip"].as_str(), counts(v6)), (Some("fd02::1"), (10, 100, 10.0)), "{v6:#}");
    assert!(v6["nat_rule"].as_str().is_some_and(|r| r.starts_with("nftables ip6 t6 post")), "{v6:#}");
    let v4 = bucket(&ct, "10.2.0.2:80");
    // The kernel picks one of the two addresses per client and destination: either has its own pool.
    assert!(["10.2.0.10", "10.2.0.11"].contains(&v4["source_ip"].as_str().unwrap_or("")), "{v4:#}");
    assert_eq!(counts(v4), (15, 20, 75.0), "{v4:#}");
    assert!(
        v4["nat_rule"].as_str().is_some_and(|r| r.ends_with("snat to 10.2.0.10-10.2.0.11:45000-45019 persistent")),
        "{v4:#}"
    );
    let snat = ct["nat_rules"].as_array().expect("rules").iter().find(|r| r["action"] == "snat").cloned();
    assert_eq!(snat.map(|r| r["addresses"].clone()), Some(serde_json::json!(["10.2.0.10", "10.2.0.11"])));
}
