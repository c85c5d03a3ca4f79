//! `twtune audit` on captured fixture roots: the report, the exit status, the formats and the errors.

use crate::util::{Expect, Run, TimeWait, audit_json, copy_tree, fixture};

/// The human report, uncoloured: what stdout of a plain `twtune audit` holds.
fn human_report() -> Expect {
    Expect::satisfies("a human report without colour", |s| {
        s.starts_with("twtune audit  kernel ") && !s.contains('\x1b')
    })
}

#[test]
fn client_exhaustion_root_reports_outbound_time_wait_and_a_critical_bucket() {
    let root = fixture("client-exhaustion");
    let (code, report) = audit_json(&["--root", root.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "a crit finding fails the default --fail-on warn");
    assert_eq!(report.schema_version, 6);
    assert_eq!(report.kernel, "6.18.44-fc-v669");
    assert_eq!(report.sockets.source, "proc");
    assert_eq!(report.sockets.time_wait, TimeWait { total: 200, outbound: 200, inbound: 0, without_listener: 0 });
    assert_eq!(report.counters["sockstat_tw"], 200);
    assert_eq!(report.settings["net.ipv4.ip_local_port_range"].as_deref(), Some("40000 40199"));
    assert_eq!(report.settings["net.ipv4.tcp_max_orphans"], None, "absent in a child namespace");

    let top = &report.sockets.buckets[0];
    assert_eq!((top.local_ip.as_str(), top.remote.as_str()), ("127.0.0.1", "127.0.0.1:8080"));
    assert_eq!((top.count, top.time_wait, top.usable_ports, top.usage_pct), (170, 170, 200, 85.0));
    assert_eq!(report.sockets.buckets[1].remote, "127.0.0.1:9090");
    assert_eq!(report.sockets.buckets[1].count, 35, "30 TIME_WAIT and 5 established");

    let exhaustion = report.one("ports.bucket-exhaustion");
    assert_eq!(exhaustion.severity, "crit");
    assert_eq!(exhaustion.key, None);
    assert!(exhaustion.advice[0].action.starts_with("Reuse connections in the application"));
    assert!(exhaustion.advice.iter().all(|a| !a.risk.is_empty()), "every step names its risk");
    let pressure = report.one("tw-reuse.outbound-pressure");
    assert_eq!((pressure.current.as_deref(), pressure.recommended.as_deref()), (Some("0"), Some("1")));
}

#[test]
fn server_root_explains_inbound_time_wait_without_pushing_tw_reuse() {
    let root = fixture("server-time-wait");
    let (code, report) = audit_json(&["--root", root.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "an info finding does not fail --fail-on warn");
    assert_eq!(report.sockets.time_wait, TimeWait { total: 500, outbound: 0, inbound: 500, without_listener: 0 });
    assert_eq!(report.sockets.listening_ports, vec![80, 443]);
    report.one("tw.mostly-inbound");
    assert!(report.findings.iter().all(|f| f.key.as_deref() != Some("net.ipv4.tcp_tw_reuse")));
}

#[test]
fn misconfigured_root_flags_the_folklore() {
    let root = fixture("misconfigured");
    let (code, report) = audit_json(&["--root", root.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1);
    let mut ids = report.ids();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "fin-timeout.not-time-wait",
            "port-range.nodeport-overlap",
            "port-range.same-parity",
            "ports.listener-in-range",
            "tw-buckets.lowered",
            "tw-reuse.needs-timestamps",
        ]
    );
    assert_eq!(report.counters["TCPTimeWaitOverflow"], 30);
    assert_eq!(report.one("ports.listener-in-range").recommended.as_deref(), Some("40080"));
    assert_eq!(report.sockets.ephemeral.listeners_in_range, vec![40080]);
}

#[test]
fn old_kernel_root_is_critical_about_tw_recycle() {
    let root = fixture("old-kernel");
    let (code, report) = audit_json(&["--root", root.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1);
    assert_eq!(report.kernel, "4.9.0-19-amd64");
    assert_eq!(report.settings["net.ipv4.tcp_tw_reuse_delay"], None, "absent before 6.14");
    assert_eq!(report.one("tw-recycle.enabled").severity, "crit");
    let overflow = report.one("listen.overflows");
    assert_eq!((overflow.current.as_deref(), overflow.recommended.as_deref()), (Some("128"), Some("4096")));
    assert_eq!(overflow.evidence["ListenOverflows"], 1234);
}

#[test]
fn idle_root_is_clean() {
    let root = fixture("idle");
    let (code, report) = audit_json(&["--root", root.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0);
    assert!(report.findings.is_empty(), "{:?}", report.ids());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.twtune_version, env!("CARGO_PKG_VERSION"));
    let ephemeral = &report.sockets.ephemeral;
    assert_eq!((ephemeral.range.as_str(), ephemeral.size, ephemeral.reserved_in_range), ("32768 60999", 28232, 0));
    assert_eq!(ephemeral.usable_ports, 28232);
    assert_eq!(report.settings.len(), 17, "every audited key is listed, present or not");
}

#[test]
fn malformed_text_is_skipped_with_warnings_naming_file_and_line() {
    let root = fixture("malformed");
    let (_, report) = audit_json(&["--root", root.to_str().expect("utf-8 path")]);
    let warnings = report.warnings.join("\n");
    for expected in [
        "proc/net/tcp:4: missing remote address; line skipped",
        "proc/net/tcp:6: first field is not a slot number",
        "proc/net/netstat:4: IpExt: 18 names but 15 values",
        "proc/net/sockstat:2: value \"many\" of tw is not an integer",
    ] {
        assert!(warnings.contains(expected), "missing {expected:?} in:\n{warnings}");
    }
    assert!(!report.counters.contains_key("sockstat_tw"));
    assert_eq!(report.counters["TW"], 200, "TcpExt survives a broken IpExt");
    assert_eq!(report.sockets.total, 210, "two of 212 socket lines were unusable");
}

#[test]
fn fail_on_sets_the_threshold_of_exit_1() {
    let root = fixture("misconfigured");
    let root = root.to_str().expect("utf-8 path");
    for (fail_on, code) in [("info", 1), ("warn", 1), ("crit", 0), ("never", 0)] {
        Run::new(&["audit", "--root", root, "--fail-on", fail_on]).status(code).stdout(human_report()).run();
    }
    let server = fixture("server-time-wait");
    Run::new(&["audit", "--fail-on", "info", "--root"]).arg(&server).status(1).stdout(human_report()).run();
    Run::new(&["audit", "--fail-on", "warn", "--root"]).arg(&server).status(0).stdout(human_report()).run();
}

#[test]
fn top_limits_the_listed_buckets() {
    let root = fixture("client-exhaustion");
    let (_, report) = audit_json(&["--top", "1", "--root", root.to_str().expect("utf-8 path")]);
    assert_eq!(report.sockets.buckets.len(), 1);
    assert_eq!(report.sockets.bucket_count, 2);
}

#[test]
fn human_report_has_summary_breakdown_buckets_and_findings_with_risk() {
    let out = Run::new(&["audit", "--root"])
        .arg(fixture("client-exhaustion"))
        .status(1)
        .stdout(Expect::contains(&[
            "200 outbound: this host connected out and closed first",
            "0 inbound: server side",
            "ip_local_port_range 40000 40199: 200 ports - 0 reserved - 0 listening = 200 usable per destination",
            // At 80 columns the table leaves out what reuse frees, and says so.
            "127.0.0.1 -> 127.0.0.1:8080      170        170      170/200  85.0 %    30",
            "left out to fit 80 columns: reusable",
            "CRIT ports.bucket-exhaustion",
            "CRIT ports.pool-too-small",
            "WARN tw-reuse.outbound-pressure  net.ipv4.tcp_tw_reuse: 0 -> 1",
            "what to do, best first:",
            "risk:",
        ]))
        .run();
    assert!(out.starts_with("twtune audit  kernel 6.18.44-fc-v669  3 findings: 2 crit, 1 warn\n"), "{out}");
    assert!(!out.contains('\x1b'), "no colour when stdout is not a terminal");
    // A wider terminal shows it.
    Run::new(&["audit", "--root"])
        .arg(fixture("client-exhaustion"))
        .env("COLUMNS", "120")
        .status(1)
        .stdout(Expect::contains(&[
            "127.0.0.1 -> 127.0.0.1:8080      170        170         0      170/200  85.0 %    30",
        ]))
        .run();
}

#[test]
fn colour_follows_color_flag_and_no_color() {
    let root = fixture("client-exhaustion");
    // --color always keeps ANSI in a pipe.
    Run::new(&["--color", "always", "audit", "--root"]).arg(&root).status(1).stdout(Expect::contains(&["\x1b["])).run();
    Run::new(&["audit", "--color", "never", "--root"]).arg(&root).status(1).stdout(human_report()).run();
    Run::new(&["audit", "--root"]).arg(&root).env("NO_COLOR", "1").status(1).stdout(human_report()).run();
}

#[test]
fn missing_root_is_one_line_and_exit_2() {
    Run::new(&["audit", "--root", "/nonexistent/twtune-fixture"])
        .status(2)
        .stderr(
            "twtune: root directory /nonexistent/twtune-fixture: No such file or directory (os error 2); \
             pass an existing directory to --root (default /)\n",
        )
        .run();
}

#[test]
fn root_without_proc_net_names_the_file_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).expect("mkdir");
    std::fs::write(dir.path().join("proc/sys/kernel/osrelease"), "6.1.0\n").expect("write");
    Run::new(&["audit", "--root"])
        .arg(dir.path())
        .status(2)
        .stderr(format!(
            "twtune: cannot read {}/proc/net/sockstat: No such file or directory (os error 2); \
             --root must hold proc/sys and proc/net laid out as on a live host\n",
            dir.path().display()
        ))
        .run();
}

#[test]
fn unreadable_file_is_exit_2_not_a_panic() {
    // A directory where a file should be: reading it fails for root too.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("root");
    copy_tree(&fixture("idle"), &copy);
    std::fs::remove_file(copy.join("proc/net/netstat")).expect("rm");
    std::fs::create_dir(copy.join("proc/net/netstat")).expect("mkdir");
    // One line and nothing else: no panic message, no partial report.
    Run::new(&["audit", "--root"])
        .arg(&copy)
        .status(2)
        .stderr(format!(
            "twtune: cannot read {}/proc/net/netstat: Is a directory (os error 21); \
             --root must hold proc/sys and proc/net laid out as on a live host\n",
            copy.display()
        ))
        .run();
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    // The wording after "twtune: " is clap's; what it names and the pointer to --help are ours.
    Run::new(&["audit", "--top", "0"]).status(2).stderr(Expect::one_line(&["--top", "; see 'twtune --help'"])).run();
    Run::new(&["audit", "--format", "yaml"])
        .status(2)
        .stderr(Expect::one_line(&["'yaml'", "--format", "; see 'twtune --help'"]))
        .run();
    Run::new(&["frobnicate"]).status(2).stderr(Expect::one_line(&["'frobnicate'", "; see 'twtune --help'"])).run();
    Run::new(&[])
        .status(2)
        .stderr("twtune: a command is needed after 'twtune' (audit, watch, explain, apply, rollback, export, snapshot, completions, profiles); see 'twtune --help'\n")
        .run();
    // A command that needs its own subcommand lists those, and a misspelt command keeps clap's tip.
    Run::new(&["profiles"])
        .status(2)
        .stderr(
            "twtune: a command is needed after 'twtune profiles' (list, show, check); see 'twtune profiles --help'\n",
        )
        .run();
    Run::new(&["audti"])
        .status(2)
        .stderr(
            "twtune: unrecognized subcommand 'audti'; tip: a similar subcommand exists: 'audit'; see 'twtune --help'\n",
        )
        .run();
    // A key neither twtune, the kernel nor a sysctl.d file knows is a mistake (exit 2, the closest known key); a
    // known key the kernel lacks is a fact (exit 0, "absent").
    Run::new(&["explain", "net.ipv4.tcp_tw_reus"])
        .status(2)
        .stderr("twtune: unknown key \"net.ipv4.tcp_tw_reus\": twtune does not know it, this kernel does not have it and no sysctl.d file sets it; did you mean net.ipv4.tcp_tw_reuse?\n")
        .run();
    Run::new(&["explain", "net.ipv4.tcp_tw_recycle"])
        .status(0)
        .stdout(Expect::satisfies("the key, absent", |s| s.contains("absent on this kernel")))
        .run();
    // A missing argument keeps the names clap lists below its first line.
    Run::new(&["snapshot"])
        .status(2)
        .stderr(Expect::one_line(&[
            "the following required arguments were not provided: <DIR>",
            "; see 'twtune --help'",
        ]))
        .run();
}

#[test]
fn help_documents_the_exit_status() {
    Run::new(&["audit", "--help"])
        .stdout(Expect::contains(&["Exit status:", "1  at least one finding reaches --fail-on", "--root <DIR>"]))
        .run();
    Run::new(&["--version"]).stdout(format!("twtune {}\n", env!("CARGO_PKG_VERSION"))).run();
}

#[test]
fn closed_stdout_is_not_an_error() {
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twtune"))
        .args(["audit", "--format", "json", "--root"])
        .arg(fixture("client-exhaustion"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(1), "the crit finding still decides the status: {:?}", output.status);
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}
