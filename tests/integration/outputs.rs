//! Shell completions, the Prometheus output (checked by a real parser) and snapshots (an audit of
//! a snapshot equals the live audit it was taken from).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::{enter, set_sysctl};
use crate::util::{CONCERNS_THE_HOST, Expect, Report, Run, audit_json, connections, fixture};

#[test]
fn completions_for_each_shell() {
    let words = ["audit", "apply", "rollback", "export", "explain", "profiles", "snapshot"];
    for (shell, marker) in [("bash", "_twtune()"), ("zsh", "#compdef twtune"), ("fish", "complete -c twtune")] {
        Run::new(&["completions", shell]).stdout(Expect::contains(&[&[marker][..], &words].concat())).run();
    }
    // bash parses its script without running it.
    let bash = Run::new(&["completions", "bash"]).stdout(Expect::contains(&["_twtune()"])).run();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("twtune.bash");
    std::fs::write(&path, bash).expect("write");
    let check = Command::new("bash").arg("-n").arg(&path).output().expect("bash -n");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    Run::new(&["completions", "powershell-7"])
        .status(2)
        .stderr(Expect::one_line(&["'powershell-7'", "; see 'twtune --help'"]))
        .run();
}

/// The Python interpreter with prometheus_client (scripts/test installs it). Under CI=true its
/// absence fails the test; elsewhere the test is skipped with a message.
pub(crate) fn python_with_prometheus_client() -> Option<PathBuf> {
    let candidates = [std::env::var_os("TWTUNE_PYTHON").map(PathBuf::from), Some(PathBuf::from("python3"))];
    for python in candidates.into_iter().flatten() {
        let ok =
            Command::new(&python).args(["-c", "import prometheus_client"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "CI=true but no python with prometheus_client: scripts/test installs it"
    );
    eprintln!("SKIPPED: no python with prometheus_client; run scripts/test, which installs it");
    None
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {"type": family.type, "help": family.documentation,
                             "samples": [[s.name, s.labels, s.value] for s in family.samples]}
print(json.dumps(families))
"#;

/// The metric families of `metrics` as the reference parser reads them (name -> type, help,
/// samples as [name, labels, value]); panics when it refuses them.
pub(crate) fn parsed_metrics(python: &Path, metrics: &str) -> serde_json::Value {
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), metrics.as_bytes()).expect("feed");
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("parse");
    assert!(output.status.success(), "the parser refused the output: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

#[test]
fn prometheus_output_parses_with_a_real_parser() {
    let Some(python) = python_with_prometheus_client() else { return };
    // Findings still decide the status.
    let metrics = Run::new(&["audit", "--format", "prometheus", "--root"])
        .arg(fixture("client-exhaustion"))
        .status(1)
        .stdout(Expect::contains(&["# HELP ", "# TYPE "]))
        .run();
    let families = parsed_metrics(&python, &metrics);
    let value = |family: &str, labels: serde_json::Value| -> f64 {
        families[family]["samples"]
            .as_array()
            .unwrap_or_else(|| panic!("no family {family}"))
            .iter()
            .find(|s| labels.as_object().expect("labels").iter().all(|(k, v)| &s[1][k] == v))
            .and_then(|s| s[2].as_f64())
            .unwrap_or_else(|| panic!("no sample {family} {labels}"))
    };
    assert_eq!(value("twtune_time_wait_sockets", serde_json::json!({"direction": "outbound"})), 200.0);
    assert_eq!(
        value("twtune_bucket_usage_ratio", serde_json::json!({"local_ip": "127.0.0.1", "remote": "127.0.0.1:8080"})),
        0.85
    );
    assert_eq!(value("twtune_sysctl_net_ipv4_tcp_tw_reuse", serde_json::json!({})), 0.0);
    assert_eq!(value("twtune_ephemeral_port_range_high", serde_json::json!({})), 40199.0);
    assert_eq!(
        value("twtune_findings", serde_json::json!({"severity": "crit"})),
        2.0,
        "bucket-exhaustion, pool-too-small"
    );
    assert_eq!(value("twtune_findings", serde_json::json!({"severity": "info"})), 0.0);
    // Counters are counters (the parser names the family without `_total`), one quantity each.
    assert_eq!(families["twtune_tcp_time_wait_entered"]["type"], "counter");
    assert_eq!(value("twtune_tcp_time_wait_entered", serde_json::json!({})), 200.0);
    assert_eq!(families["twtune_tcp_active_opens"]["type"], "counter");
    assert_eq!(families["twtune_tcp_syn_retransmits"]["type"], "counter");
    assert_eq!(value("twtune_tcp_syn_retransmits", serde_json::json!({})), 0.0);
    // What node_exporter exports for the host is left to it; no quantity twice.
    for gone in [
        "twtune_time_wait_total",
        "twtune_kernel_counter",
        "twtune_kernel_gauge",
        "twtune_rate_per_second",
        "twtune_sysctl",
        "twtune_tcp_sockets",
    ] {
        assert!(families.get(gone).is_none(), "{gone} is still exported");
    }
    for family in families.as_object().expect("families").values() {
        assert!(!family["help"].as_str().unwrap_or("").is_empty(), "every family has HELP");
    }
    promtool_accepts(&metrics);
}

/// `promtool check metrics` (Debian's prometheus package, which scripts/test installs) finds
/// nothing in `metrics`.
pub(crate) fn promtool_accepts(metrics: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but promtool is missing: scripts/test installs it"
        );
        eprintln!("SKIPPED: promtool is not installed");
        return;
    };
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), metrics.as_bytes()).expect("feed");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{metrics}");
}

#[test]
fn the_alert_rule_of_the_readme_passes_promtool_and_uses_exported_metrics() {
    let rules = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts.yml"))
        .expect("docs/alerts.yml");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    assert!(readme.contains(rules.trim()), "the README shows docs/alerts.yml as it is");
    let metrics = Run::new(&["audit", "--format", "prometheus", "--fail-on", "never", "--root"])
        .arg(fixture("client-exhaustion"))
        .stdout(Expect::contains(&["# TYPE "]))
        .run();
    for name in ["twtune_bucket_usage_ratio", "twtune_local_address_available_ports", "twtune_snat_bucket_usage_ratio"]
    {
        assert!(rules.contains(name), "{name} alerted on");
        assert!(metrics.contains(name) || name.starts_with("twtune_snat"), "{name} not exported");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("alerts.yml");
    std::fs::write(&file, &rules).expect("write");
    let Ok(out) = Command::new("promtool").args(["check", "rules"]).arg(&file).output() else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but promtool is missing");
        return;
    };
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Everything of a report except where the sockets were read from.
fn comparable(report: &Report) -> String {
    let s = &report.sockets;
    let findings: Vec<String> =
        report.findings.iter().map(|f| format!("{} {:?} {:?} {}", f.id, f.current, f.recommended, f.message)).collect();
    // The conntrack table is dumped live only; what the snapshot keeps must read back the same.
    let conntrack = report.conntrack.as_ref().map(|ct| (ct.count, ct.max, &ct.statistics, &ct.tcp_timeouts));
    // Host-wide counters change whenever anything else on the machine opens sockets: never
    // compared across two reads.
    let counters: std::collections::BTreeMap<&String, &i64> =
        report.counters.iter().filter(|(name, _)| !crate::util::HOST_WIDE_COUNTERS.contains(&name.as_str())).collect();
    format!(
        "{} {:?} {:?} {} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?} {:?}",
        report.kernel,
        report.settings,
        counters,
        s.total,
        s.states,
        s.time_wait,
        s.listening_ports,
        s.buckets.iter().map(|b| (&b.local_ip, &b.remote, b.count)).collect::<Vec<_>>(),
        s.ephemeral.usable_ports,
        report.config.systemd,
        report.config.procps,
        findings,
        report.warnings,
        conntrack,
    )
}

#[test]
fn an_audit_of_a_snapshot_equals_the_live_audit() {
    if !enter("outputs::an_audit_of_a_snapshot_equals_the_live_audit") {
        return;
    }
    set_sysctl("net.ipv4.tcp_tw_reuse", "0");
    set_sysctl("net.ipv4.ip_local_port_range", "40000 40199");
    // Persisted configuration with an override, and sockets to count.
    std::fs::write("/etc/sysctl.d/10-team.conf", "net.ipv4.tcp_fin_timeout = 30\n").expect("write");
    std::fs::write("/etc/sysctl.d/zz-late.conf", "net.ipv4.tcp_fin_timeout = 45\n").expect("write");
    let listener = TcpListener::bind("127.0.0.1:8080").expect("listen");
    connections(&listener, 150, true);

    let (live_code, mut live) = audit_json(&["--profile", "outbound-heavy"]);
    // The one thing a tree cannot tell: the live audit knows it ran outside the initial network
    // namespace (where it can tell), and its persistence findings say so. The rest is the same.
    for f in &mut live.findings {
        if f.evidence.remove("namespace").is_some() {
            f.message = f.message.strip_suffix(CONCERNS_THE_HOST).map(str::to_string).unwrap_or_else(|| {
                panic!("{} says it is outside the initial namespace in its evidence only: {}", f.id, f.message)
            });
        }
    }
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("snap");
    Run::new(&["snapshot"]).arg(&dir).run();
    let (snap_code, snap) = audit_json(&["--profile", "outbound-heavy", "--root", dir.to_str().expect("utf-8")]);
    assert_eq!(live.sockets.source, "netlink");
    assert_eq!(snap.sockets.source, "proc");
    assert_eq!(comparable(&live), comparable(&snap));
    assert_eq!(live_code, snap_code);
    assert!(live.with_id("persist.drift").iter().any(|f| f.key.as_deref() == Some("net.ipv4.tcp_fin_timeout")));

    let explain = |root: &Path| {
        Run::new(&["explain", "net.ipv4.tcp_fin_timeout", "--format", "json", "--root"])
            .arg(root)
            .stdout(Expect::satisfies("a JSON document", |s| serde_json::from_str::<serde_json::Value>(s).is_ok()))
            .run()
    };
    assert_eq!(explain(Path::new("/")), explain(&dir));

    // One file instead: the same tree, packed.
    let archive = work.path().join("snap.tar.gz");
    Run::new(&["snapshot", "--archive"]).arg(&archive).run();
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).expect("mkdir");
    let untar = Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked).output().expect("tar");
    assert!(untar.status.success());
    let (_, from_archive) = audit_json(&["--profile", "outbound-heavy", "--root", unpacked.to_str().expect("utf-8")]);
    assert_eq!(comparable(&live), comparable(&from_archive));
    assert!(
        !std::fs::read_dir(work.path())
            .expect("dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".twtune-")),
        "no staging left"
    );
}

#[test]
fn snapshot_refuses_a_non_empty_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("mine"), "x").expect("write");
    Run::new(&["snapshot", "--root"])
        .arg(fixture("idle"))
        .arg(dir.path())
        .status(2)
        .stderr(format!("twtune: {} is not empty: give a new or empty directory\n", dir.path().display()))
        .run();
    // A captured tree can itself be snapshotted.
    let copy = dir.path().join("copy");
    Run::new(&["snapshot", "--root"]).arg(fixture("idle")).arg(&copy).run();
    assert!(copy.join("proc/net/tcp").exists() && copy.join("proc/sys/kernel/osrelease").exists());
}

#[test]
fn a_snapshot_carries_the_keys_of_local_profiles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source");
    crate::util::copy_tree(&fixture("idle"), &source);
    std::fs::create_dir_all(source.join("proc/sys/net/ipv4/conf/all")).expect("mkdir");
    std::fs::write(source.join("proc/sys/net/ipv4/conf/all/rp_filter"), "2\n").expect("write");
    std::fs::create_dir_all(source.join("etc/twtune/profiles.d")).expect("mkdir");
    std::fs::write(
        source.join("etc/twtune/profiles.d/edge.yaml"),
        "name: edge\ndescription: d\nsettings:\n  net.ipv4.conf.all.rp_filter: {value: 1, why: strict reverse path, risk: asymmetric routes}\n",
    )
    .expect("write");
    let snapshot = dir.path().join("snap");
    Run::new(&["snapshot", "--root"]).arg(&source).arg(&snapshot).run();
    assert_eq!(std::fs::read_to_string(snapshot.join("proc/sys/net/ipv4/conf/all/rp_filter")).expect("copied"), "2\n");
    let (_, report) = audit_json(&["--profile", "edge", "--root", snapshot.to_str().expect("utf-8")]);
    assert_eq!(report.one("profile.net.ipv4.conf.all.rp_filter").current.as_deref(), Some("2"));
}

/// `/dev/full` for writing: every write to it fails with ENOSPC.
fn full() -> std::fs::File {
    std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full")
}

#[test]
fn a_full_stdout_or_stderr_is_an_error_not_a_panic_nor_success() {
    use std::process::Stdio;
    let run = |args: &[&str], stdout: Stdio, stderr: Stdio| {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_twtune"))
            .args(args)
            .stdout(stdout)
            .stderr(stderr)
            .status()
            .expect("run twtune");
        status.code()
    };
    // stdout full: the completion script, help, and a report cannot be written.
    for args in [&["completions", "bash"][..], &["--help"], &["audit", "--root"]] {
        let mut args = args.to_vec();
        let root = fixture("idle");
        if args.last() == Some(&"--root") {
            args.push(root.to_str().expect("utf-8"));
        }
        assert_eq!(run(&args, Stdio::from(full()), Stdio::null()), Some(2), "{args:?} into a full stdout");
    }
    // stderr full: the error itself cannot be said (this used to panic, exit 101), and the status
    // still says it failed; a usage error likewise.
    assert_eq!(run(&["audit", "--root", "/nonexistent"], Stdio::null(), Stdio::from(full())), Some(2));
    assert_eq!(run(&["audit", "--bogus"], Stdio::null(), Stdio::from(full())), Some(2));
}

/// A closed stdout cannot be told from /dev/null: the Rust runtime opens a closed stdout on
/// /dev/null read-write before `main`, as a parent discarding its child's output does. So neither
/// is refused: the report goes nowhere and the exit status is the verdict.
#[test]
fn a_closed_stdout_loses_the_report_but_not_the_verdict() {
    let twtune = env!("CARGO_BIN_EXE_twtune");
    for (root, status) in [("idle", 0), ("client-exhaustion", 1)] {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"{twtune}\" audit --root \"{}\" --fail-on crit >&-", fixture(root).display()))
            .output()
            .expect("run sh");
        assert_eq!(output.status.code(), Some(status), "{root}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{root}");
    }
}

/// A monitoring check that discards the report (Python's `subprocess.DEVNULL`: /dev/null opened
/// read-write) and reads the exit status gets the real one.
#[test]
fn a_parent_that_discards_the_report_gets_the_real_exit_status() {
    let script = "import subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n\
        sys.stderr.buffer.write(r.stderr)\n\
        sys.exit(r.returncode)\n";
    for (root, fail_on, status) in
        [("client-exhaustion", "warn", 1), ("idle", "warn", 0), ("client-exhaustion", "never", 0)]
    {
        let output = std::process::Command::new("python3")
            .args(["-c", script, env!("CARGO_BIN_EXE_twtune"), "audit", "--root"])
            .arg(fixture(root))
            .args(["--fail-on", fail_on])
            .output()
            .expect("run python3");
        assert_eq!(
            output.status.code(),
            Some(status),
            "{root} --fail-on {fail_on}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "nothing is refused");
    }
}

#[test]
fn an_archive_is_staged_where_nothing_can_be_planted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("snap.tar.gz");
    // The old staging name, planted beforehand with a link to a victim: neither is used.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    let planted = dir.path().join(format!("snap.tar.gz.twtune-{}", std::process::id()));
    std::fs::create_dir(&planted).expect("mkdir");
    std::os::unix::fs::symlink(&victim, planted.join("proc")).expect("symlink");
    Run::new(&["snapshot", "--root"]).arg(fixture("idle")).arg("--archive").arg(&archive).run();
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious\n");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    let planted_name = planted.file_name().expect("name").to_string_lossy().into_owned();
    assert_eq!(left, vec!["snap.tar.gz".to_string(), planted_name, "victim".into()], "no staging left behind");
}

/// Runs `program args` with the twtune binary first on PATH (the scripts ask it for profiles), or
/// `None` where the shell is missing (a failure under CI=true: scripts/test installs it).
fn shell_output(program: &str, args: &[&str]) -> Option<String> {
    let bin = Path::new(env!("CARGO_BIN_EXE_twtune")).parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    match Command::new(program).args(args).env("PATH", path).env("HOME", std::env::temp_dir()).output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(_) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but {program} is missing: scripts/test installs it"
            );
            eprintln!("SKIPPED: {program} is not installed");
            None
        }
    }
}

#[test]
fn each_shell_completes_keys_profiles_and_shells_and_no_file_where_none_is_wanted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = |shell: &str, name: &str| {
        let text = Run::new(&["completions", shell]).stdout(Expect::contains(&["Added by twtune"])).run();
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let (bash, fish, zsh) = (script("bash", "twtune.bash"), script("fish", "twtune.fish"), script("zsh", "_twtune"));
    let lines = |text: String| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort();
        lines
    };
    let keys = vec!["net.ipv4.tcp_tw_recycle", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay"];
    let shells = vec!["bash", "elvish", "fish", "powershell", "zsh"];
    // (command line, what it must complete to), for each shell.
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("twtune explain net.ipv4.tcp_tw", keys.clone()),
        ("twtune completions ", shells.clone()),
        ("twtune apply ou", vec!["outbound-heavy"]),
        ("twtune audit --profile kub", vec!["kubernetes-node"]),
        ("twtune audit --color a", vec!["always", "auto"]),
        ("twtune --color ", vec!["always", "auto", "never"]),
        ("twtune --color n", vec!["never"]),
        ("twtune help ex", vec!["explain", "export"]),
    ];
    for (line, expected) in &cases {
        let words: Vec<&str> = line.split(' ').collect();
        let call = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; _twtune_values twtune '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        if let Some(out) = shell_output("bash", &["-c", &call]) {
            assert_eq!(lines(out), *expected, "bash: {line}");
        }
        let call = format!("source {}; complete -C '{line}'", fish.display());
        if let Some(out) = shell_output("fish", &["-c", &call]) {
            assert_eq!(lines(out), *expected, "fish: {line}");
        }
        let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/zsh_complete.zsh");
        let functions = zsh.parent().expect("dir").to_str().expect("utf-8").to_string();
        if let Some(out) = shell_output("zsh", &[capture.to_str().expect("utf-8"), &functions, line]) {
            assert_eq!(lines(out), *expected, "zsh: {line}");
        }
    }
}

#[test]
fn the_json_schemas_refuse_a_mistyped_evidence_field_and_an_old_version() {
    let text = Run::new(&["audit", "--format", "json", "--root"])
        .arg(fixture("client-exhaustion"))
        .status(1)
        .stdout(Expect::contains(&["\"tcp_tw_reuse\": 0,"]))
        .run();
    // The unchanged report passed (Run validates it); a sysctl written as a string, or the
    // previous schema_version, must not.
    for (from, to) in
        [("\"tcp_tw_reuse\": 0,", "\"tcp_tw_reuse\": \"0\","), ("\"schema_version\": 6", "\"schema_version\": 5")]
    {
        let changed = text.replacen(from, to, 1);
        let refused = std::panic::catch_unwind(|| crate::util::valid_json("audit", changed.as_bytes()));
        if std::env::var_os("TWTUNE_JSON_VALIDATOR").is_some() {
            assert!(refused.is_err(), "{to} was accepted");
        }
    }
}

/// Every text for people the fixture trees give: audits, with a profile, keys explained, plans.
fn texts_for_people(columns: Option<&str>) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    let roots =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roots")).expect("roots");
    for root in roots.map(|e| e.expect("entry").path()) {
        let commands: [&[&str]; 4] = [
            &["audit"],
            &["audit", "--profile", "kubernetes-node"],
            &["explain", "net.ipv4.ip_local_port_range"],
            &["apply", "outbound-heavy", "--dry-run"],
        ];
        for args in commands {
            let mut command = crate::util::twtune();
            command.args(args).arg("--root").arg(&root).env_remove("COLUMNS");
            if let Some(columns) = columns {
                command.env("COLUMNS", columns);
            }
            let out = command.output().expect("twtune");
            texts.push((format!("{args:?} on {}", root.display()), String::from_utf8_lossy(&out.stdout).into_owned()));
        }
    }
    texts
}

/// Whether a line may pass `width`: only when it cannot break, one word after its indent.
fn fits(line: &str, width: usize) -> bool {
    line.chars().count() <= width || !line.trim_start().contains(' ')
}

#[test]
fn text_for_people_fits_80_columns_or_the_columns_asked_and_writes_counts_one_way() {
    let mut longest = 0;
    for (what, text) in texts_for_people(None) {
        assert!(!text.is_empty(), "{what} printed nothing");
        for line in text.lines() {
            assert!(fits(line, 80), "{what}: a line of {} columns:\n{line}", line.chars().count());
            // Numbers as digits only, never grouped ("1 000"); one of a noun is singular.
            let words: Vec<&str> = line.split(' ').collect();
            for pair in words.windows(2) {
                let digits = |w: &str, n: std::ops::RangeInclusive<usize>| {
                    n.contains(&w.len()) && w.chars().all(|c| c.is_ascii_digit())
                };
                assert!(!(digits(pair[0], 1..=3) && digits(pair[1], 3..=3)), "{what}: a grouped number:\n{line}");
                let plural = ["sockets", "ports", "buckets", "files", "findings", "entries", "changes", "settings"];
                assert!(!(pair[0] == "1" && plural.contains(&pair[1])), "{what}: \"1 {}\":\n{line}", pair[1]);
            }
        }
        longest = longest.max(text.lines().map(|l| l.chars().count()).max().unwrap_or(0));
    }
    assert!(longest > 70, "the reports use the width: {longest}");
    // A wider terminal (or COLUMNS) gets longer lines, and still none past it.
    let mut wider = 0;
    for (what, text) in texts_for_people(Some("150")) {
        for line in text.lines() {
            assert!(fits(line, 150), "{what} at 150 columns:\n{line}");
            wider = wider.max(line.chars().count());
        }
    }
    assert!(wider > 80, "150 columns are used: {wider}");
}

#[test]
fn quiet_prints_nothing_and_the_exit_status_keeps_the_verdict() {
    for (root, status) in [("client-exhaustion", 1), ("idle", 0)] {
        for format in ["human", "json", "prometheus"] {
            Run::new(&["audit", "-q", "--format", format, "--root"])
                .arg(fixture(root))
                .status(status)
                .stdout(Expect::Empty)
                .run();
        }
    }
    Run::new(&["audit", "--quiet", "--fail-on", "never", "--root"]).arg(fixture("client-exhaustion")).run();
}
