//! Runs a test on the real kernel inside fresh network and mount namespaces, never on the host.
//!
//! A test calls [`enter`] with its own name. In the normal run that re-executes this test binary for
//! that one test under `unshare --net --mount` and checks it passed there; in the re-executed run,
//! [`enter`] verifies that the process really is in a network namespace of its own before the test
//! may write a sysctl or make a socket.
//!
//! Without the privilege to create namespaces the test is skipped with a message, except under
//! `CI=true`, where that is a failure: CI runs as root and must run these tests.

use std::path::Path;
use std::process::Command;

/// Set in the environment of the re-executed test to the network namespace it was started from.
const INSIDE: &str = "TWTUNE_TEST_IN_NETNS";

/// `true`: we are inside a private namespace; run the test body. `false`: the body already ran in
/// a namespace (and passed), or was skipped outside CI.
pub(crate) fn enter(test_name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        assert_private_network_namespace();
        hide_host_sysctl_config();
        run("ip", &["link", "set", "lo", "up"]);
        return true;
    }
    if let Err(why) = namespaces_available() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test_name}: cannot create a network namespace ({why}); CI must run as root with unshare");
        }
        eprintln!("SKIPPED {test_name}: cannot create a network namespace ({why}); run the tests as root");
        return false;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let output = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, own_network_namespace())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test_name} failed inside its network namespace\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    false
}

/// Runs the ignored test `test_name` of this binary in fresh network and mount namespaces of its
/// own, with `env`, and returns what it printed; panics unless it passed. The test calls [`enter`]
/// first, which sets the namespaces up as for any test (and returns `true` there).
pub(crate) fn run_inside(test_name: &str, env: &[(&str, String)]) -> String {
    let exe = std::env::current_exe().expect("path of the test binary");
    let output = Command::new("unshare")
        .args(["--net", "--mount", "--"])
        .arg(exe)
        .args([test_name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(INSIDE, own_network_namespace())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test_name} {env:?} failed inside its namespaces\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn namespaces_available() -> Result<(), String> {
    match Command::new("unshare").args(["--net", "--mount", "true"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("unshare: {e}")),
    }
}

fn own_network_namespace() -> String {
    let link = std::fs::read_link("/proc/self/ns/net").expect("read own network namespace");
    link.to_string_lossy().into_owned()
}

/// Panics unless this process's network namespace differs from the one the test run started in and,
/// where it can be read, from PID 1's (the host's).
pub(crate) fn assert_private_network_namespace() {
    let ours = own_network_namespace();
    let started_in = std::env::var(INSIDE).unwrap_or_default();
    let pid1 = std::fs::read_link("/proc/1/ns/net").map(|l| l.to_string_lossy().into_owned()).ok();
    let private = started_in.starts_with("net:[") && ours != started_in && pid1.is_none_or(|host| host != ours);
    assert!(private, "refusing to touch sysctls or sockets outside a private network namespace ({ours})");
}

/// Whether twtune can tell the host's initial network namespace from here, as it does: PID 2 is
/// kthreadd (this is the host's PID namespace) and its namespace can be looked at. Where it cannot,
/// twtune behaves as it did before it could tell, and a test of the difference is skipped with a
/// message, except under `CI=true`, where that is a failure: CI runs as root on the host's PIDs.
pub(crate) fn initial_namespace_known(test_name: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let top_pid_namespace =
        status.lines().find_map(|l| l.strip_prefix("NSpid:")).is_some_and(|p| p.split_whitespace().count() == 1);
    let kthreadd = std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim_end() == "kthreadd");
    if top_pid_namespace && kthreadd && std::fs::read_link("/proc/2/ns/net").is_ok() {
        return true;
    }
    let why = "the host's initial network namespace (kthreadd's, PID 2) cannot be seen from here";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test_name}: {why}; CI must run as root in the host's PID namespace");
    }
    eprintln!("SKIPPED {test_name}: {why}");
    false
}

/// Every directory either boot order reads sysctl files from.
pub(crate) const SYSCTL_DIRS: &[&str] =
    &["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];

/// Covers every sysctl.d directory with an empty tmpfs and /etc/sysctl.conf with /dev/null, in this
/// private mount namespace only, so that no test reads the host's configuration and nothing (such as
/// `sysctl --system`) can apply it or write to it.
fn hide_host_sysctl_config() {
    assert_private_mount_namespace();
    for dir in SYSCTL_DIRS {
        if Path::new(dir).is_dir() {
            run("mount", &["-t", "tmpfs", "-o", "size=1m", "twtune-test", dir]);
        }
    }
    if Path::new("/etc/sysctl.conf").exists() {
        run("mount", &["--bind", "/dev/null", "/etc/sysctl.conf"]);
    }
}

/// Panics unless this process's mount namespace differs from PID 1's, where that can be read. (The
/// re-execution always goes through `unshare --mount`; this guards against a stray environment.)
fn assert_private_mount_namespace() {
    let ours = std::fs::read_link("/proc/self/ns/mnt").expect("read own mount namespace");
    if let Ok(host) = std::fs::read_link("/proc/1/ns/mnt") {
        assert_ne!(ours, host, "refusing to mount over the host's sysctl configuration");
    }
}

/// Writes a sysctl of this private network namespace.
pub(crate) fn set_sysctl(key: &str, value: &str) {
    assert_private_network_namespace();
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Reads a sysctl of this namespace, whitespace folded.
pub(crate) fn sysctl(key: &str) -> String {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs a command and panics with its output unless it succeeds.
pub(crate) fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}
