//! Every network namespace and who is churning, on the real kernel: `audit --all-netns` over
//! namespaces made by `ip netns add` and held by a process, names from container cgroups, owners
//! of a bucket, `conn.no-reuse`, a namespace deleted during the sweep, and what happens without root.
//! Everything runs in the test's private network and mount namespaces; namespaces, processes and
//! cgroups the tests make are removed by them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::netns::{enter, initial_namespace_known, run};
use crate::util::{CONCERNS_THE_HOST, audit_json, twtune};

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/peers.py");
const DOCKER_ID: &str = "d0c4e2a1b3f5a7c9e1d3b5f7a9c1e3d5b7f9a1c3e5d7b9f1a3c5e7d9b1f3a5c7";
const CRI_ID: &str = "c71c0de5a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef012345678";
const POD_UID: &str = "5f1c3a52-8d3e-4b7f-9a61-0c2d3e4f5a6b";

/// A process of the test, killed (and waited for) when dropped.
pub(crate) struct Process(Child);

impl Process {
    /// Starts `program args` and waits for it to print `ready`.
    pub(crate) fn ready(program: &str, args: &[&str]) -> Process {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read ready");
        assert_eq!(line.trim(), "ready", "{program} {args:?} did not start");
        Process(child)
    }

    /// A python peer of tests/support/peers.py.
    pub(crate) fn peer(args: &[&str]) -> Process {
        let mut all = vec![PEERS];
        all.extend_from_slice(args);
        Process::ready("python3", &all)
    }

    /// A process alone in a new network namespace (`unshare --net`), holding it.
    fn holding_a_namespace() -> Process {
        Process::ready("unshare", &["--net", "sh", "-c", "echo ready; exec sleep 600"])
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cgroup (v2) made for the test, with the process moved into it; removed when dropped, after
/// the process has ended.
struct Cgroup {
    dirs: Vec<PathBuf>,
    process: Option<Process>,
}

impl Cgroup {
    /// Creates `relative` (and its parents) under a writable cgroup2 hierarchy and moves `process`
    /// into it.
    fn with(relative: &str, process: Process) -> Cgroup {
        let base = cgroup2_mount();
        let mut dirs = Vec::new();
        let mut dir = base.clone();
        for part in relative.split('/') {
            dir = dir.join(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                dirs.push(dir.clone());
            }
        }
        std::fs::write(dir.join("cgroup.procs"), process.pid().to_string())
            .unwrap_or_else(|e| panic!("move {} into {}: {e}", process.pid(), dir.display()));
        Cgroup { dirs, process: Some(process) }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.as_ref().expect("process").pid()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        drop(self.process.take());
        for dir in self.dirs.iter().rev() {
            // A cgroup can be removed once its last process has been reaped.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A writable cgroup2 hierarchy: the host's where it is writable, otherwise a fresh mount of it in
/// the test's private mount namespace.
fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("read mounts");
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() > 3 && fields[2] == "cgroup2" && fields[3].split(',').any(|o| o == "rw") {
            return PathBuf::from(fields[1]);
        }
    }
    let dir = Path::new("/tmp/twtune-test-cgroup2");
    std::fs::create_dir_all(dir).expect("mount point");
    run("mount", &["-t", "cgroup2", "none", dir.to_str().expect("path")]);
    dir.to_path_buf()
}

/// `/run/netns` on a tmpfs of the test's mount namespace, so that `ip netns add` leaves nothing
/// on the host.
pub(crate) fn private_run_netns() {
    std::fs::create_dir_all("/run/netns").expect("/run/netns");
    run("mount", &["-t", "tmpfs", "-o", "size=1m", "twtune-test", "/run/netns"]);
}

/// The inode of a namespace file.
fn inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}")).ino()
}

fn json(args: &[&str]) -> (i32, Value) {
    let out = twtune().arg("audit").args(["--format", "json"]).args(args).output().expect("run twtune");
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    crate::util::valid_json(if args.contains(&"--all-netns") { "audit-all-netns" } else { "audit" }, &out.stdout);
    (out.status.code().expect("exit code"), value)
}

fn namespace(sweep: &Value, inode: u64) -> &Value {
    sweep["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|ns| ns["netns"]["inode"] == inode)
        .unwrap_or_else(|| panic!("net:[{inode}] not in the sweep: {:#}", sweep["summary"]))
}

/// The section of `twtune audit --all-netns` (human, no colour) under the heading that contains
/// `heading`: from that heading to the next one, or to the notes.
pub(crate) fn sweep_section(heading: &str) -> String {
    // As wide as a line gets: the tests read what a section says, the width tests how it is laid out.
    let out = twtune()
        .args(["audit", "--all-netns", "--color", "never", "--fail-on", "never"])
        .env("COLUMNS", "1000")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let mut section = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("== ") {
            inside = line.contains(heading);
        } else if line == "Notes" {
            inside = false;
        }
        if inside {
            section.push_str(line);
            section.push('\n');
        }
    }
    assert!(!section.is_empty(), "no section {heading:?} in\n{text}");
    section
}

#[test]
fn the_sweep_finds_named_and_held_namespaces_and_names_their_containers() {
    if !enter("namespaces::the_sweep_finds_named_and_held_namespaces_and_names_their_containers") {
        return;
    }
    private_run_netns();
    run("ip", &["netns", "add", "twtune-blue"]);
    let blue = inode("/run/netns/twtune-blue");
    let docker = Cgroup::with(&format!("docker-{DOCKER_ID}.scope"), Process::holding_a_namespace());
    let pod_path = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CRI_ID}.scope",
        POD_UID.replace('-', "_")
    );
    let pod = Cgroup::with(&pod_path, Process::holding_a_namespace());
    let docker_ns = inode(&format!("/proc/{}/ns/net", docker.pid()));
    let pod_ns = inode(&format!("/proc/{}/ns/net", pod.pid()));
    // Some TIME_WAIT in the test's own namespace, so that its row has numbers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    crate::util::connections(&listener, 5, true);
    let own = inode("/proc/self/ns/net");

    let (status, sweep) = json(&["--all-netns", "--fail-on", "never"]);
    assert_eq!(status, 0, "{sweep:#}");
    assert_eq!(sweep["schema_version"], 6);
    let named = namespace(&sweep, blue);
    assert_eq!(named["netns"]["name"], "twtune-blue", "no process is in it, it is found by its name");
    assert_eq!(named["netns"]["pids"], serde_json::json!([]));
    assert!(named["report"]["sockets"].is_object(), "audited like --netns: {named:#}");

    let held = namespace(&sweep, docker_ns);
    assert_eq!(held["netns"]["pids"], serde_json::json!([docker.pid()]));
    let container = &held["netns"]["container"];
    assert_eq!((container["runtime"].as_str(), container["id"].as_str()), (Some("docker"), Some(DOCKER_ID)));
    assert_eq!(container["short_id"], &DOCKER_ID[..12]);

    let in_pod = &namespace(&sweep, pod_ns)["netns"]["container"];
    assert_eq!(in_pod["runtime"], "containerd");
    assert_eq!((in_pod["pod_uid"].as_str(), in_pod["qos"].as_str()), (Some(POD_UID), Some("burstable")));

    let ours = &namespace(&sweep, own)["report"]["sockets"]["time_wait"];
    assert_eq!(ours["outbound"], 5, "each namespace is read in itself: {ours}");
    assert!(sweep["summary"]["namespaces"].as_u64().expect("count") >= 4, "{:#}", sweep["summary"]);
    assert!(sweep["summary"]["time_wait_outbound"].as_u64().expect("sum") >= 5);

    // At 80 columns every line fits, the long pod name wrapped within its column.
    let narrow = twtune().args(["audit", "--all-netns", "--fail-on", "never"]).output().expect("run");
    let narrow = String::from_utf8_lossy(&narrow.stdout).into_owned();
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    // (How narrow the name column gets depends on the other namespaces of the host: the uid is
    // one word, never cut.)
    assert!(narrow.contains(POD_UID) && narrow.contains("burstable"), "{narrow}");
    let human =
        twtune().args(["audit", "--all-netns", "--fail-on", "never"]).env("COLUMNS", "300").output().expect("run");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success(), "{text}");
    for piece in [
        "twtune audit --all-netns".to_string(),
        "twtune-blue".into(),
        format!("docker {}", &DOCKER_ID[..12]),
        format!("pod {POD_UID} burstable {}", &CRI_ID[..12]),
        format!("net:[{own}]"),
    ] {
        assert!(text.contains(&piece), "{piece:?} missing from\n{text}");
    }

    let metrics = twtune().args(["audit", "--all-netns", "--format", "prometheus"]).output().expect("run");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains(&format!("netns=\"{blue}\",netns_name=\"twtune-blue\"")), "{metrics}");
    assert!(metrics.contains(&format!("container=\"{}\"", &DOCKER_ID[..12])), "{metrics}");
    assert_eq!(metrics.matches("# TYPE twtune_time_wait_sockets gauge").count(), 1, "one family, many namespaces");
    assert!(metrics.contains(&format!("twtune_time_wait_sockets{{netns=\"{own}\"")), "{metrics}");
    crate::outputs::promtool_accepts(&metrics);
    if let Some(python) = crate::outputs::python_with_prometheus_client() {
        let families = crate::outputs::parsed_metrics(&python, &metrics);
        let own_label = own.to_string();
        let outbound = families["twtune_time_wait_sockets"]["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .find(|s| s[1]["netns"].as_str() == Some(own_label.as_str()) && s[1]["direction"] == "outbound")
            .and_then(|s| s[2].as_f64());
        assert_eq!(outbound, Some(5.0), "the reference parser reads each namespace's series");
    }

    // A plain audit points at the others.
    let (_, single) = json(&["--fail-on", "never"]);
    let others = &single["other_namespaces"];
    assert!(others["count"].as_u64().expect("count") >= 3, "{others}");
    // Complete when every process's namespace can be looked at (a sandbox may hide PID 1's even from root).
    let all_readable = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .all(|e| !matches!(std::fs::metadata(e.path().join("ns/net")), Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied));
    assert_eq!(others["complete"], all_readable, "{others}");
    let plain = twtune().args(["audit", "--fail-on", "never"]).output().expect("run");
    assert!(String::from_utf8_lossy(&plain.stdout).contains("`twtune audit --all-netns` audits them"));

    drop((docker, pod));
    run("ip", &["netns", "del", "twtune-blue"]);
}

#[test]
fn a_namespace_deleted_during_the_sweep_is_a_note() {
    if !enter("namespaces::a_namespace_deleted_during_the_sweep_is_a_note") {
        return;
    }
    private_run_netns();
    run("ip", &["netns", "add", "twtune-gone"]);
    let gone = inode("/run/netns/twtune-gone");
    // Debug builds touch this file once they have listed the namespaces, and go on when it is gone.
    let listed = tempfile::tempdir().expect("temp dir");
    let signal = listed.path().join("listed");
    let sweep = Command::new(env!("CARGO_BIN_EXE_twtune"))
        .args(["audit", "--all-netns", "--format", "json", "--fail-on", "never"])
        .env("TWTUNE_TEST_SWEEP_LISTED", &signal)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sweep");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !signal.exists() {
        assert!(std::time::Instant::now() < deadline, "the sweep never listed the namespaces");
        std::thread::sleep(Duration::from_millis(20));
    }
    run("ip", &["netns", "del", "twtune-gone"]);
    std::fs::remove_file(&signal).expect("let the sweep go on");
    let out = sweep.wait_with_output().expect("sweep");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let sweep: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    crate::util::valid_json("audit-all-netns", &out.stdout);
    let notes: Vec<&str> =
        sweep["summary"]["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect();
    assert!(notes.iter().any(|n| n.starts_with(&format!("net:[{gone}]")) && n.contains("disappeared")), "{notes:?}");
    assert!(sweep["summary"]["not_audited"].as_u64().expect("count") >= 1);
    assert!(!sweep["namespaces"].as_array().expect("list").iter().any(|ns| ns["netns"]["inode"] == gone));
}

/// The `persist.drift` finding of `key` in an audit report.
fn drift<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "persist.drift" && f["key"] == key)
        .unwrap_or_else(|| panic!("no persist.drift for {key}: {:#}", report["findings"]))
}

#[test]
fn persistence_findings_outside_the_initial_namespace_say_they_concern_the_hosts() {
    let name = "namespaces::persistence_findings_outside_the_initial_namespace_say_they_concern_the_hosts";
    if !enter(name) || !initial_namespace_known(name) {
        return;
    }
    private_run_netns();
    run("ip", &["netns", "add", "twtune-green"]);
    // A boot value no namespace has at runtime (the default is 9): every namespace drifts from it.
    const KEY: &str = "net.ipv4.tcp_keepalive_probes";
    std::fs::write("/etc/sysctl.d/50-boot.conf", format!("{KEY} = 97\n")).expect("write");
    // The drift of KEY, as it reads where the namespace is the initial one, or says it is not.
    let reads = |f: &Value, outside_the_initial: bool| {
        let message = f["message"].as_str().expect("message");
        let (today, noted) = message.strip_suffix(CONCERNS_THE_HOST).map_or((message, false), |m| (m, true));
        let evidence = f["evidence"].get("namespace").and_then(Value::as_str);
        today.starts_with(&format!("{KEY} is "))
            && today.ends_with(" now, but the next boot sets \"97\" (/etc/sysctl.d/50-boot.conf:1)")
            && noted == outside_the_initial
            && evidence == outside_the_initial.then_some("not the initial network namespace")
    };

    // The test's own namespace, and one entered with --netns: neither is the initial one.
    for args in [&[][..], &["--netns", "twtune-green"]] {
        let (_, report) = json(&[args, &["--fail-on", "never"]].concat());
        let f = drift(&report, KEY);
        assert!(reads(f, true), "{args:?}: {f:#}");
        assert!(f["message"].as_str().is_some_and(|m| m.starts_with(&format!("{KEY} is \"9\" now"))), "{f:#}");
    }

    // The sweep: every namespace says so but the host's, whose finding reads as it always did.
    let (status, sweep) = json(&["--all-netns", "--fail-on", "never"]);
    assert_eq!(status, 0, "{:#}", sweep["summary"]);
    let mut host_seen = false;
    for ns in sweep["namespaces"].as_array().expect("namespaces") {
        let f = drift(&ns["report"], KEY);
        let host = ns["netns"]["host"] == true;
        host_seen |= host;
        assert!(reads(f, !host), "net:[{}] (host: {host}): {f:#}", ns["netns"]["inode"]);
    }
    assert!(host_seen, "the host's namespace is in the sweep: {:#}", sweep["summary"]);
    run("ip", &["netns", "del", "twtune-green"]);
}

#[test]
fn the_owner_of_a_bucket_is_the_process_holding_its_sockets() {
    if !enter("namespaces::the_owner_of_a_bucket_is_the_process_holding_its_sockets") {
        return;
    }
    let _server = Process::peer(&["server", "7001"]);
    let client = Process::peer(&["hold", "7001", "30"]);
    let (_, report) = audit_json(&["--fail-on", "never"]);
    let bucket = &report.sockets.buckets[0];
    assert_eq!(bucket.remote, "127.0.0.1:7001");
    let owners = bucket.owners.as_ref().unwrap_or_else(|| panic!("owners: {bucket:#?}"));
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!((owners[0].pid, owners[0].command.as_str(), owners[0].sockets), (client.pid(), "python3", 30));
    assert_eq!(owners[0].container, None);
    assert_eq!(report.sockets.owners_unavailable, None);
    let text = twtune().args(["audit", "--fail-on", "never"]).output().expect("run");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("held by pid {} python3 30 sockets", client.pid())), "{text}");
    // The sweep names it too, under this namespace's heading, with its fullest bucket.
    let own = format!("== net:[{}] ", inode("/proc/self/ns/net"));
    let section = sweep_section(&own);
    assert!(section.contains("fullest bucket 127.0.0.1 -> 127.0.0.1:7001: held/usable 30/"), "{section}");
    assert!(section.contains(&format!("held by pid {} python3 30 sockets", client.pid())), "{section}");

    // Closed by the client: TIME_WAIT only, which no process owns, and the report says so.
    drop(client);
    // The kernel closes the killed client's sockets; on a loaded machine the FINs take a moment.
    // What matters is a bucket of TIME_WAIT only.
    let mut report = audit_json(&["--fail-on", "never"]).1;
    for _ in 0..50 {
        let b = &report.sockets.buckets[0];
        if b.time_wait == b.count {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        report = audit_json(&["--fail-on", "never"]).1;
    }
    let bucket = &report.sockets.buckets[0];
    assert!(bucket.time_wait == bucket.count && bucket.count >= 25, "{bucket:#?}");
    assert_eq!(bucket.owners.as_ref().map(Vec::len), Some(0), "TIME_WAIT has no owner, and none is guessed");
    let text = twtune().args(["audit", "--fail-on", "never"]).output().expect("run");
    assert!(String::from_utf8_lossy(&text.stdout).contains("no owner: TIME_WAIT sockets belong to no process"));
    let section = sweep_section(&own);
    assert!(section.contains("no owner: TIME_WAIT sockets belong to no process"), "{section}");
}

#[test]
fn without_root_owners_are_null_with_the_reason_and_the_sweep_refuses_in_one_line() {
    if !enter("namespaces::without_root_owners_are_null_with_the_reason_and_the_sweep_refuses_in_one_line") {
        return;
    }
    let _server = Process::peer(&["server", "7002"]);
    let _client = Process::peer(&["hold", "7002", "3"]);
    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_twtune"))
            .args(args)
            .output()
            .expect("setpriv")
    };
    let out = nobody(&["audit", "--format", "json", "--fail-on", "never"]);
    let report: crate::util::Report = serde_json::from_slice(&out.stdout).expect("a report");
    crate::util::valid_json("audit", &out.stdout);
    assert!(report.sockets.buckets[0].owners.is_none());
    assert!(report.sockets.owners_unavailable.as_deref().is_some_and(|why| why.contains("root")));
    assert!(report.other_namespaces.is_some_and(|others| !others.complete), "a lower bound without root");
    if let Some(ct) = &report.conntrack {
        assert!(ct.dumped().is_none(), "no conntrack dump without CAP_NET_ADMIN");
        assert!(ct.table_unavailable.as_deref().is_some_and(|why| why.contains("CAP_NET_ADMIN")), "{ct:?}");
    }

    let out = nobody(&["audit", "--all-netns"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--all-netns") && stderr.contains("root"), "{stderr}");
    assert!(out.stdout.is_empty());

    // Root without CAP_SYS_ADMIN cannot enter a namespace: the sweep fails, it does not pass a gate
    // having audited nothing.
    let out = Command::new("setpriv")
        .args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"])
        .arg(env!("CARGO_BIN_EXE_twtune"))
        .args(["audit", "--all-netns", "--fail-on", "never"])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot enter the network namespace net:[") && stderr.contains("CAP_SYS_ADMIN"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_client_that_does_not_reuse_connections_is_flagged_with_its_pid_and_a_pool_is_not() {
    if !enter("namespaces::a_client_that_does_not_reuse_connections_is_flagged_with_its_pid_and_a_pool_is_not") {
        return;
    }
    let _churn_server = Process::peer(&["server", "7003"]);
    let _pool_server = Process::peer(&["server", "7004"]);
    // Five workers each holding a connection for 60 ms: about 70 new connections a second, each
    // closed by the client.
    let churn = Process::peer(&["churn", "7003", "5", "60"]);
    let pool = Process::peer(&["pool", "7004", "5"]);
    std::thread::sleep(Duration::from_millis(500));
    let (_, report) = audit_json(&["--sample", "2s", "--fail-on", "never"]);
    let flagged = report.with_id("conn.no-reuse");
    assert_eq!(flagged.len(), 1, "{:?}", report.ids());
    let evidence = &flagged[0].evidence;
    assert_eq!(evidence["remote"], "127.0.0.1:7003");
    assert!(evidence["new_per_sec"].as_f64().expect("rate") > 20.0, "{evidence:?}");
    assert!(evidence["mean_lifetime_seconds"].as_f64().expect("life") < 1.0, "{evidence:?}");
    assert!(evidence["closed_here_share"].as_f64().expect("share") >= 0.5, "{evidence:?}");
    assert_eq!(evidence["owners"][0]["pid"], churn.pid(), "{evidence:?}");
    assert!(flagged[0].message.contains(&format!("process {} (python3)", churn.pid())), "{}", flagged[0].message);
    let advice: String = flagged[0].advice.iter().map(|a| a.action.as_str()).collect();
    for piece in ["keep-alive", "MaxIdleConnsPerHost", "nanoseconds", "keepalive", "http-reuse"] {
        assert!(advice.contains(piece), "{piece} missing from the advice");
    }

    let pooled = report.sockets.buckets.iter().find(|b| b.remote == "127.0.0.1:7004").expect("the pool's bucket");
    let churn = pooled.churn.as_ref().expect("sampled");
    assert_eq!((churn.new_per_sec, churn.mean_lifetime_seconds), (0.0, None), "{pooled:#?}");
    let owners = pooled.owners.as_ref().expect("owners");
    assert_eq!((owners[0].pid, owners[0].sockets), (pool.pid(), 5));
    let churning = report.sockets.buckets.iter().find(|b| b.remote == "127.0.0.1:7003").expect("the churn's bucket");
    let rates = churning.churn.as_ref().expect("sampled");
    assert!(rates.closed_here_per_sec > 20.0 && rates.closed_here_share.is_some_and(|s| s >= 0.5), "{rates:?}");
}

/// The story's clients, each a process of its own, told apart by how long the connections they
/// close live, over the reads of one `--sample` window without tracing (the fallback; traced, see
/// tests/integration/trace.rs): one closes on a 2 s request timeout (a server that never answers),
/// one opens a connection per request, and a pool makes as many requests on four connections it
/// keeps. Each finding names its process; the pool gets none.
#[test]
fn a_client_closing_on_a_timeout_one_opening_a_connection_per_request_and_a_pool_are_told_apart() {
    if !enter(
        "namespaces::a_client_closing_on_a_timeout_one_opening_a_connection_per_request_and_a_pool_are_told_apart",
    ) {
        return;
    }
    let _silent = Process::peer(&["silent", "7101"]);
    let _server = Process::peer(&["server", "7102"]);
    let _pool_server = Process::peer(&["server", "7103"]);
    let timeout = Process::peer(&["timeout", "7101", "8", "2000"]);
    // 40 requests a second, each on a connection of its own kept for 200 ms of work: some 8 live at
    // any time, so that the reads (no tracing here) catch one live, and its owner still holding it
    // when the owners are looked up, to name its process even on a loaded machine (with 30 ms, and
    // then with 60 ms on a loaded two-core CI machine, a run of the whole suite missed it).
    let per_request = Process::peer(&["per-request", "7102", "40", "200"]);
    let pool = Process::peer(&["pool", "7103", "4"]);
    std::thread::sleep(Duration::from_millis(2500));
    let (_, report) = audit_json(&["--sample", "5s", "--fail-on", "never", "--top", "50", "--no-trace"]);
    let bucket = |port: u16| {
        let remote = format!("127.0.0.1:{port}");
        report.sockets.buckets.iter().find(|b| b.remote == remote).unwrap_or_else(|| panic!("no bucket to {remote}"))
    };

    let closing = report.with_id("conn.closed-at-timeout");
    assert_eq!(closing.len(), 1, "{:?} {:#?}", report.ids(), bucket(7101).lifetimes);
    let evidence = &closing[0].evidence;
    assert_eq!(evidence["remote"], "127.0.0.1:7101");
    let lifetime = evidence["lifetime_seconds"].as_f64().expect("lifetime");
    assert!((1.8..=2.4).contains(&lifetime), "closes at the 2 s timeout: {evidence:?}");
    assert_eq!(evidence["method"], "reads");
    assert!(closing[0].message.contains("closes the reads timed"), "{}", closing[0].message);
    assert_eq!(evidence["owners"][0]["pid"], timeout.pid(), "{evidence:?} {:#?}", bucket(7101));
    assert!(closing[0].message.contains(&format!("process {} (python3)", timeout.pid())), "{}", closing[0].message);
    assert!(closing[0].message.contains("request timeout"), "{}", closing[0].message);

    let per_connection: Vec<_> =
        report.with_id("conn.no-reuse").into_iter().filter(|f| f.evidence["remote"] == "127.0.0.1:7102").collect();
    assert_eq!(per_connection.len(), 1, "{:?}", report.ids());
    assert_eq!(per_connection[0].evidence["owners"][0]["pid"], per_request.pid());
    assert!(per_connection[0].message.contains("after one request"), "{}", per_connection[0].message);

    let pooled = bucket(7103);
    assert!(
        report.findings.iter().all(|f| !(f.id.starts_with("conn.") && f.evidence["remote"] == "127.0.0.1:7103")),
        "{:?}",
        report.ids()
    );
    assert_eq!(pooled.owners.as_ref().expect("owners")[0].pid, pool.pid());
    assert_eq!(pooled.lifetimes.as_ref().map(|l| l.closed_here), None, "a pool closes nothing: {pooled:#?}");
}

/// Whether an unprivileged user (nobody) may make its own user and network namespaces here; under
/// CI it must be able to.
fn unprivileged_user_namespaces(test_name: &str) -> bool {
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user", "--map-root-user", "--net"])
        .arg("true")
        .status()
        .expect("run setpriv");
    if status.success() {
        return true;
    }
    let why = "an unprivileged user cannot make a user namespace here (user.max_user_namespaces, \
               kernel.unprivileged_userns_clone or an LSM forbids it)";
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{test_name}: {why}");
    eprintln!("SKIPPED {test_name}: {why}");
    false
}

#[test]
fn a_users_own_namespace_is_marked_read_without_tools_and_left_out_of_the_exit_status_on_request() {
    const NAME: &str =
        "namespaces::a_users_own_namespace_is_marked_read_without_tools_and_left_out_of_the_exit_status_on_request";
    if !enter(NAME) || !unprivileged_user_namespaces(NAME) {
        return;
    }
    // nobody, root in a user namespace of its own, narrows the port range of its own network
    // namespace: a critical finding there (ports.pool-too-small) under a name it chose.
    let script = "echo '40000 40199' > /proc/sys/net/ipv4/ip_local_port_range && echo ready; exec sleep 600";
    let user = Process::ready(
        "setpriv",
        &["--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user", "--map-root-user", "--net"]
            .into_iter()
            .chain(["sh", "-c", script])
            .collect::<Vec<_>>(),
    );
    let users = inode(&format!("/proc/{}/ns/net", user.pid()));
    let own = inode("/proc/self/ns/net");

    let (status, sweep) = json(&["--all-netns", "--fail-on", "crit"]);
    let theirs = namespace(&sweep, users);
    assert_eq!(theirs["netns"]["user_namespace"], serde_json::json!({"initial": false, "owner_uid": 65534}));
    assert_eq!(namespace(&sweep, own)["netns"]["user_namespace"]["initial"], true, "root made the test's own");
    let ids: Vec<&str> = theirs["report"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| (f["severity"] == "crit").then(|| f["id"].as_str()).flatten())
        .collect();
    assert!(ids.contains(&"ports.pool-too-small"), "{ids:?}");
    assert_eq!((sweep["summary"]["user_namespaces"].as_u64(), status), (Some(1), 1), "counted by default");
    // No program runs in it: its NAT rules are read over twtune's own netlink socket, connected
    // to the kernel, which its owner cannot answer in the kernel's place.
    if !theirs["report"]["conntrack"].is_null() {
        let source = theirs["report"]["conntrack"]["nat_range_source"].as_str().expect("source");
        assert!(source.contains("no source-NAT rule in nf_tables"), "{source}");
    }

    // --ignore-user-netns: the exit status is the other namespaces' alone.
    let (status, sweep) = json(&["--all-netns", "--fail-on", "crit", "--ignore-user-netns"]);
    assert_eq!(sweep["summary"]["user_namespaces_counted"], false);
    let others_crit = sweep["namespaces"].as_array().expect("namespaces").iter().any(|ns| {
        ns["netns"]["inode"] != users
            && ns["report"]["findings"].as_array().is_some_and(|f| f.iter().any(|f| f["severity"] == "crit"))
    });
    assert_eq!(status, i32::from(others_crit), "{:#}", sweep["summary"]);

    let out = twtune()
        .args(["audit", "--all-netns", "--color", "never", "--fail-on", "never", "--ignore-user-netns"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    let heading = format!("== net:[{users}] pid {} (sleep) (owned by uid 65534, not counted) ==", user.pid());
    assert!(text.contains(&heading), "{text}");
    assert!(text.contains("owned by a user namespace other than the host's"), "{text}");
}
