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
    let binary = go_build(dir, GO_CLIENT, "fasthttp_client");
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
    let Some((python, interpreter, requests)) = venv_with("requests") else {
        missing(TEST, "the test venv with requests (TWTUNE_PYTHON)");
        return;
    };
    let (interpreter, requests) = (interpreter.as_str(), requests.as_str());
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
    // Other HTTP clients installed in the venv may be named beside it (installed is not imported).
    let runs = format!("running Python {interpreter} with ");
    let message = &flagged[0].message;
    assert!(message.contains(&runs) && message.contains(&format!("requests {requests}")), "{message}");
    let first = &flagged[0].advice[0].action;
    let expected = format!("Process {} (python) runs requests {requests}: requests.get()", client.pid());
    assert!(first.starts_with(&expected) && first.contains("requests.Session"), "the library's fix first: {first}");

    // The human report names it next to the owner.
    let out =
        twtune().args(["audit", "--sample", "3s", "--fail-on", "never"]).env("COLUMNS", "200").output().expect("audit");
    let text = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    let named = text.split(&format!("[Python {interpreter} with ")).nth(1).and_then(|rest| rest.split(']').next());
    assert!(named.is_some_and(|n| n.contains(&format!("requests {requests}"))), "{text}");
}

/// The `conn.no-reuse` finding for `remote` of an audit sampling `sample`: its message, the
/// actions of its advice, and the identity of its first owner, which must be `pid`.
fn no_reuse_named(remote: &str, pid: u32, sample: &str) -> (String, Vec<String>, Value) {
    let (_, report) = audit_json(&["--sample", sample, "--fail-on", "never", "--top", "50"]);
    let flagged: Vec<_> =
        report.with_id("conn.no-reuse").into_iter().filter(|f| f.evidence["remote"] == remote).collect();
    assert_eq!(flagged.len(), 1, "no-reuse toward {remote}: {:?}", report.ids());
    let owner = &flagged[0].evidence["owners"][0];
    assert_eq!(owner["pid"], pid, "{owner}");
    let advice = flagged[0].advice.iter().map(|a| a.action.clone()).collect();
    (flagged[0].message.clone(), advice, owner["identity"].clone())
}

/// The test venv's interpreter, if `import MODULE` works in it, with its `MAJOR.MINOR` and the
/// module's version.
fn venv_with(module: &str) -> Option<(String, String, String)> {
    let python = std::env::var("TWTUNE_PYTHON").ok()?;
    let code = format!("import sys, {module}; print('%d.%d' % sys.version_info[:2], {module}.__version__)");
    let out = Command::new(&python).args(["-c", &code]).output().ok().filter(|out| out.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (interpreter, version) = text.split_once(' ')?;
    Some((python, interpreter.to_string(), version.to_string()))
}

/// Builds a Go program of the standard library alone, offline, with Debian's Go.
fn build_go(source: &str, dir: &Path, name: &str) -> PathBuf {
    std::fs::write(dir.join("go.mod"), format!("module example.com/{name}\n\ngo 1.19\n")).expect("go.mod");
    go_build(dir, source, name)
}

/// `go build` of `source` (as `main.go`) in the module `dir`, whose go.mod (and vendor/, if it
/// has one) is written, offline with Debian's Go, into `dir/name`.
fn go_build(dir: &Path, source: &str, name: &str) -> PathBuf {
    std::fs::copy(source, dir.join("main.go")).expect("main.go");
    let binary = dir.join(name);
    let out = Command::new(GO)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("GOCACHE", std::env::temp_dir().join("twtune-test-gocache"))
        .env("GOFLAGS", if dir.join("vendor").exists() { "-mod=vendor" } else { "" })
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("run go build");
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    binary
}

#[test]
fn a_go_net_http_client_making_a_transport_per_request_is_named_with_go_and_the_net_http_fix() {
    const TEST: &str =
        "culprit::a_go_net_http_client_making_a_transport_per_request_is_named_with_go_and_the_net_http_fix";
    if !enter(TEST) || !Path::new(GO).exists() && missing(TEST, "Debian's Go toolchain (golang-go)") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/nethttp_client/main.go");
    let binary = build_go(source, dir.path(), "nethttp_client");
    let _server = Process::ready("python3", &[HTTP_PEERS, "server", "7401"]);
    let client = Process::ready(binary.to_str().expect("path"), &["http://127.0.0.1:7401/", "8"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (message, advice, identity) = no_reuse_named("127.0.0.1:7401", client.pid(), "4s");
    let go = go_version();
    assert_eq!((&identity["runtime"], &identity["version"]), (&Value::from("go"), &Value::from(go.as_str())));
    assert_eq!(identity["main_module"], "example.com/nethttp_client");
    assert!(message.contains(&format!("running Go {go},")), "{message}");
    let expected =
        format!("Process {} (nethttp_client) runs Go {go}: if it uses the standard library's net/http", client.pid());
    assert!(advice[0].starts_with(&expected) && advice[0].contains("MaxIdleConnsPerHost"), "{advice:?}");
}

#[test]
fn a_python_aiohttp_client_making_a_session_per_request_is_named_with_its_versions_and_fix() {
    const TEST: &str =
        "culprit::a_python_aiohttp_client_making_a_session_per_request_is_named_with_its_versions_and_fix";
    if !enter(TEST) {
        return;
    }
    let Some((python, interpreter, aiohttp)) = venv_with("aiohttp") else {
        missing(TEST, "the test venv with aiohttp (TWTUNE_PYTHON)");
        return;
    };
    let _server = Process::ready("python3", &[HTTP_PEERS, "server", "7501"]);
    let client = Process::ready(&python, &[HTTP_PEERS, "aiohttp", "7501", "8"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (message, advice, identity) = no_reuse_named("127.0.0.1:7501", client.pid(), "4s");
    assert_eq!(
        (&identity["runtime"], &identity["version"]),
        (&Value::from("python"), &Value::from(interpreter.as_str()))
    );
    let found = library(&identity, "aiohttp");
    assert_eq!(
        (&found["version"], &found["found_in"]),
        (&Value::from(aiohttp.as_str()), &"mapped".into()),
        "{identity}"
    );
    assert!(message.contains(&format!("with aiohttp {aiohttp}")), "{message}");
    let first = advice.iter().find(|a| a.contains("aiohttp")).expect("the aiohttp fix");
    let expected =
        format!("Process {} (python) runs aiohttp {aiohttp}: a ClientSession made per request", client.pid());
    assert!(first.starts_with(&expected) && first.contains("one ClientSession"), "{advice:?}");
    assert!(advice[0].contains("aiohttp"), "the library's fix first: {advice:?}");
}

/// nginx's configuration for the proxy test: a server on 127.0.0.1:PORT proxying `/` to the
/// backend at BACKEND by address, without an upstream block; an upstream block with keepalive
/// and one without it, included from conf.d/.
fn nginx_config(dir: &Path, port: u16, backend: u16) -> PathBuf {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("conf.d")).expect("conf.d");
    std::fs::write(dir.join("conf.d/upstreams.conf"), format!(
        "upstream pooled {{ server 127.0.0.1:{backend}; keepalive 16; }}\nupstream plain {{ server 127.0.0.1:{backend}; }}\n"
    )).expect("upstreams.conf");
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n    include conf.d/*.conf;\n    server {{\n        listen 127.0.0.1:{port};\n\
         location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n        location /p {{ proxy_pass http://plain; }}\n\
         location /k {{ proxy_pass http://pooled; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n    }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    path
}

/// An nginx master, stopped with SIGTERM (which stops its workers too) when dropped.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// The pid of the one worker of the nginx master `master`.
fn nginx_worker(master: u32) -> u32 {
    for _ in 0..100 {
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nginx {master} started no worker");
}

#[test]
fn nginx_proxying_without_upstream_keepalive_is_named_with_its_version_configuration_and_fix() {
    const TEST: &str =
        "culprit::nginx_proxying_without_upstream_keepalive_is_named_with_its_version_configuration_and_fix";
    const NGINX: &str = "/usr/sbin/nginx";
    if !enter(TEST) || !Path::new(NGINX).exists() && missing(TEST, "Debian's nginx") {
        return;
    }
    let Some((python, _, _)) = venv_with("requests") else {
        missing(TEST, "the test venv with requests (TWTUNE_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let conf = nginx_config(dir.path(), 7601, 7602);
    let _backend = Process::ready("python3", &[HTTP_PEERS, "backend", "7602"]);
    let master = Nginx(Command::new(NGINX).args(["-c", conf.to_str().expect("path")]).spawn().expect("nginx"));
    let worker = nginx_worker(master.0.id());
    for _ in 0..100 {
        if std::net::TcpStream::connect("127.0.0.1:7601").is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _load = Process::ready(&python, &[HTTP_PEERS, "session", "7601", "8"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (message, advice, identity) = no_reuse_named("127.0.0.1:7602", worker, "4s");
    let version = upstream_version("nginx").expect("nginx's package version");
    assert_eq!((&identity["runtime"], &identity["version"]), (&Value::from("nginx"), &Value::from(version.as_str())));
    let config = &identity["proxy_config"];
    assert_eq!(config["path"], conf.to_str().expect("path"), "read from the master's -c: {identity}");
    assert_eq!(config["files_read"], 2, "{config}");
    assert_eq!(
        (&config["upstreams_without_keepalive"], &config["upstreams_with_keepalive"]),
        (&Value::from(vec!["plain"]), &Value::from(vec!["pooled"]))
    );
    assert_eq!(config["direct_proxy_pass"], Value::from(vec!["http://127.0.0.1:7602"]), "{config}");
    assert!(message.contains(&format!("running nginx {version}")), "{message}");
    let expected = format!("Process {worker} (nginx) runs nginx {version}: proxying without `keepalive`");
    assert!(advice[0].starts_with(&expected), "the nginx fix first: {advice:?}");
    assert!(
        advice[0].contains("upstream `plain` without keepalive")
            && advice[0].contains("proxy_pass to `http://127.0.0.1:7602`, which names no upstream block"),
        "worded with what was read: {advice:?}"
    );
}

#[test]
fn a_java_apache_httpclient_4_client_built_per_request_is_named_with_its_versions_and_fix() {
    const TEST: &str =
        "culprit::a_java_apache_httpclient_4_client_built_per_request_is_named_with_its_versions_and_fix";
    const JAVA_HOME: &str = "/usr/lib/jvm/java-17-openjdk-amd64";
    if !enter(TEST)
        || !Path::new(&format!("{JAVA_HOME}/bin/javac")).exists() && missing(TEST, "openjdk-17-jdk-headless")
    {
        return;
    }
    let Some(httpclient) = upstream_version("libhttpclient-java") else {
        missing(TEST, "libhttpclient-java");
        return;
    };
    let release = std::fs::read_to_string(format!("{JAVA_HOME}/release")).expect("release");
    let java_version =
        release.lines().find_map(|l| l.strip_prefix("JAVA_VERSION=")).expect("JAVA_VERSION").trim_matches('"');
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/HttpClientChurn.java");
    let classpath = "/usr/share/java/httpclient.jar:/usr/share/java/httpcore.jar:/usr/share/java/commons-logging.jar";
    let _server = Process::ready("python3", &[HTTP_PEERS, "server", "7701"]);
    let client =
        Process::ready(&format!("{JAVA_HOME}/bin/java"), &["-cp", classpath, source, "http://127.0.0.1:7701/", "8"]);
    std::thread::sleep(Duration::from_millis(2000));
    let (message, advice, identity) = no_reuse_named("127.0.0.1:7701", client.pid(), "4s");
    assert_eq!((&identity["runtime"], &identity["version"]), (&Value::from("java"), &Value::from(java_version)));
    let found = library(&identity, "httpclient");
    assert_eq!(
        (&found["version"], &found["found_in"]),
        (&Value::from(httpclient.as_str()), &"open".into()),
        "{identity}"
    );
    assert!(message.contains(&format!("running Java {java_version} with httpclient {httpclient}")), "{message}");
    let expected = format!(
        "Process {} (java) runs httpclient {httpclient}: a CloseableHttpClient built per request",
        client.pid()
    );
    assert!(advice[0].starts_with(&expected) && advice[0].contains("PoolingHttpClientConnectionManager"), "{advice:?}");
}

#[test]
fn a_node_client_making_an_http_agent_per_request_is_named_with_its_version_and_fix() {
    const TEST: &str = "culprit::a_node_client_making_an_http_agent_per_request_is_named_with_its_version_and_fix";
    const NODE: &str = "/usr/bin/node";
    if !enter(TEST) || !Path::new(NODE).exists() && missing(TEST, "Node.js (nodejs)") {
        return;
    }
    let printed = Command::new(NODE).arg("--version").output().expect("node --version");
    let printed = String::from_utf8_lossy(&printed.stdout).trim().to_string();
    let major: u32 = printed.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).expect("major");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/node_churn.js");
    let _server = Process::ready("python3", &[HTTP_PEERS, "server", "7801"]);
    let client = Process::ready(NODE, &[source, "7801", "8"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (message, advice, identity) = no_reuse_named("127.0.0.1:7801", client.pid(), "4s");
    assert_eq!(identity["runtime"], "node", "{identity}");
    // The whole version from a release build's binary, the major alone from Debian's libnode soname.
    let version = identity["version"].as_str().expect("a version").to_string();
    assert!(version == printed || version == major.to_string(), "{version} is neither {printed} nor {major}");
    assert!(message.contains(&format!("running Node.js {version},")), "{message}");
    let agent = advice.iter().position(|a| a.contains("if it makes an http.Agent per request")).expect("{advice:?}");
    let before_19 = advice.iter().position(|a| a.contains("before Node.js 19"));
    assert_eq!(before_19.is_some(), major < 19, "the global agent's fix only before 19: {advice:?}");
    assert_eq!(agent, usize::from(major < 19), "the runtime's fixes first: {advice:?}");
    assert!(advice[0].starts_with(&format!("Process {} (node) runs Node.js {version}:", client.pid())), "{advice:?}");
}
