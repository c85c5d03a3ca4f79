//! Parsing, validation, resolution and judging of profiles, on text held in the tests.

use std::collections::BTreeMap;

use super::parse::parse_profile;
use super::*;
use crate::model::records::TcpState;
use crate::testing::Host;

fn parse(text: &str) -> Result<parse::ProfileFile, String> {
    parse_profile(text, "p.yaml", None).map_err(|e| e.to_string())
}

fn setting(yaml: &str) -> Setting {
    let text = format!("name: t\ndescription: d\nsettings:\n  {yaml}");
    let mut file = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    file.settings.pop_first().expect("one setting").1
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings(pairs.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect::<BTreeMap<_, _>>())
}

#[test]
fn a_full_profile_parses() {
    let file = parse(
        "name: web\ndescription: Web servers\nextends: baseline\nnotes: [a note]\nthresholds:\n  port_warn_pct: 40\n\
         settings:\n  net.core.somaxconn:\n    min: 4096\n    why: w\n    risk: r\n    severity: crit\n\
         \x20 net.ipv4.tcp_tw_reuse_delay:\n    value: 1000\n    min_kernel: \"6.14\"\n    why: w\n    risk: r\n",
    )
    .expect("valid");
    assert_eq!(file.name, "web");
    assert_eq!(file.extends, Some(("baseline".to_string(), 3)));
    assert_eq!(file.thresholds.port_warn_pct, Some(40.0));
    assert_eq!(file.settings["net.core.somaxconn"].min, Some(parse::Bound::Int(4096)));
    assert_eq!(file.settings["net.core.somaxconn"].severity, crate::rules::Severity::Crit);
    assert_eq!(file.settings["net.ipv4.tcp_tw_reuse_delay"].severity, crate::rules::Severity::Warn);
}

/// Each invalid profile fails with a message naming the line and the problem.
#[test]
fn invalid_profiles_fail_with_precise_messages() {
    let cases: &[(&str, &str)] = &[
        ("name: \"t\ndescription: d\n", "p.yaml:1:7: unclosed quote"),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn:\n    valeu: 1\n",
            "p.yaml:5:5: unknown field `valeu`",
        ),
        ("name: t\ndescription: d\ncolour: red\n", "p.yaml:3:1: unknown field `colour`"),
        // Not a profile at all (`--profile /etc/shadow`): its text is not echoed.
        (
            "root:$6$secret:19000:0:99999:7:::\n",
            "p.yaml:1:1: not a profile: a top-level key is not a profile field, expected one of name, description, \
             extends, notes, thresholds, settings",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {value: 1, why: w, risk: r}\n  net.core.somaxconn: {value: 2, why: w, risk: r}\n",
            "p.yaml:5:3: duplicate key: net.core.somaxconn",
        ),
        ("name: t\n", "missing field `description`"),
        ("name: T!\ndescription: d\n", "p.yaml:1: name \"T!\" must be lower-case"),
        (
            "name: t\ndescription: d\nsettings:\n  net..ipv4.x: {value: 1, why: w, risk: r}\n",
            "p.yaml:4: net..ipv4.x: not a valid sysctl name",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net/ipv4/x: {value: 1, why: w, risk: r}\n",
            "not a valid sysctl name: use dots",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  kernel.panic: {value: 1, why: w, risk: r}\n",
            "only handles keys under net.",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.tcp_tw_reuse: {value: 3, why: w, risk: r}\n",
            "p.yaml:4: net.ipv4.tcp_tw_reuse: value: \"3\" is not an integer from 0 to 2",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.tcp_tw_reuse: {value: yes, why: w, risk: r}\n",
            "value: \"yes\" is not an integer",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.tcp_tw_reuse: {value: true, why: w, risk: r}\n",
            "a boolean is not a sysctl value",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {value: \"60999 32768\", why: w, risk: r}\n",
            "low bound 60999 is above high bound 32768",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {value: \"0 100\", why: w, risk: r}\n",
            "\"0\" is not a port between 1 and 65535",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {value: \"1 70000\", why: w, risk: r}\n",
            "\"70000\" is not a port",
        ),
        ("name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {why: w, risk: r}\n", "says nothing"),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {value: 1, min: 1, why: w, risk: r}\n",
            "value cannot be combined",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min: 10, max: 5, why: w, risk: r}\n",
            "min 10 is above max 5",
        ),
        ("name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min: 10, why: '', risk: r}\n", "why is empty"),
        ("name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min: 10, why: w}\n", "missing field `risk`"),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min: thirty, why: w, risk: r}\n",
            "\"thirty\" is not a bound",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min: default, why: w, risk: r}\n",
            "cannot compute the kernel default",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {min: 1024, why: w, risk: r}\n",
            "give one bound per field",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {min: [1, 2, 3], why: w, risk: r}\n",
            "this key has 2 fields, the bound lists 3",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {min_size: 1000, why: w, risk: r}\n",
            "min_size needs a recommend",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min_size: 1000, recommend: 5, why: w, risk: r}\n",
            "min_size applies to port ranges only",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {min_size: 30000, recommend: \"32768 60999\", why: w, risk: r}\n",
            "does not meet the setting itself (at least 30000 ports)",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_reserved_ports: {includes: \"5-2\", why: w, risk: r}\n",
            "includes: range \"5-2\" runs backwards",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.tcp_ehash_entries: {value: 1, why: w, risk: r}\n",
            "does not allow writing",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min: 1, min_kernel: six, why: w, risk: r}\n",
            "min_kernel \"six\" is not a version",
        ),
        (
            "name: t\ndescription: d\nthresholds:\n  port_warn_pct: 90\n  port_crit_pct: 80\n",
            "p.yaml:4: thresholds: port_warn_pct 90 is above port_crit_pct 80",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {value: \"500 60999\", why: w, risk: r}\n  net.ipv4.ip_unprivileged_port_start: {value: 1024, why: w, risk: r}\n",
            "the kernel refuses that",
        ),
        ("name: t\ndescription: d\n---\nname: u\ndescription: d\n", "a profile file holds one YAML document"),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {min: [0, 99999], why: w, risk: r}\n",
            "min: 0 is outside 1..65535",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.tcp_rmem: {max: [4096, 0, 8], why: w, risk: r}\n",
            "max: 0 is outside 1..",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {avoid: \"1-2\", why: w, risk: r}\n",
            "avoid applies to port ranges only",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {different_parity: true, why: w, risk: r}\n",
            "different_parity applies to port ranges only",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.ipv4.ip_local_port_range: {different_parity: true, recommend: \"1024 65534\", why: w, risk: r}\n",
            "does not meet the setting itself (bounds of different parity)",
        ),
        (
            "name: t\ndescription: d\nextends: ../../etc/passwd\n",
            "p.yaml:3: extends \"../../etc/passwd\": a profile name is",
        ),
        (
            "name: t\ndescription: d\nsettings:\n  net.core.somaxconn: {min: [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]], why: w, risk: r}\n",
            "p.yaml:4",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.contains(expected), "for\n{text}\nexpected {expected:?} in: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn values_are_kept_as_the_kernel_prints_them() {
    let s = setting("net.core.somaxconn: {value: \"04096\", why: w, risk: r}");
    assert_eq!(s.value.map(|t| t.0).as_deref(), Some("4096"));
    let s = setting("net.ipv4.ip_local_reserved_ports: {includes: \"32767,30000-32766\", why: w, risk: r}");
    assert_eq!(s.includes.map(|t| t.0).as_deref(), Some("30000-32767"));
}

#[test]
fn the_name_must_equal_the_file_stem_where_required() {
    let err = parse_profile("name: other\ndescription: d\n", "x.yaml", Some("mine")).expect_err("mismatch");
    assert_eq!(err.to_string(), "x.yaml:1: name \"other\" must equal the file name \"mine\"");
}

#[test]
fn exact_values_compare_after_whitespace_folding() {
    let s = setting("net.ipv4.ip_local_port_range: {value: \"10000   65535\", why: w, risk: r}");
    assert_eq!(check("net.ipv4.ip_local_port_range", &s, "10000\t65535\n", &Settings::default()), Verdict::Met);
    assert_eq!(
        check("net.ipv4.ip_local_port_range", &s, "32768\t60999", &Settings::default()),
        Verdict::Unmet { expected: "expected 10000 65535".into(), recommended: Some("10000 65535".into()) }
    );
}

#[test]
fn bounds_recommend_the_bound() {
    let s = setting("net.core.somaxconn: {min: 4096, max: 65535, why: w, risk: r}");
    let none = Settings::default();
    assert_eq!(check("net.core.somaxconn", &s, "4096", &none), Verdict::Met);
    assert_eq!(
        check("net.core.somaxconn", &s, "128", &none),
        Verdict::Unmet { expected: "at least 4096".into(), recommended: Some("4096".into()) }
    );
    assert_eq!(
        check("net.core.somaxconn", &s, "100000", &none),
        Verdict::Unmet { expected: "at most 65535".into(), recommended: Some("65535".into()) }
    );
}

#[test]
fn one_of_recommends_its_first_value_or_the_recommend() {
    let s = setting("net.ipv4.tcp_syncookies: {one_of: [1, 2], why: w, risk: r}");
    assert_eq!(check("net.ipv4.tcp_syncookies", &s, "2", &Settings::default()), Verdict::Met);
    match check("net.ipv4.tcp_syncookies", &s, "0", &Settings::default()) {
        Verdict::Unmet { recommended, .. } => assert_eq!(recommended.as_deref(), Some("1")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_field_bounds_and_min_size_on_a_port_range() {
    let s = setting(
        "net.ipv4.ip_local_port_range: {min: [1024, null], min_size: 50000, recommend: \"10000 65535\", why: w, risk: r}",
    );
    let none = Settings::default();
    assert_eq!(check("net.ipv4.ip_local_port_range", &s, "1024 65535", &none), Verdict::Met);
    assert_eq!(
        check("net.ipv4.ip_local_port_range", &s, "500 65535", &none),
        Verdict::Unmet { expected: "low at least 1024".into(), recommended: Some("10000 65535".into()) }
    );
    assert_eq!(
        check("net.ipv4.ip_local_port_range", &s, "32768 60999", &none),
        Verdict::Unmet { expected: "at least 50000 ports".into(), recommended: Some("10000 65535".into()) }
    );
    assert_eq!(describe("net.ipv4.ip_local_port_range", &s), "low at least 1024, at least 50000 ports");
}

#[test]
fn per_field_bounds_without_recommend_clamp_each_field() {
    let s = setting("net.ipv4.tcp_rmem: {min: [4096, 131072, 6291456], why: w, risk: r}");
    match check("net.ipv4.tcp_rmem", &s, "4096 87380 4194304", &Settings::default()) {
        Verdict::Unmet { expected, recommended } => {
            assert_eq!(expected, "default at least 131072");
            assert_eq!(recommended.as_deref(), Some("4096 131072 6291456"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn different_parity_and_avoid_on_a_port_range() {
    let key = "net.ipv4.ip_local_port_range";
    let parity = setting("net.ipv4.ip_local_port_range: {different_parity: true, why: w, risk: r}");
    assert_eq!(check(key, &parity, "32768 60999", &Settings::default()), Verdict::Met);
    assert!(matches!(check(key, &parity, "1024 65534", &Settings::default()), Verdict::Unmet { .. }));

    let avoid = setting("net.ipv4.ip_local_port_range: {avoid: \"30000-32767\", why: w, risk: r}");
    assert_eq!(check(key, &avoid, "32768 60999", &Settings::default()), Verdict::Met, "clear");
    assert_eq!(
        check(key, &avoid, "1024 65535", &Settings::default()),
        Verdict::Unmet {
            expected: "clear of 30000-32767 (2768 ports of the range are neither clear nor reserved)".into(),
            recommended: Some("32768 65535".into())
        }
    );
    let reserved = settings(&[("net.ipv4.ip_local_reserved_ports", "29000-33000")]);
    assert_eq!(check(key, &avoid, "1024 65535", &reserved), Verdict::Met, "overlap reserved");
    match check(key, &avoid, "1024 31000", &Settings::default()) {
        Verdict::Unmet { recommended, .. } => assert_eq!(recommended.as_deref(), Some("1024 29999")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn multi_line_why_becomes_a_one_line_message() {
    let profile = profile_with(
        "  net.core.somaxconn:\n    min: 4096\n    why: |\n      first line\n      second line\n    risk: |\n      r1\n      r2\n",
    );
    let host = inspection((6, 18), &[("net.core.somaxconn", "128")]);
    let (findings, _) = evaluate(&profile, &host);
    assert!(findings[0].message.ends_with("first line second line"), "{}", findings[0].message);
    assert_eq!(findings[0].risk, "r1 r2");
}

#[test]
fn includes_recommends_the_union() {
    let s = setting("net.ipv4.ip_local_reserved_ports: {includes: \"30000-32767\", why: w, risk: r}");
    let none = Settings::default();
    assert_eq!(check("net.ipv4.ip_local_reserved_ports", &s, "8080,29000-32767", &none), Verdict::Met);
    assert_eq!(
        check("net.ipv4.ip_local_reserved_ports", &s, "8080", &none),
        Verdict::Unmet { expected: "including 30000-32767".into(), recommended: Some("8080,30000-32767".into()) }
    );
    match check("net.ipv4.ip_local_reserved_ports", &s, "", &none) {
        Verdict::Unmet { recommended, .. } => assert_eq!(recommended.as_deref(), Some("30000-32767")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_bounds_use_the_namespace_hash_size() {
    let s = setting("net.ipv4.tcp_max_tw_buckets: {min: default, why: w, risk: r}");
    let host = settings(&[("net.ipv4.tcp_ehash_entries", "262144")]);
    assert_eq!(check("net.ipv4.tcp_max_tw_buckets", &s, "131072", &host), Verdict::Met);
    assert_eq!(
        check("net.ipv4.tcp_max_tw_buckets", &s, "50", &host),
        Verdict::Unmet { expected: "at least the kernel default 131072".into(), recommended: Some("131072".into()) }
    );
    assert!(matches!(check("net.ipv4.tcp_max_tw_buckets", &s, "50", &Settings::default()), Verdict::Unknown(_)));
}

fn profile_with(yaml_settings: &str) -> Profile {
    let file = parse(&format!("name: p\ndescription: d\nsettings:\n{yaml_settings}")).expect("valid");
    Profile {
        name: file.name.clone(),
        description: file.description.clone(),
        source: "test".into(),
        chain: vec![file.name.clone()],
        notes: Vec::new(),
        thresholds: file.thresholds,
        origin: file.settings.keys().map(|k| (k.clone(), "p".to_string())).collect(),
        settings: file.settings,
    }
}

fn inspection(kernel: (u32, u32), pairs: &[(&str, &str)]) -> Inspection {
    let host = Host::new().kernel(Some(KernelVersion::new(kernel.0, kernel.1)));
    let host = pairs.iter().fold(host, |host, (key, value)| host.set(key, value));
    host.socket(TcpState::Listen, "0.0.0.0:22", "0.0.0.0:0").inspection()
}

#[test]
fn evaluate_makes_one_finding_per_unmet_setting() {
    let profile = profile_with(
        "  net.core.somaxconn: {min: 4096, why: caps listen(), risk: memory, severity: crit}\n\
         \x20 net.ipv4.tcp_tw_reuse: {value: 1, why: reuse, risk: timestamps}\n",
    );
    let host = inspection((6, 18), &[("net.core.somaxconn", "128"), ("net.ipv4.tcp_tw_reuse", "1")]);
    let (findings, warnings) = evaluate(&profile, &host);
    assert!(warnings.is_empty(), "{warnings:?}");
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, vec!["profile.net.core.somaxconn", "persist.not-persisted"]);
    let kept = &findings[1];
    assert_eq!((kept.key.as_deref(), kept.recommended.as_deref()), (Some("net.ipv4.tcp_tw_reuse"), Some("1")));
    assert!(kept.message.contains("the next boot resets it to the kernel default \"2\""), "{}", kept.message);
    let f = &findings[0];
    assert_eq!(f.id, "profile.net.core.somaxconn");
    assert_eq!(f.severity, crate::rules::Severity::Crit);
    assert_eq!((f.current.as_deref(), f.recommended.as_deref()), (Some("128"), Some("4096")));
    assert_eq!(f.message, "net.core.somaxconn is 128; profile p expects at least 4096: caps listen()");
    assert_eq!(f.risk, "memory");
    assert_eq!(f.evidence["profile"], "p");
    assert_eq!(f.evidence["unmet"], "at least 4096");
}

#[test]
fn not_persisted_outside_the_initial_namespace_says_it_concerns_the_hosts() {
    let profile = profile_with("  net.ipv4.tcp_tw_reuse: {value: 1, why: reuse, risk: timestamps}\n");
    let not_persisted = |initial: Option<bool>| {
        let mut host = inspection((6, 18), &[("net.ipv4.tcp_tw_reuse", "1")]);
        host.initial_namespace = initial;
        let (findings, _) = evaluate(&profile, &host);
        findings.into_iter().find(|f| f.id == "persist.not-persisted").expect("not persisted")
    };
    let today = "net.ipv4.tcp_tw_reuse is \"1\" now, as profile p expects, but no sysctl.d file sets it: the next \
                 boot resets it to the kernel default \"2\"";
    for initial in [Some(true), None] {
        let f = not_persisted(initial);
        assert_eq!(f.message, today, "{initial:?}");
        assert!(!f.evidence.contains_key("namespace"), "{initial:?}");
    }
    let f = not_persisted(Some(false));
    assert!(f.message.starts_with(today), "{}", f.message);
    assert!(
        f.message.ends_with(
            "; this network namespace is not the initial one, and the sysctl.d files set the host's initial \
             namespace at boot, not this one: this concerns the host's namespace"
        ),
        "{}",
        f.message
    );
    assert_eq!(f.evidence["namespace"], "not the initial network namespace");
    assert_eq!(f.evidence["boot"], "2");
}

#[test]
fn kernel_bounds_and_absent_keys() {
    let profile = profile_with(
        "  net.ipv4.tcp_tw_recycle: {value: 0, max_kernel: \"4.11\", why: w, risk: r}\n\
         \x20 net.ipv4.tcp_tw_reuse_delay: {value: 1000, min_kernel: \"6.14\", why: w, risk: r}\n\
         \x20 net.ipv4.tcp_max_orphans: {min: 4096, why: w, risk: r}\n",
    );
    // A 6.18 kernel: recycle is out of range, delay absent is odd, orphans absent in a container.
    let (findings, warnings) = evaluate(&profile, &inspection((6, 18), &[("net.ipv4.tcp_tw_reuse_delay", "5")]));
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].id, "profile.net.ipv4.tcp_tw_reuse_delay");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("net.ipv4.tcp_max_orphans is absent"), "{warnings:?}");
    // A 4.9 kernel with recycle on: the delay setting does not apply there.
    let (findings, warnings) = evaluate(
        &profile,
        &inspection((4, 9), &[("net.ipv4.tcp_tw_recycle", "1"), ("net.ipv4.tcp_max_orphans", "65536")]),
    );
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, vec!["profile.net.ipv4.tcp_tw_recycle"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn shipped_profiles_validate_and_resolve() {
    let catalog = catalog::Catalog::new(std::path::Path::new("/nonexistent-root"));
    let (listed, errors) = catalog.list();
    assert!(errors.is_empty(), "{errors:?}");
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, vec!["baseline", "inbound-heavy", "kubernetes-node", "outbound-heavy"]);
    for name in names {
        let profile = catalog.load(name).expect(name);
        assert!(!profile.settings.is_empty());
        for (key, setting) in &profile.settings {
            assert!(setting.why.len() > 40 && setting.risk.len() > 20, "{name} {key}: why and risk say something");
        }
        if name != "baseline" {
            assert_eq!(profile.chain, vec![name, "baseline"]);
            assert!(profile.settings.contains_key("net.ipv4.tcp_tw_recycle"), "{name} inherits baseline");
        }
        // The shown YAML is itself a valid profile with the same settings.
        let shown = parse_profile(&profile.to_yaml(), "shown.yaml", None).expect("show output parses");
        assert_eq!(shown.settings, profile.settings, "{name}");
    }
}

#[test]
fn inbound_heavy_leaves_tw_reuse_alone_and_outbound_heavy_sets_it() {
    let catalog = catalog::Catalog::new(std::path::Path::new("/nonexistent-root"));
    assert!(!catalog.load("inbound-heavy").expect("loads").settings.contains_key("net.ipv4.tcp_tw_reuse"));
    let outbound = catalog.load("outbound-heavy").expect("loads");
    assert_eq!(outbound.settings["net.ipv4.tcp_tw_reuse"].value.as_ref().map(|t| t.0.as_str()), Some("1"));
    let range = &outbound.settings["net.ipv4.ip_local_port_range"];
    let recommended = crate::ports::PortRange::parse(&range.recommend.as_ref().expect("recommend").0).expect("range");
    assert!(!recommended.same_parity(), "a wide range with bounds of different parity");
}

#[test]
fn a_host_set_to_a_shipped_profile_passes_it_with_no_finding_about_its_keys() {
    let catalog = catalog::Catalog::new(std::path::Path::new("/nonexistent-root"));
    for (name, _) in catalog::BUILT_IN {
        let profile = catalog.load(name).expect(name);
        // Start from the kernel defaults (6.18: tcp_tw_recycle is gone), then take every
        // recommendation the profile makes.
        let exists = |key: &str| spec_of(key).is_none_or(|s| s.exists_in(KernelVersion::new(6, 18)));
        let mut host = Host::defaults();
        for key in profile.settings.keys().filter(|k| exists(k)) {
            if let Some(default) = spec_of(key).and_then(|s| s.default)
                && !host.settings.contains_key(key)
            {
                host = host.set(key, default);
            }
        }
        for _ in 0..3 {
            let (findings, _) = evaluate(&profile, &host.inspection());
            for f in findings.iter().filter(|f| f.id.starts_with("profile.")) {
                let value = f.recommended.clone().unwrap_or_else(|| panic!("{name}: {} has no recommendation", f.id));
                host = host.set(f.key.as_deref().expect("key"), &value);
            }
        }
        // ... and persist them, as `twtune apply` would.
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("etc/sysctl.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let lines: String = profile
            .settings
            .keys()
            .filter(|k| exists(k))
            .filter_map(|k| host.settings.get(k).cloned().flatten().map(|v| format!("{k} = {v}\n")))
            .collect();
        std::fs::write(dir.join("90-twtune.conf"), lines).expect("write");
        let host = host.sysctl_d(root.path());

        let inspection = host.inspection();
        let (mut findings, _) = evaluate(&profile, &inspection);
        findings.extend(crate::rules::evaluate(&inspection, &profile.thresholds()));
        let about_its_keys: Vec<String> = findings
            .iter()
            .filter(|f| {
                f.key.as_deref().is_some_and(|k| profile.settings.contains_key(k))
                    || f.id.starts_with("port-range.")
                    || f.id == "ports.pool-too-small"
            })
            .map(|f| format!("{}: {}", f.id, f.message))
            .collect();
        assert!(about_its_keys.is_empty(), "{name}: {about_its_keys:#?}");
    }
}

#[test]
fn no_profile_recommends_port_settings_that_empty_the_pool() {
    // kubernetes-node keeps the range clear of the NodePorts; a narrow range inside them must not be
    // answered with a reservation of every port.
    let profile = profile_with(
        "  net.ipv4.ip_local_reserved_ports: {includes: \"30000-32767\", why: keep NodePorts free, risk: fewer ports}\n",
    );
    let host = Host::defaults().set("net.ipv4.ip_local_port_range", "30000 30599");
    let (findings, _) = evaluate(&profile, &host.inspection());
    let f = findings.iter().find(|f| f.id == "profile.net.ipv4.ip_local_reserved_ports").expect("unmet");
    assert_eq!(f.recommended, None);
    assert!(f.message.contains("only 0 ports of 30000 30599 would be usable"), "{}", f.message);
    assert!(f.message.contains("move ip_local_port_range"), "{}", f.message);
    // In a wide range the same reservation is fine.
    let wide = Host::defaults().set("net.ipv4.ip_local_port_range", "10000 65535");
    let (findings, _) = evaluate(&profile, &wide.inspection());
    let f = findings.iter().find(|f| f.id == "profile.net.ipv4.ip_local_reserved_ports").expect("unmet");
    assert_eq!(f.recommended.as_deref(), Some("30000-32767"));
}
