//! `twtune profiles list|show|check` and `twtune audit --profile`: the invalid-profile corpus, the
//! order in which local profiles override built-in ones, `extends` chains, and audits against
//! profiles on fixture roots.

use std::path::{Path, PathBuf};

use crate::util::{Expect, Run, audit_json, fixture};

fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/profiles")
}

/// A root holding `etc/twtune/profiles.d` with these files.
fn root_with_profiles(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("etc/twtune/profiles.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write profile");
    }
    root
}

#[test]
fn every_invalid_profile_fails_with_its_expected_message() {
    let mut checked = 0;
    let dir = profiles_dir().join("invalid");
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let expected =
            text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("first line: # expect: ...");
        // The message names the file as given, then says what the first line expects.
        let message = format!("twtune: {}/{expected}", dir.display());
        Run::new(&["profiles", "check"]).arg(&path).status(2).stderr(Expect::one_line(&[&message])).run();
        checked += 1;
    }
    assert!(checked >= 15, "the corpus has {checked} files");
}

#[test]
fn check_accepts_valid_files_and_the_shipped_profiles() {
    let shipped: Vec<PathBuf> = ["baseline", "outbound-heavy", "inbound-heavy", "kubernetes-node"]
        .iter()
        .map(|n| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("profiles/{n}.yaml")))
        .collect();
    let team = profiles_dir().join("valid/team-clients.yaml");
    let out = Run::new(&["profiles", "check"])
        .args(&shipped)
        .arg(&team)
        .stdout(Expect::contains(&[
            &format!("{}: ok (team-clients <- outbound-heavy <- baseline, 7 settings)\n", team.display()),
            &format!("{}: ok (outbound-heavy <- baseline, 6 settings)\n", shipped[1].display()),
        ]))
        .run();
    assert_eq!(out.lines().count(), 5, "one line per file:\n{out}");
    assert!(out.lines().all(|l| l.contains(": ok (")), "{out}");
}

#[test]
fn check_reports_every_bad_file_and_exits_2() {
    let invalid = profiles_dir().join("invalid");
    let team = profiles_dir().join("valid/team-clients.yaml");
    Run::new(&["profiles", "check"])
        .arg(invalid.join("duplicate-key.yaml"))
        .arg(&team)
        .arg(invalid.join("wrong-type.yaml"))
        .status(2)
        .stdout(format!("{}: ok (team-clients <- outbound-heavy <- baseline, 7 settings)\n", team.display()))
        .stderr(format!(
            "twtune: {dir}/duplicate-key.yaml:9:3: duplicate key: net.ipv4.tcp_tw_reuse\n\
             twtune: {dir}/wrong-type.yaml:5: net.core.somaxconn: value: \"lots\" is not an integer of at least 0\n",
            dir = invalid.display()
        ))
        .run();
}

#[test]
fn list_shows_built_in_and_local_profiles() {
    let root = root_with_profiles(&[
        ("team.yaml", "name: team\ndescription: Our own\nextends: baseline\n"),
        ("baseline.yaml", "name: baseline\ndescription: Local baseline\n"),
    ]);
    // Wide enough for one line per profile (a temporary directory's path is long).
    let out = Run::new(&["profiles", "list", "--root"])
        .arg(root.path())
        .env("COLUMNS", "300")
        .stdout(Expect::satisfies("a list of profiles", |s| !s.is_empty()))
        .run();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("baseline         Local baseline (")
            && lines[0].ends_with("baseline.yaml (overrides built-in))"),
        "{out}"
    );
    assert!(lines[2].starts_with("kubernetes-node  ") && lines[2].ends_with("(built-in)"), "{out}");
    assert!(lines[4].starts_with("team             Our own ("), "{out}");
}

#[test]
fn list_and_show_as_json_for_programs() {
    let root = root_with_profiles(&[("team.yaml", "name: team\ndescription: Our own\nextends: outbound-heavy\n")]);
    // Run checks each document against docs/schema/profiles-list.json and profiles-show.json.
    let json = |args: &[&str]| -> serde_json::Value {
        let text =
            Run::new(args).arg("--root").arg(root.path()).stdout(Expect::satisfies("JSON", |s| !s.is_empty())).run();
        serde_json::from_str(&text).expect("one JSON object")
    };
    let list = json(&["profiles", "list", "--format", "json"]);
    assert_eq!(list["schema_version"], 1);
    let names: Vec<&str> =
        list["profiles"].as_array().expect("profiles").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["baseline", "inbound-heavy", "kubernetes-node", "outbound-heavy", "team"]);
    assert_eq!(list["profiles"][4]["description"], "Our own");
    let team = json(&["profiles", "show", "team", "--format", "json"]);
    assert_eq!(team["chain"], serde_json::json!(["team", "outbound-heavy", "baseline"]));
    let reuse = &team["settings"]["net.ipv4.tcp_tw_reuse"];
    // A sysctl value is a string as the kernel prints it, even where the YAML writes an integer.
    assert_eq!((&reuse["value"], &reuse["defined_in"]), (&"1".into(), &"outbound-heavy".into()), "{team}");
    let range = &team["settings"]["net.ipv4.ip_local_port_range"];
    assert_eq!(range["min"], serde_json::json!({ "fields": [1024, null] }), "{team}");
    assert_eq!(team["thresholds"]["port_crit_pct"], 80.0);
}

#[test]
fn list_goes_on_past_a_broken_local_file_and_exits_2() {
    let root = root_with_profiles(&[("broken.yaml", "name: broken\n"), ("ok.yaml", "name: ok\ndescription: fine\n")]);
    Run::new(&["profiles", "list", "--root"])
        .arg(root.path())
        .status(2)
        .stdout(Expect::contains(&["\nok               fine (", "\noutbound-heavy   "]))
        .stderr(format!(
            "twtune: {}/etc/twtune/profiles.d/broken.yaml:1:1: missing field `description`\n",
            root.path().display()
        ))
        .run();
}

#[test]
fn a_local_profile_overrides_the_built_in_one_for_its_children_too() {
    let local_baseline = "name: baseline\ndescription: Local baseline\nsettings:\n  net.core.somaxconn:\n    min: 8192\n    why: our load balancers queue bursts of 5000 connections\n    risk: memory for pending connections\n";
    let root = root_with_profiles(&[("baseline.yaml", local_baseline)]);
    let shown = Run::new(&["profiles", "show", "outbound-heavy", "--root"])
        .arg(root.path())
        .stdout(Expect::contains(&["net.ipv4.tcp_tw_reuse:\n    value: 1"]))
        .run();
    assert!(
        shown.starts_with("# profile outbound-heavy (built-in), resolved from: outbound-heavy <- baseline\n"),
        "{shown}"
    );
    assert!(shown.contains("net.core.somaxconn:\n    min: 8192"), "inherited from the local baseline:\n{shown}");
    assert!(!shown.contains("tcp_tw_recycle"), "the built-in baseline is replaced, not merged:\n{shown}");
}

#[test]
fn children_override_parents_setting_by_setting() {
    let root = root_with_profiles(&[
        (
            "parent.yaml",
            "name: parent\ndescription: p\nsettings:\n  net.core.somaxconn: {min: 1024, why: parent says, risk: r}\n  net.ipv4.tcp_syncookies: {value: 1, why: cookies, risk: r}\n",
        ),
        (
            "child.yaml",
            "name: child\ndescription: c\nextends: parent\nsettings:\n  net.core.somaxconn: {min: 4096, why: child says, risk: r}\n",
        ),
    ]);
    let shown = Run::new(&["profiles", "show", "child", "--root"])
        .arg(root.path())
        .stdout(Expect::contains(&["min: 4096", "why: child says", "net.ipv4.tcp_syncookies"]))
        .run();
    assert!(!shown.contains("parent says"), "{shown}");
}

#[test]
fn an_extends_chain_5000_deep_is_refused_not_a_stack_overflow() {
    let files: Vec<(String, String)> = (0..5000)
        .map(|i| (format!("p{i}.yaml"), format!("name: p{i}\ndescription: d\nextends: p{}\n", i + 1)))
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let root = root_with_profiles(&refs);
    let dir = root.path().join("etc/twtune/profiles.d");
    Run::new(&["profiles", "show", "p0", "--root"])
        .arg(root.path())
        .status(2)
        .stderr(format!(
            "twtune: {}/p31.yaml:3: extends chain deeper than 32 profiles (p0 <- ...); shorten it\n",
            dir.display()
        ))
        .run();
}

#[test]
fn extends_cycles_and_missing_parents_are_errors() {
    let root = root_with_profiles(&[
        ("a.yaml", "name: a\ndescription: d\nextends: b\n"),
        ("b.yaml", "name: b\ndescription: d\nextends: c\n"),
        ("c.yaml", "name: c\ndescription: d\nextends: a\n"),
        ("orphan.yaml", "name: orphan\ndescription: d\nextends: nobody\n"),
    ]);
    let dir = root.path().join("etc/twtune/profiles.d");
    Run::new(&["profiles", "show", "a", "--root"])
        .arg(root.path())
        .status(2)
        .stderr(format!("twtune: {}/c.yaml:3: extends cycle: a -> b -> c -> a\n", dir.display()))
        .run();
    Run::new(&["profiles", "show", "orphan", "--root"])
        .arg(root.path())
        .status(2)
        .stderr(format!("twtune: {}/orphan.yaml:3: extends \"nobody\", but no profile has that name\n", dir.display()))
        .run();
}

#[test]
fn a_local_file_must_be_named_after_its_profile() {
    let root = root_with_profiles(&[("web.yaml", "name: webserver\ndescription: d\n")]);
    Run::new(&["profiles", "show", "web", "--root"])
        .arg(root.path())
        .status(2)
        .stderr(format!(
            "twtune: {}/etc/twtune/profiles.d/web.yaml:1: name \"webserver\" must equal the file name \"web\"\n",
            root.path().display()
        ))
        .run();
}

#[test]
fn a_device_or_huge_file_is_refused_without_reading_it_all() {
    // A device is not read at all; a huge regular file only as far as the limit.
    Run::new(&["profiles", "check", "/dev/zero"])
        .status(2)
        .stderr("twtune: cannot read /dev/zero: not a regular file\n")
        .run();
    let dir = tempfile::tempdir().expect("temp dir");
    let huge = dir.path().join("huge.yaml");
    std::fs::write(&huge, vec![b'#'; (1 << 20) + 10]).expect("write");
    Run::new(&["profiles", "check"])
        .arg(&huge)
        .status(2)
        .stderr(format!("twtune: {}: more than 1048576 bytes is too large for a profile\n", huge.display()))
        .run();
}

#[test]
fn unknown_profiles_and_missing_files_are_clear_errors() {
    Run::new(&["audit", "--profile", "no-such", "--root"])
        .arg(fixture("idle"))
        .status(2)
        .stderr("twtune: no profile named \"no-such\"; `twtune profiles list` shows the profiles there are, or give a path to a YAML file\n")
        .run();
    Run::new(&["audit", "--profile", "./missing.yaml", "--root"])
        .arg(fixture("idle"))
        .status(2)
        .stderr("twtune: cannot read ./missing.yaml: No such file or directory (os error 2)\n")
        .run();
}

#[test]
fn audit_against_outbound_heavy_adds_one_finding_per_unmet_setting() {
    let root = fixture("client-exhaustion");
    let (code, report) = audit_json(&["--profile", "outbound-heavy", "--root", root.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    let profile = report.profile.as_ref().expect("profile in the report");
    assert_eq!((profile.name.as_str(), profile.source.as_str()), ("outbound-heavy", "built-in"));
    assert_eq!(profile.chain, vec!["outbound-heavy", "baseline"]);
    let mut ids: Vec<&str> = report.ids().into_iter().filter(|id| id.starts_with("profile.")).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "profile.net.ipv4.ip_local_port_range",
            "profile.net.ipv4.ip_local_reserved_ports",
            "profile.net.ipv4.tcp_tw_reuse"
        ]
    );
    let range = report.one("profile.net.ipv4.ip_local_port_range");
    assert_eq!((range.current.as_deref(), range.recommended.as_deref()), (Some("40000 40199"), Some("10000 65535")));
    assert!(
        range.message.contains("profile outbound-heavy expects low at least 1024, at least 50000 ports"),
        "{}",
        range.message
    );
    assert!(range.risk.contains("EADDRINUSE"), "{}", range.risk);
    assert_eq!(range.evidence["defined_in"], "outbound-heavy");
    let reuse = report.one("profile.net.ipv4.tcp_tw_reuse");
    assert_eq!((reuse.severity.as_str(), reuse.recommended.as_deref()), ("warn", Some("1")));
}

#[test]
fn audit_against_inbound_heavy_on_an_old_kernel() {
    let root = fixture("old-kernel");
    let (code, report) = audit_json(&["--profile", "inbound-heavy", "--root", root.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    let recycle = report.one("profile.net.ipv4.tcp_tw_recycle");
    assert_eq!((recycle.severity.as_str(), recycle.recommended.as_deref()), ("crit", Some("0")));
    assert_eq!(recycle.evidence["defined_in"], "baseline");
    let somaxconn = report.one("profile.net.core.somaxconn");
    assert_eq!((somaxconn.current.as_deref(), somaxconn.recommended.as_deref()), (Some("128"), Some("4096")));
    // tcp_max_tw_buckets >= default cannot be judged without tcp_ehash_entries (before 6.1).
    assert!(
        report.warnings.iter().any(|w| w.contains("net.ipv4.tcp_max_tw_buckets not checked")),
        "{:?}",
        report.warnings
    );
    assert!(report.with_id("profile.net.ipv4.tcp_tw_reuse").is_empty(), "inbound-heavy leaves tcp_tw_reuse alone");
}

#[test]
fn audit_against_kubernetes_node_wants_the_range_clear_of_nodeports() {
    let root = fixture("misconfigured");
    let (_, report) = audit_json(&["--profile", "kubernetes-node", "--root", root.to_str().expect("utf-8")]);
    let range = report.one("profile.net.ipv4.ip_local_port_range");
    assert_eq!((range.current.as_deref(), range.recommended.as_deref()), (Some("1024 65534"), Some("32768 65533")));
    assert!(range.message.contains("clear of 30000-32767 unless reserved"), "{}", range.message);
    let buckets = report.one("profile.net.ipv4.tcp_max_tw_buckets");
    assert_eq!((buckets.current.as_deref(), buckets.recommended.as_deref()), (Some("50"), Some("131072")));
    assert!(report.with_id("profile.net.ipv4.tcp_timestamps").len() == 1, "timestamps=0 breaks the baseline");
}

#[test]
fn a_default_range_is_already_clear_of_nodeports() {
    // The default 32768-60999 does not reach 30000-32767: nothing to say, with or without reservations.
    let (code, report) =
        audit_json(&["--profile", "kubernetes-node", "--root", fixture("idle").to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{:?}", report.ids());
    assert!(report.findings.is_empty(), "{:?}", report.ids());
}

#[test]
fn profile_thresholds_change_the_bucket_rules() {
    let root = fixture("client-exhaustion");
    let team = profiles_dir().join("valid/team-clients.yaml");
    let (_, plain) = audit_json(&["--root", root.to_str().expect("utf-8")]);
    assert_eq!(plain.with_id("ports.bucket-exhaustion").len(), 1, "only 8080 is over 50 %");
    let (_, strict) =
        audit_json(&["--profile", team.to_str().expect("utf-8"), "--root", root.to_str().expect("utf-8")]);
    let buckets = strict.with_id("ports.bucket-exhaustion");
    assert_eq!(buckets.len(), 2, "9090 at 17.5 % passes the profile's 10 % warning threshold");
    assert_eq!(buckets[0].severity, "crit", "85 % is above the profile's 60 %");
    assert_eq!((strict.thresholds.port_warn_pct, strict.thresholds.port_crit_pct), (10.0, 60.0));
    assert_eq!((plain.thresholds.port_warn_pct, plain.thresholds.port_crit_pct), (50.0, 80.0));
    assert_eq!(strict.profile.as_ref().map(|p| p.source.as_str()), Some(team.to_str().expect("utf-8")));
}

#[test]
fn human_report_names_the_profile() {
    Run::new(&["audit", "--profile", "outbound-heavy", "--root"])
        .arg(fixture("client-exhaustion"))
        .status(1)
        .stdout(Expect::contains(&[
            "profile outbound-heavy <- baseline (built-in)",
            "WARN profile.net.ipv4.tcp_tw_reuse  net.ipv4.tcp_tw_reuse: 0 -> 1",
        ]))
        .run();
}

#[test]
fn show_accepts_a_path_and_prints_a_profile_that_checks() {
    let team = profiles_dir().join("valid/team-clients.yaml");
    let shown = Run::new(&["profiles", "show"]).arg(&team).stdout(Expect::contains(&["port_warn_pct: 10"])).run();
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("shown.yaml");
    std::fs::write(&copy, &shown).expect("write");
    // Resolved: the chain is folded into the one profile.
    Run::new(&["profiles", "check"])
        .arg(&copy)
        .stdout(format!("{}: ok (team-clients, 7 settings)\n", copy.display()))
        .run();
    assert!(Path::new(&copy).exists());
}
