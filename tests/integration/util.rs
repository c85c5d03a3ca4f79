//! Shared test helpers: running the binary, fixture paths, and the JSON report schema as tests expect it.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde::Deserialize;

#[path = "../support/copy_tree.rs"]
mod copy_tree;
pub(crate) use copy_tree::copy_tree;

/// What a persistence finding (`persist.drift`, `persist.not-persisted`) adds to its message where
/// the audited network namespace is known not to be the initial one; its evidence then holds
/// `"namespace": "not the initial network namespace"`.
pub(crate) const CONCERNS_THE_HOST: &str = "; this network namespace is not the initial one, and the sysctl.d files \
                                            set the host's initial namespace at boot, not this one: this concerns the \
                                            host's namespace";

/// The `twtune` binary with an environment that does not leak the developer's colour settings or
/// terminal width.
pub(crate) fn twtune() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twtune"));
    for var in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "TERM", "COLUMNS"] {
        cmd.env_remove(var);
    }
    cmd
}

/// One run of `twtune` with what it must print and return, checked all at once (after `just`'s
/// test builder): the exit status, stdout and stderr are compared together and a mismatch shows
/// the command and all three.
///
/// Nothing is left unchecked by default: without `.status`, `.stdout` or `.stderr` the run must exit
/// 0 and print nothing.
///
/// ```ignore
/// Run::new(&["audit", "--root"]).arg(fixture("idle")).stdout(Expect::contains(&["no findings"])).run();
/// Run::new(&["audit", "--top", "0"]).status(2).stderr(Expect::one_line(&["--top"])).run();
/// ```
#[must_use = "nothing runs until .run()"]
pub(crate) struct Run {
    cmd: Command,
    shown: Vec<OsString>,
    status: i32,
    stdout: Expect,
    stderr: Expect,
}

/// What one output stream must hold.
pub(crate) enum Expect {
    /// Nothing at all.
    Empty,
    /// Exactly this text (also what a `&str` or `String` converts to).
    Exact(String),
    /// Each of these pieces, anywhere.
    Contains(Vec<String>),
    /// Exactly one line `twtune: ...\n` (how twtune reports an error or a warning) holding each piece.
    OneLine(Vec<String>),
    /// Whatever this predicate accepts; the description is shown when it does not.
    Satisfies(String, Box<dyn Fn(&str) -> bool>),
}

impl Expect {
    /// [`Expect::Contains`].
    pub(crate) fn contains(pieces: &[&str]) -> Self {
        Self::Contains(pieces.iter().map(ToString::to_string).collect())
    }

    /// [`Expect::OneLine`].
    pub(crate) fn one_line(pieces: &[&str]) -> Self {
        Self::OneLine(pieces.iter().map(ToString::to_string).collect())
    }

    /// [`Expect::Satisfies`].
    pub(crate) fn satisfies(description: &str, predicate: impl Fn(&str) -> bool + 'static) -> Self {
        Self::Satisfies(description.to_string(), Box::new(predicate))
    }

    fn accepts(&self, text: &str) -> bool {
        match self {
            Self::Empty => text.is_empty(),
            Self::Exact(expected) => text == expected,
            // Text for people is wrapped to 80 columns: a piece may be broken across lines, so it
            // is looked for with white space folded too (where it sits is the layout tests' job).
            Self::Contains(pieces) => {
                let fold = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
                let folded = fold(text);
                pieces.iter().all(|p| text.contains(p.as_str()) || folded.contains(&fold(p)))
            }
            Self::OneLine(pieces) => {
                text.starts_with("twtune: ")
                    && text.ends_with('\n')
                    && text.lines().count() == 1
                    && pieces.iter().all(|p| text.contains(p.as_str()))
            }
            Self::Satisfies(_, predicate) => predicate(text),
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "nothing"),
            Self::Exact(text) => write!(f, "exactly {text:?}"),
            Self::Contains(pieces) => write!(f, "text containing each of {pieces:?}"),
            Self::OneLine(pieces) => write!(f, "one line \"twtune: ...\" containing each of {pieces:?}"),
            Self::Satisfies(description, _) => write!(f, "{description}"),
        }
    }
}

impl From<&str> for Expect {
    fn from(text: &str) -> Self {
        Self::Exact(text.to_string())
    }
}

impl From<String> for Expect {
    fn from(text: String) -> Self {
        Self::Exact(text)
    }
}

impl Run {
    /// `twtune` (see [`twtune`]) with these arguments; more can follow with [`Run::arg`] and [`Run::args`].
    pub(crate) fn new(args: &[&str]) -> Self {
        Self { cmd: twtune(), shown: Vec::new(), status: 0, stdout: Expect::Empty, stderr: Expect::Empty }.args(args)
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg.as_ref());
        self.shown.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args(self, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        args.into_iter().fold(self, Self::arg)
    }

    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub(crate) fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// What twtune reads on stdin (by default nothing: stdin is an empty pipe).
    pub(crate) fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.cmd.write_stdin(input);
        self
    }

    /// The exit code (default 0).
    pub(crate) fn status(mut self, code: i32) -> Self {
        self.status = code;
        self
    }

    /// What stdout must be (default [`Expect::Empty`]).
    pub(crate) fn stdout(mut self, expect: impl Into<Expect>) -> Self {
        self.stdout = expect.into();
        self
    }

    /// What stderr must be (default [`Expect::Empty`]).
    pub(crate) fn stderr(mut self, expect: impl Into<Expect>) -> Self {
        self.stderr = expect.into();
        self
    }

    /// Runs twtune, checks the exit code, stdout and stderr together and returns stdout.
    #[track_caller]
    pub(crate) fn run(mut self) -> String {
        let output = self.cmd.output().expect("run twtune");
        let status = output.status.code().map_or_else(|| output.status.to_string(), |code| code.to_string());
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let mut wrong = Vec::new();
        if output.status.code() != Some(self.status) {
            wrong.push(format!("exit status is {status}, not {}", self.status));
        }
        for (name, text, expect) in [("stdout", &stdout, &self.stdout), ("stderr", &stderr, &self.stderr)] {
            if !expect.accepts(text) {
                wrong.push(format!("{name} is not {expect}"));
            }
        }
        let shown: Vec<String> = self.shown.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(
            wrong.is_empty(),
            "twtune {}\n{}\n--- exit status: {status}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}\n--- end",
            shown.join(" "),
            wrong.join("\n"),
        );
        // Every JSON document a test sees is checked against its schema.
        if let Some(schema) = json_schema_of(&shown).filter(|_| !stdout.is_empty()) {
            valid_json(schema, stdout.as_bytes());
        }
        stdout
    }
}

/// The schema in docs/schema that the JSON a twtune command line prints on stdout follows; `None`
/// when it prints no JSON there.
pub(crate) fn json_schema_of(args: &[String]) -> Option<&'static str> {
    let json = args.windows(2).any(|w| w[0] == "--format" && w[1] == "json");
    let has = |flag: &str| args.iter().any(|a| a == flag);
    match (args.first()?.as_str(), args.get(1).map(String::as_str)) {
        _ if !json => None,
        ("audit", _) if has("--all-netns") => Some("audit-all-netns"),
        ("audit", _) => Some("audit"),
        ("explain", _) => Some("explain"),
        ("export", _) if !has("-o") && !has("--output") => Some("export"),
        ("profiles", Some("list")) => Some("profiles-list"),
        ("profiles", Some("show")) => Some("profiles-show"),
        ("rollback", _) => Some("rollback-list"),
        _ => None,
    }
}

/// The Python with the pinned jsonschema that scripts/test installs (`TWTUNE_JSON_VALIDATOR`).
/// Under CI=true its absence fails the test; elsewhere JSON goes unvalidated, said once.
fn json_validator() -> Option<&'static PathBuf> {
    static VALIDATOR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let python = std::env::var_os("TWTUNE_JSON_VALIDATOR").map(PathBuf::from);
            let works = |p: &PathBuf| {
                std::process::Command::new(p)
                    .args(["-c", "import jsonschema, referencing"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            let found = python.filter(works);
            if found.is_none() {
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "CI=true but TWTUNE_JSON_VALIDATOR is not a Python with jsonschema: scripts/test installs it"
                );
                eprintln!("SKIPPED: JSON Schema validation (no TWTUNE_JSON_VALIDATOR); run scripts/test");
            }
            found
        })
        .as_ref()
}

/// Panics unless `json` is valid under docs/schema/`schema`.json, as the pinned validator
/// (tests/support/validate_json.py) judges it.
#[track_caller]
pub(crate) fn valid_json(schema: &str, json: &[u8]) {
    let Some(python) = json_validator() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, json).expect("write the JSON");
    let output = std::process::Command::new(python)
        .arg(root.join("tests/support/validate_json.py"))
        .arg(root.join("docs/schema"))
        .arg(schema)
        .arg(file.path())
        .output()
        .expect("run the validator");
    assert!(
        output.status.success(),
        "not valid under docs/schema/{schema}.json:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A captured root under tests/fixtures/roots.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roots").join(name)
}

/// `n` connections to `listener`; the client closes first (TIME_WAIT on the client side) or the
/// server does (TIME_WAIT on the listening port).
pub(crate) fn connections(listener: &TcpListener, n: usize, client_closes: bool) {
    let target = listener.local_addr().expect("listener address");
    let mut closing = Closing::default();
    for _ in 0..n {
        let client = TcpStream::connect(target).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let (first, mut second) = if client_closes { (client, server) } else { (server, client) };
        closing.add(&first);
        drop(first);
        // Wait for the FIN so that the close order is what the caller asked for.
        assert_eq!(second.read(&mut [0u8; 1]).expect("read EOF"), 0);
    }
    closing.settle();
}

/// Connections being closed, by their (local port, remote port) seen from either end, to wait for
/// until their closes are done: the closer is then in TIME_WAIT (or gone, where tcp_max_tw_buckets
/// refused it one) and the other end gone. A fixed pause was not enough: on a loaded two-core CI
/// machine one loopback FIN had not crossed after 100 ms, and a test counted 219 TIME_WAIT sockets
/// where it had made 220.
#[derive(Default)]
pub(crate) struct Closing(std::collections::BTreeSet<(u16, u16)>);

impl Closing {
    /// Adds a connection about to be closed (at either end).
    pub(crate) fn add(&mut self, stream: &TcpStream) {
        let (local, peer) = (stream.local_addr().expect("local address"), stream.peer_addr().expect("peer address"));
        self.0.insert((local.port(), peer.port()));
        self.0.insert((peer.port(), local.port()));
    }

    /// Waits until no socket of this network namespace between these ports is still closing
    /// (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK or CLOSING, numbered as /proc/net/tcp does).
    pub(crate) fn settle(&self) {
        const CLOSING: [&str; 5] = ["04", "05", "08", "09", "0B"];
        let port = |field: &str| field.rsplit(':').next().and_then(|hex| u16::from_str_radix(hex, 16).ok());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let mut closing = Vec::new();
            for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
                let text = std::fs::read_to_string(table).unwrap_or_default();
                for line in text.lines().skip(1) {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (Some(local), Some(remote), Some(state)) = (fields.get(1), fields.get(2), fields.get(3)) else {
                        continue;
                    };
                    let ours = port(local).zip(port(remote)).is_some_and(|pair| self.0.contains(&pair));
                    if ours && CLOSING.contains(state) {
                        closing.push(line.to_string());
                    }
                }
            }
            if closing.is_empty() {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "connections still closing after 20 s: {closing:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Counters of the report that are host-wide, not per network namespace (`/proc/net/sockstat`'s
/// `orphan` and `alloc`): other work on the machine changes them between any two reads.
pub(crate) const HOST_WIDE_COUNTERS: &[&str] = &["sockstat_alloc", "sockstat_orphan"];

/// Runs `twtune audit --format json` with extra arguments and returns (exit code, report). A
/// report comes with nothing on stderr: warnings belong in the report.
#[track_caller]
pub(crate) fn audit_json(args: &[&str]) -> (i32, Report) {
    let (code, report, text) = audit_json_unchecked(args);
    valid_json("audit", text.as_bytes());
    (code, report)
}

/// [`audit_json`] and the report's text, not yet checked against its schema: for tests whose reads
/// must follow each other closely (a TIME_WAIT socket's age changes what it holds), which check
/// each text with [`valid_json`] after the last read.
#[track_caller]
pub(crate) fn audit_json_unchecked(args: &[&str]) -> (i32, Report, String) {
    let output = twtune().arg("audit").args(["--format", "json"]).args(args).output().expect("run twtune");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 JSON");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a report ({e}): {stdout}\nstderr: {stderr}\nstatus: {:?}", output.status));
    assert!(stderr.is_empty(), "audit {args:?} printed a report and, on stderr: {stderr}");
    (output.status.code().expect("exit code"), report, stdout)
}

// The JSON contract of docs/json-schema.md, declared independently of the code that writes it, with
// unknown fields refused so that a silent change of the document fails here.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Report {
    pub schema_version: u32,
    pub twtune_version: String,
    pub kernel: String,
    pub profile: Option<ProfileSummary>,
    pub settings: std::collections::BTreeMap<String, Option<String>>,
    pub counters: std::collections::BTreeMap<String, i64>,
    pub sockets: Sockets,
    pub conntrack: Option<Conntrack>,
    pub config: ConfigFiles,
    pub thresholds: Thresholds,
    pub rates: Option<Rates>,
    pub tracing: Option<Tracing>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
    pub other_namespaces: Option<OtherNamespaces>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conntrack {
    pub count: Option<u64>,
    pub max: Option<u64>,
    pub statistics: std::collections::BTreeMap<String, u64>,
    pub tcp_timeouts: std::collections::BTreeMap<String, u64>,
    pub nat_range: NatRange,
    pub nat_range_source: String,
    pub nat_rules: Vec<serde_json::Value>,
    pub statistics_growth: Option<std::collections::BTreeMap<String, u64>>,
    // The dump's fields, present only when the table was dumped.
    #[serde(default)]
    pub entries: Option<u64>,
    #[serde(default)]
    pub tcp_states: Option<std::collections::BTreeMap<String, u64>>,
    #[serde(default)]
    pub snat_bucket_count: Option<usize>,
    #[serde(default)]
    pub snat_buckets: Option<Vec<SnatBucket>>,
    #[serde(default)]
    pub eviction: Option<serde_json::Value>,
    pub table_unavailable: Option<String>,
}

impl Conntrack {
    /// The dump, when there was one: all of its fields or none.
    pub(crate) fn dumped(&self) -> Option<ConntrackTable> {
        match (&self.entries, &self.tcp_states, &self.snat_bucket_count, &self.snat_buckets) {
            (Some(entries), Some(tcp_states), Some(count), Some(buckets)) => Some(ConntrackTable {
                entries: *entries,
                tcp_states: tcp_states.clone(),
                snat_bucket_count: *count,
                snat_buckets: buckets.clone(),
            }),
            (None, None, None, None) => None,
            partial => panic!("a partial dump in the JSON: {partial:?}"),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct NatRange {
    pub low: u16,
    pub high: u16,
}

#[derive(Debug)]
pub(crate) struct ConntrackTable {
    pub entries: u64,
    pub tcp_states: std::collections::BTreeMap<String, u64>,
    pub snat_bucket_count: usize,
    pub snat_buckets: Vec<SnatBucket>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnatBucket {
    pub source_ip: String,
    pub remote: String,
    pub protocol: String,
    pub count: u32,
    pub time_wait: u32,
    pub held: u32,
    pub usable_ports: u32,
    pub free: u32,
    pub available: u32,
    pub by_eviction: u32,
    pub first_syn_dropped_pct: Option<f64>,
    pub reclaimable: u32,
    pub usage_pct: f64,
    pub nat_range: NatRange,
    pub nat_rule: String,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtherNamespaces {
    pub count: usize,
    pub complete: bool,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rates {
    pub interval_seconds: f64,
    pub active_opens_per_sec: f64,
    pub passive_opens_per_sec: f64,
    pub time_wait_entries_per_sec: f64,
    pub overflow_per_sec: f64,
    pub time_wait_reused_per_sec: f64,
    pub syn_retransmits_per_sec: f64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Thresholds {
    pub port_warn_pct: f64,
    pub port_crit_pct: f64,
    pub min_time_wait: u64,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFiles {
    pub systemd: Vec<String>,
    pub procps: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileSummary {
    pub name: String,
    pub source: String,
    pub chain: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sockets {
    pub source: String,
    pub total: u64,
    pub states: std::collections::BTreeMap<String, u64>,
    pub time_wait: TimeWait,
    pub listening_ports: Vec<u16>,
    pub ephemeral: Ephemeral,
    pub bucket_count: usize,
    pub buckets: Vec<Bucket>,
    pub local_ports: Vec<LocalPorts>,
    pub owners_unavailable: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeWait {
    pub total: u64,
    pub outbound: u64,
    pub inbound: u64,
    pub without_listener: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ephemeral {
    pub range: String,
    pub size: u32,
    pub reserved_in_range: u32,
    pub listeners_in_range: Vec<u16>,
    pub stopped_listeners_in_range: Vec<u16>,
    pub usable_ports: u32,
    pub bound_ports: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Bucket {
    pub local_ip: String,
    pub remote: String,
    pub count: u32,
    pub time_wait: u32,
    pub reusable: u32,
    pub held: u32,
    pub usable_ports: u32,
    pub available: i64,
    pub usage_pct: f64,
    pub growth_per_sec: Option<f64>,
    pub seconds_to_exhaustion: Option<f64>,
    pub forecast: Option<Forecast>,
    pub owners: Option<Vec<Owner>>,
    pub churn: Option<Churn>,
    pub lifetimes: Option<Lifetimes>,
    pub closes: Option<Closes>,
}

/// A bucket's connections the tracepoints followed to their end.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "declared for the contract; tests read only some fields")]
pub(crate) struct Closes {
    pub closed_here: u32,
    pub closed_by_peer: u32,
    pub reset: u32,
    pub closed_here_per_sec: f64,
    pub closed_here_mean_seconds: Option<f64>,
    pub closed_by_peer_mean_seconds: Option<f64>,
    pub histogram: Vec<LifetimeBin>,
    pub processes: Vec<Closer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "declared for the contract; tests read only some fields")]
pub(crate) struct LifetimeBin {
    pub up_to_seconds: Option<f64>,
    pub closed_here: u32,
    pub closed_by_peer: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "declared for the contract; tests read only some fields")]
pub(crate) struct Closer {
    pub pid: u32,
    pub command: String,
    pub container: Option<serde_json::Value>,
    pub closed_here: u32,
    pub closed_by_peer: u32,
    pub reset: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "declared for the contract; tests read only some fields")]
pub(crate) struct Lifetimes {
    /// `tracepoints` or `reads`.
    pub method: String,
    pub closed_here: u32,
    pub timed: u32,
    pub short_share: f64,
    pub typical_seconds: Option<f64>,
    pub typical_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "declared for the contract; tests read only some fields")]
pub(crate) struct Forecast {
    pub closes_per_sec: f64,
    pub window_seconds: f64,
    pub live_growth_per_sec: f64,
    pub level: u32,
    pub room: u32,
    pub seconds_to_exhaustion: Option<f64>,
}

/// How a `--sample` window's failed calls were measured.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub(crate) enum Tracing {
    Tracepoints(Failures),
    Untraced { reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Failures {
    pub seconds: f64,
    pub connect: u64,
    pub connect_per_sec: f64,
    pub bind: u64,
    pub bind_per_sec: f64,
    pub connect_destination_unknown: u64,
    pub processes: Vec<FailingProcess>,
    pub destinations: Vec<FailingDestination>,
    // Other work on the machine (a process failing calls that ends at once) may add to it.
    #[allow(dead_code, reason = "in the contract; not asserted")]
    pub unattributed: u64,
    pub lost: u64,
    pub unarmed: Vec<String>,
    // Host-wide: other tests' connections can fill the state changes' buffers.
    #[allow(dead_code, reason = "in the contract; not asserted")]
    pub lifetimes_dropped: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailingProcess {
    pub pid: u32,
    pub command: String,
    pub container: Option<serde_json::Value>,
    pub connect: u64,
    pub bind: u64,
    pub bind_local_ip: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailingDestination {
    pub local_ip: String,
    pub remote: String,
    pub connect: u64,
    pub per_sec: f64,
    pub pids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Owner {
    pub pid: u32,
    pub command: String,
    pub container: Option<serde_json::Value>,
    pub sockets: u32,
    /// Present only for the owners that were identified (tests/integration/culprit.rs).
    #[serde(default)]
    pub identity: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Churn {
    pub new_per_sec: f64,
    pub closed_here_per_sec: f64,
    pub closed_here_share: Option<f64>,
    pub mean_lifetime_seconds: Option<f64>,
}

/// The bind() budget of one local address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalPorts {
    pub local_ip: String,
    pub ports_in_use: u32,
    pub usable_ports: u32,
    pub available: i64,
    pub usage_pct: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Finding {
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
pub(crate) struct Advice {
    pub action: String,
    pub risk: String,
}

impl Report {
    /// The findings with this id.
    pub(crate) fn with_id(&self, id: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.id == id).collect()
    }

    /// The only finding with this id.
    pub(crate) fn one(&self, id: &str) -> &Finding {
        let found = self.with_id(id);
        assert_eq!(found.len(), 1, "expected one {id}, findings: {:?}", self.ids());
        found[0]
    }

    pub(crate) fn ids(&self) -> Vec<&str> {
        self.findings.iter().map(|f| f.id.as_str()).collect()
    }
}
