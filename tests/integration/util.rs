//! Shared test helpers: running the binary, fixture paths, and the JSON report schema as tests expect it.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde::Deserialize;

/// The `twtune` binary with an environment that does not leak the developer's colour settings.
pub fn twtune() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twtune"));
    for var in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "TERM"] {
        cmd.env_remove(var);
    }
    cmd
}

/// A captured root under tests/fixtures/roots.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roots").join(name)
}

/// `n` connections to `listener`; the client closes first (TIME_WAIT on the client side) or the
/// server does (TIME_WAIT on the listening port).
pub fn connections(listener: &TcpListener, n: usize, client_closes: bool) {
    let target = listener.local_addr().expect("listener address");
    for _ in 0..n {
        let client = TcpStream::connect(target).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let (first, mut second) = if client_closes { (client, server) } else { (server, client) };
        drop(first);
        // Wait for the FIN so that the close order is what the caller asked for.
        assert_eq!(second.read(&mut [0u8; 1]).expect("read EOF"), 0);
    }
}

/// Copies a tree, keeping symbolic links as links.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("type");
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).expect("link"), &target).expect("symlink");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs `twtune audit --format json` with extra arguments and returns (exit code, report).
pub fn audit_json(args: &[&str]) -> (i32, Report) {
    let output = twtune().arg("audit").args(["--format", "json"]).args(args).output().expect("run twtune");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 JSON");
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("not a report ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status.code().expect("exit code"), report)
}

// The JSON contract of docs/json-schema.md, declared independently of the code that writes it, with
// unknown fields refused so that a silent change of the document fails here.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema_version: u32,
    pub twtune_version: String,
    pub kernel: String,
    pub profile: Option<ProfileSummary>,
    pub settings: std::collections::BTreeMap<String, Option<String>>,
    pub counters: std::collections::BTreeMap<String, i64>,
    pub sockets: Sockets,
    pub config: ConfigFiles,
    pub thresholds: Thresholds,
    pub rates: Option<Rates>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub interval_seconds: f64,
    pub active_opens_per_sec: f64,
    pub passive_opens_per_sec: f64,
    pub time_wait_entries_per_sec: f64,
    pub overflow_per_sec: f64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub port_warn_pct: f64,
    pub port_crit_pct: f64,
    pub min_time_wait: u64,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFiles {
    pub systemd: Vec<String>,
    pub procps: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileSummary {
    pub name: String,
    pub source: String,
    pub chain: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sockets {
    pub source: String,
    pub total: u64,
    pub states: std::collections::BTreeMap<String, u64>,
    pub time_wait: TimeWait,
    pub listening_ports: Vec<u16>,
    pub ephemeral: Ephemeral,
    pub bucket_count: usize,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TimeWait {
    pub total: u64,
    pub outbound: u64,
    pub inbound: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ephemeral {
    pub range: String,
    pub size: u32,
    pub reserved_in_range: u32,
    pub listeners_in_range: Vec<u16>,
    pub usable_ports: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub local_ip: String,
    pub remote: String,
    pub count: u32,
    pub time_wait: u32,
    pub usable_ports: u32,
    pub usage_pct: f64,
    pub growth_per_sec: Option<f64>,
    pub seconds_to_exhaustion: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub id: String,
    pub severity: String,
    pub key: Option<String>,
    pub current: Option<String>,
    pub recommended: Option<String>,
    pub message: String,
    pub risk: String,
    pub evidence: serde_json::Map<String, serde_json::Value>,
    pub advice: Vec<Advice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advice {
    pub action: String,
    pub risk: String,
}

impl Report {
    /// The findings with this id.
    pub fn with_id(&self, id: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.id == id).collect()
    }

    /// The only finding with this id.
    pub fn one(&self, id: &str) -> &Finding {
        let found = self.with_id(id);
        assert_eq!(found.len(), 1, "expected one {id}, findings: {:?}", self.ids());
        found[0]
    }

    pub fn ids(&self) -> Vec<&str> {
        self.findings.iter().map(|f| f.id.as_str()).collect()
    }
}
