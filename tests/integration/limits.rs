//! Many namespaces, many descriptors (#24): a sweep of more namespaces than the common soft
//! open-files limit completes (twtune raises its soft limit to the hard one), a limit too small
//! for anything is one line about descriptors (no finding, no hint about `--root`), and the owner
//! lookup stops at its budget on processes with huge fd tables, saying what it left out.
//! Everything runs in the test's private network and mount namespaces.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::namespaces::{Process, private_run_netns};
use crate::netns::enter;
use crate::util::twtune;

/// Makes `count` namespaces `many-1..` with one `ip -batch` (a process per namespace is slow).
fn add_namespaces(count: usize) {
    use std::io::Write;
    let mut ip = std::process::Command::new("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run ip -batch");
    let mut stdin = ip.stdin.take().expect("stdin");
    for i in 1..=count {
        writeln!(stdin, "netns add many-{i}").expect("write to ip");
    }
    drop(stdin);
    assert!(ip.wait().expect("ip -batch").success(), "ip -batch netns add");
}

/// `twtune ARGS` under `prlimit --nofile=LIMIT`: its exit code, stdout and stderr.
fn limited(limit: &str, args: &[&str]) -> (i32, String, String) {
    let twtune = twtune();
    let out = std::process::Command::new("prlimit")
        .arg(format!("--nofile={limit}"))
        .arg("--")
        .arg(twtune.get_program())
        .args(args)
        .output()
        .expect("run prlimit");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code().expect("exit code"), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_sweep_of_more_namespaces_than_the_soft_open_files_limit_completes() {
    if !enter("limits::a_sweep_of_more_namespaces_than_the_soft_open_files_limit_completes") {
        return;
    }
    private_run_netns();
    const COUNT: usize = 1100;
    add_namespaces(COUNT);
    // The soft limit of most distributions; the hard one stays as it is.
    let (code, stdout, stderr) = limited("1024:", &["audit", "--all-netns", "--format", "json", "--fail-on", "never"]);
    assert_eq!(code, 0, "{stderr}");
    let sweep: Value = serde_json::from_str(&stdout).expect("JSON");
    crate::util::valid_json("audit-all-netns", stdout.as_bytes());
    let namespaces = sweep["namespaces"].as_array().expect("namespaces");
    let ours = namespaces.iter().filter(|ns| ns["netns"]["name"].as_str().is_some_and(|n| n.starts_with("many-")));
    assert_eq!(ours.count(), COUNT, "every namespace is in the sweep; stderr: {stderr}");
    assert!(!stdout.contains("persist.malformed"), "no false finding from a file that could not be opened");
    assert!(!stdout.contains("Too many open files"), "nothing ran out of descriptors");
}

#[test]
fn running_out_of_descriptors_is_one_line_about_descriptors() {
    if !enter("limits::running_out_of_descriptors_is_one_line_about_descriptors") {
        return;
    }
    private_run_netns();
    add_namespaces(20);
    // Hard and soft, so that twtune cannot raise them: each runs out at another file (the root,
    // /run/netns, a sysctl, /etc/sysctl.d, a namespace).
    let all = &["audit", "--all-netns", "--format", "json"][..];
    let plain = &["audit", "--format", "json"][..];
    for (limit, args) in [("12:12", all), ("6:6", all), ("4:4", plain), ("5:5", plain), ("6:6", plain), ("7:7", plain)]
    {
        let (code, stdout, stderr) = limited(limit, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("twtune: out of file descriptors ("), "{args:?}: {stderr}");
        assert!(lines[0].contains("ulimit -n"), "{stderr}");
        assert!(!lines[0].contains("--root") && !stdout.contains("persist.malformed"), "{stderr}{stdout}");
    }
}

#[test]
fn the_owner_lookup_stops_at_its_budget_and_says_what_it_left_out() {
    if !enter("limits::the_owner_lookup_stops_at_its_budget_and_says_what_it_left_out") {
        return;
    }
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hold_files.py");
    // 12 processes of 19 000 open files: more than the lookup's 200 000 descriptors, whatever the
    // machine's speed (a hard limit below 19 000 makes fewer, and the time budget counts then).
    let holders: Vec<Process> =
        (0..12).map(|i| Process::ready("python3", &[SCRIPT, "19000", &(9100 + i).to_string()])).collect();
    let started = Instant::now();
    let out = twtune().args(["audit", "--format", "json", "--fail-on", "never"]).output().expect("run twtune");
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    crate::util::valid_json("audit", &out.stdout);
    let partly = report["sockets"]["owners_unavailable"].as_str().expect("what was left out");
    assert!(partly.starts_with("looked up in part: ") && partly.contains("were not looked at"), "{partly}");
    let warnings = report["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| w.as_str().is_some_and(|w| w.contains(partly))), "{warnings:?}");
    // Owners found before the budget ran out are kept.
    let buckets = report["sockets"]["buckets"].as_array().expect("buckets");
    assert!(buckets.iter().all(|b| b["owners"].is_array()), "{buckets:?}");
    // Timings belong to the benchmark; this only rules out walking every table (seconds).
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(holders);
}
