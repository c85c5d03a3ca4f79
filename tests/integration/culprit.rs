//! Naming the culprit on real programs, each churning in a private network namespace: a Go client
//! built here in module mode with Debian's Go toolchain against Debian's fasthttp (vendored from
//! /usr/share/gocode, so its real version is in the binary's build information) that closes its
//! connection on every read timeout, and a Python client calling `requests.get()` without a
//! Session from the test virtual environment. The audit must name the process, its runtime and
//! version, the library and its version, and put the library's fix first.
//!
//! Under `CI=true` a missing toolchain or package fails the test; elsewhere the test is skipped
//! with a message (scripts/test installs golang-go, golang-github-valyala-fasthttp-dev, and
//! requests into the venv).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::namespaces::Process;
use crate::netns::enter;
use crate::util::{audit_json, twtune};

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/peers.py");
const HTTP_PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/http_peers.py");
const GO_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/fasthttp_client/main.go");
const GO: &str = "/usr/bin/go";

/// The modules the fasthttp client needs, with the Debian package each comes from and the
/// packages of it that are imported (`""`: the module's root package).
const VENDORED: &[(&str, &str, &[&str])] = &[
    ("github.com/andybalholm/brotli", "golang-github-andybalholm-brotli-dev", &[""]),
    ("github.com/klauspost/compress", "golang-github-klauspost-compress-dev", &["flate", "gzip", "zlib"]),
    ("github.com/valyala/bytebufferpool", "golang-github-valyala-bytebufferpool-dev", &[""]),
    ("github.com/valyala/fasthttp", "golang-github-valyala-fasthttp-dev", &["", "stackless"]),
];

/// Skips the test outside CI, fails it under CI, when `what` is missing.
fn missing(test: &str, what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {what} is missing; scripts/test installs it");
    }
    eprintln!("SKIPPED {test}: {what} is missing (scripts/test installs it)");
    true
}

/// The upstream version of an installed Debian package: `1:1.31.0-4` gives `1.31.0`,
/// `1.15.12+ds1-3` gives `1.15.12`.
fn upstream_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]).output().ok()?;
    let full = String::from_utf8(out.stdout).ok().filter(|v| out.status.success() && !v.is_empty())?;
    let without_epoch = full.split_once(':').map_or(full.as_str(), |(_, v)| v);
    let without_revision = without_epoch.rsplit_once('-').map_or(without_epoch, |(v, _)| v);
    Some(without_revision.split(['+', '~']).next().unwrap_or_default().to_string())
}

/// Builds the fasthttp client in `dir` in module mode, offline, its modules vendored (linked) from
/// Debian's /usr/share/gocode at the versions of their packages. Returns the binary and the
/// fasthttp version it carries.
fn build_fasthttp_client(dir: &Path) -> (PathBuf, String) {
    let mut require = String::new();
    let mut modules = String::new();
    let mut fasthttp = String::new();
    for (module, package, imported) in VENDORED {
        let version = upstream_version(package).unwrap_or_else(|| panic!("{package} is not installed"));
        let link = dir.join("vendor").join(module);
        std::fs::create_dir_all(link.parent().expect("parent")).expect("vendor directory");
        std::os::unix::fs::symlink(Path::new("/usr/share/gocode/src").join(module), &link).expect("vendor link");
        require.push_str(&format!("\t{module} v{version}\n"));
        modules.push_str(&format!("# {module} v{version}\n## explicit; go 1.17\n"));
        for sub in *imported {
            modules.push_str(&format!("{module}{}{sub}\n", if sub.is_empty() { "" } else { "/" }));
        }
        if module.ends_with("fasthttp") {
            fasthttp = format!("v{version}");
        }
    }
    std::fs::write(
        dir.join("go.mod"),
        format!("module example.com/twtune-churn\n\ngo 1.19\n\nrequire (\n{require})\n"),
    )
    .expect("go.mod");
    std::fs::write(dir.join("vendor/modules.txt"), modules).expect("modules.txt");
    std::fs::copy(GO_CLIENT, dir.join("main.go")).expect("main.go");
    let binary = dir.join("fasthttp_client");
    let out = Command::new(GO)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("GOCACHE", std::env::temp_dir().join("twtune-test-gocache"))
        .env("GOFLAGS", "-mod=vendor")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("run go build");
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    (binary, fasthttp)
}

/// The Go version of the toolchain (`go1.19.8`).
fn go_version() -> String {
    let out = Command::new(GO).args(["env", "GOVERSION"]).env("GOTOOLCHAIN", "local").output().expect("go env");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// Whether `version` (`v1.31.0`) is older than fasthttp v1.39.0, where closing on a timeout changed.
fn before_1_39(version: &str) -> bool {
    let parts: Vec<u64> = version.trim_start_matches('v').split('.').filter_map(|p| p.parse().ok()).collect();
    parts < vec![1, 39, 0]
}

/// The library `name` among an identity's.
fn library<'a>(identity: &'a Value, name: &str) -> &'a Value {
    let libraries = identity["libraries"].as_array().expect("libraries");
    libraries.iter().find(|l| l["name"] == name).unwrap_or_else(|| panic!("{name} not among {identity}"))
}

#[test]
fn a_go_fasthttp_client_closing_on_its_read_timeout_is_named_with_its_versions_and_fix() {
    const TEST: &str = "culprit::a_go_fasthttp_client_closing_on_its_read_timeout_is_named_with_its_versions_and_fix";
    if !enter(TEST) {
        return;
    }
    if !Path::new(GO).exists() && missing(TEST, "Debian's Go toolchain (golang-go)")
        || upstream_version("golang-github-valyala-fasthttp-dev").is_none()
            && missing(TEST, "golang-github-valyala-fasthttp-dev")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let (binary, fasthttp) = build_fasthttp_client(dir.path());
    let _silent = Process::ready("python3", &[PEERS, "silent", "7201"]);
    let client = Process::ready(binary.to_str().expect("path"), &["http://127.0.0.1:7201/", "8", "2000"]);
    std::thread::sleep(Duration::from_millis(2500));
    let (_, report) = audit_json(&["--sample", "5s", "--fail-on", "never", "--top", "50"]);

    let closing = report.with_id("conn.closed-at-timeout");
    assert_eq!(closing.len(), 1, "{:?}", report.ids());
    let owner = &closing[0].evidence["owners"][0];
    assert_eq!(owner["pid"], client.pid(), "{owner}");
    let identity = &owner["identity"];
    let go = go_version();
    assert_eq!((&identity["runtime"], &identity["version"]), (&Value::from("go"), &Value::from(go.as_str())));
    assert_eq!(identity["main_module"], "example.com/twtune-churn");
    let found = library(identity, "github.com/valyala/fasthttp");
    assert_eq!((&found["version"], &found["found_in"]), (&Value::from(fasthttp.as_str()), &"build information".into()));
    let runs = format!("running Go {go} with github.com/valyala/fasthttp {fasthttp},");
    assert!(closing[0].message.contains(&format!("process {} (fasthttp_client), {runs}", client.pid())));

    let bucket = report.sockets.buckets.iter().find(|b| b.remote == "127.0.0.1:7201").expect("the client's bucket");
    let owners = bucket.owners.as_ref().expect("owners");
    assert_eq!(owners[0].identity.as_ref(), Some(identity), "the bucket's owner carries the same identity");

    let advice = &closing[0].advice;
    let fix = if before_1_39(&fasthttp) { "before v1.39.0 ReadTimeout" } else { "from v1.39.0 a client timeout" };
    let expected =
        format!("Process {} (fasthttp_client) runs github.com/valyala/fasthttp {fasthttp}: {fix}", client.pid());
    assert!(advice[0].action.starts_with(&expected), "the library's fix first: {advice:?}");
    assert!(advice[0].action.contains("PR #1346"), "{advice:?}");
    assert!(advice[1].action.starts_with("Find what times out after 2."), "then the general advice: {advice:?}");
}

#[test]
fn a_python_client_calling_requests_without_a_session_is_named_with_its_versions_and_fix() {
    const TEST: &str = "culprit::a_python_client_calling_requests_without_a_session_is_named_with_its_versions_and_fix";
    if !enter(TEST) {
        return;
    }
    let python = std::env::var("TWTUNE_PYTHON").unwrap_or_default();
    let versions = Command::new(&python)
        .args(["-c", "import sys, requests; print('%d.%d' % sys.version_info[:2], requests.__version__)"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    let Some(versions) = versions else {
        missing(TEST, "the test venv with requests (TWTUNE_PYTHON)");
        return;
    };
    let (interpreter, requests) = versions.split_once(' ').expect("two versions");
    let _server = Process::ready("python3", &[HTTP_PEERS, "server", "7301"]);
    let client = Process::ready(&python, &[HTTP_PEERS, "requests", "7301", "8"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, report) = audit_json(&["--sample", "4s", "--fail-on", "never", "--top", "50"]);

    let flagged: Vec<_> =
        report.with_id("conn.no-reuse").into_iter().filter(|f| f.evidence["remote"] == "127.0.0.1:7301").collect();
    assert_eq!(flagged.len(), 1, "{:?}", report.ids());
    let owner = &flagged[0].evidence["owners"][0];
    assert_eq!(owner["pid"], client.pid(), "{owner}");
    let identity = &owner["identity"];
    assert_eq!((&identity["runtime"], &identity["version"]), (&Value::from("python"), &Value::from(interpreter)));
    let found = library(identity, "requests");
    assert_eq!(found["version"], requests, "{identity}");
    let runs = format!("running Python {interpreter} with requests {requests}");
    assert!(flagged[0].message.contains(&runs), "{}", flagged[0].message);
    let first = &flagged[0].advice[0].action;
    let expected = format!("Process {} (python) runs requests {requests}: requests.get()", client.pid());
    assert!(first.starts_with(&expected) && first.contains("requests.Session"), "the library's fix first: {first}");

    // The human report names it next to the owner.
    let out =
        twtune().args(["audit", "--sample", "3s", "--fail-on", "never"]).env("COLUMNS", "200").output().expect("audit");
    let text = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains(&format!("[Python {interpreter} with requests {requests}")), "{text}");
}
