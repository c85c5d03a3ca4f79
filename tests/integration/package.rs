//! The Debian package: `scripts/package` builds it with the pinned cargo-deb; lintian finds no
//! error in it; it ships a static binary that runs; and `tests/support/package_scratch.sh`
//! installs it into a scratch root (an overlay of `/` in private mount, network and PID
//! namespaces), where `systemd-analyze verify` accepts its units and the metrics unit's own
//! command, run as the unit runs it (its ExecStart, no environment, its capability bounding set,
//! no new privileges), writes a file promtool accepts; then purges it and finds nothing left.
//!
//! The same run shows why the unit keeps each capability: dropping one loses what it says in the
//! unit file; and that a failing run (refused, or out of space half way) keeps the last file and
//! leaves no temporary one.
//!
//! Without root, unshare or the tools the test is skipped with a message, except under `CI=true`,
//! where that is a failure. Building the package is a release build for the musl target: a minute
//! or two cold.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The suite's target directory: the test binary is target/debug/deps/integration-HASH.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.ancestors().nth(3).expect("the target directory").to_path_buf()
}

/// `Err(why)` when `program` cannot run here: a skip, or under CI a failure.
fn tool(program: &str, test: &str) -> bool {
    if Command::new(program).arg("--version").output().is_ok() {
        return true;
    }
    assert!(!ci(), "{test}: CI=true but {program} is missing: scripts/test installs it");
    eprintln!("SKIPPED {test}: {program} is not installed");
    false
}

/// The .deb `scripts/package` builds (once for all the tests here), or `None` when it cannot.
fn deb(test: &str) -> Option<&'static Path> {
    static DEB: OnceLock<Option<PathBuf>> = OnceLock::new();
    let built = DEB.get_or_init(|| {
        let cargo_deb = target_dir().join("tools/bin/cargo-deb");
        if !cargo_deb.exists() {
            assert!(!ci(), "CI=true but {} is missing: scripts/test installs it", cargo_deb.display());
            return None;
        }
        let out = Command::new(repo().join("scripts/package"))
            .env("CARGO_TARGET_DIR", target_dir())
            .env("CARGO_NET_OFFLINE", "true")
            .output()
            .expect("scripts/package");
        assert!(out.status.success(), "scripts/package failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.lines().last().expect("scripts/package prints the .deb").trim());
        assert!(path.extension().is_some_and(|e| e == "deb") && path.is_file(), "not a .deb: {}", path.display());
        Some(path)
    });
    if built.is_none() {
        eprintln!("SKIPPED {test}: the pinned cargo-deb is not installed (scripts/package --tools)");
    }
    built.as_deref()
}

/// Runs a command and panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn lintian_finds_no_error_in_the_package() {
    let test = "package::lintian_finds_no_error_in_the_package";
    let Some(deb) = deb(test) else { return };
    if !tool("lintian", test) {
        return;
    }
    // lintian exits non-zero on an error tag; warnings are listed, not fatal.
    let out = Command::new("lintian").arg(deb).output().expect("lintian");
    let tags = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lintian failed:\n{tags}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!tags.lines().any(|l| l.starts_with("E:")), "lintian errors:\n{tags}");
    // The control file's description is the short one of Cargo.toml and its own paragraph, not
    // the README.
    let description = run("dpkg-deb", &["-f", &deb.to_string_lossy(), "Description"]);
    assert!(description.starts_with("Audit and tune the Linux settings"), "{description}");
    assert!(description.lines().count() < 12 && !description.contains("##"), "a short description:\n{description}");
}

/// The glibc the README says the `cargo install` binary needs.
const STATED_GLIBC: &str = "2.34";

#[test]
fn the_glibc_binary_needs_the_glibc_the_readme_states() {
    if !tool("objdump", "package::the_glibc_binary_needs_the_glibc_the_readme_states") {
        return;
    }
    // The newest GLIBC_x.y symbol version the binary asks for is the oldest glibc it runs on.
    let symbols = run("objdump", &["-T", env!("CARGO_BIN_EXE_twtune")]);
    let newest = symbols
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| v.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))))
        .max()
        .expect("versioned glibc symbols");
    assert_eq!(format!("{}.{}", newest.0, newest.1), STATED_GLIBC, "the README states another glibc");
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    assert!(readme.contains(&format!("needs glibc {STATED_GLIBC} or newer")), "the README states it");
}

#[test]
fn the_package_ships_a_static_binary_that_runs() {
    let test = "package::the_package_ships_a_static_binary_that_runs";
    let Some(deb) = deb(test) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    run("dpkg-deb", &["-x", &deb.to_string_lossy(), &dir.path().to_string_lossy()]);
    let binary = dir.path().join("usr/bin/twtune");
    let binary = binary.to_string_lossy();
    // No program interpreter (ld.so) and no shared library needed: it runs on any C library.
    let headers = run("readelf", &["--program-headers", "--dynamic", "--wide", &binary]);
    assert!(!headers.contains("INTERP"), "the packaged binary has a program interpreter:\n{headers}");
    assert!(!headers.contains("(NEEDED)"), "the packaged binary needs shared libraries:\n{headers}");
    let version = Command::new(&*binary).arg("--version").env_clear().output().expect("run the packaged binary");
    let version = String::from_utf8_lossy(&version.stdout);
    assert_eq!(version.trim(), format!("twtune {}", env!("CARGO_PKG_VERSION")), "the packaged binary runs");
    let audit = run(
        &binary,
        &["audit", "--root", &crate::util::fixture("client-exhaustion").to_string_lossy(), "--fail-on", "never"],
    );
    assert!(audit.contains("TIME_WAIT"), "the packaged binary audits a fixture:\n{audit}");
}

#[test]
fn the_package_installs_runs_its_unit_and_purges_in_a_scratch_root() {
    let test = "package::the_package_installs_runs_its_unit_and_purges_in_a_scratch_root";
    let Some(deb) = deb(test) else { return };
    if run("id", &["-u"]).trim() != "0" {
        assert!(!ci(), "{test}: CI must run as root");
        eprintln!("SKIPPED {test}: dpkg --root and unshare need root");
        return;
    }
    if !tool("promtool", test) || !tool("systemd-analyze", test) {
        return;
    }
    let out = tempfile::tempdir().expect("temporary directory");
    let scratch = target_dir().join("tmp/package-test");
    let script = repo().join("tests/support/package_scratch.sh");
    let (deb, scratch, out_dir) = (deb.to_string_lossy(), scratch.to_string_lossy(), out.path().to_string_lossy());
    run(
        "unshare",
        &["--mount", "--net", "--pid", "--fork", "--", "sh", &script.to_string_lossy(), &deb, &scratch, &out_dir],
    );
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(read("done").trim(), "done");

    let installed = read("installed");
    for file in [
        "/usr/bin/twtune",
        "/usr/share/man/man8/twtune.8.gz",
        "/usr/share/man/man5/twtune-profile.5.gz",
        "/usr/share/bash-completion/completions/twtune",
        "/usr/share/zsh/vendor-completions/_twtune",
        "/usr/share/fish/vendor_completions.d/twtune.fish",
        "/usr/share/doc/twtune/copyright",
        "/usr/lib/systemd/system/twtune-metrics.service",
        "/usr/lib/systemd/system/twtune-metrics.timer",
    ] {
        assert!(installed.lines().any(|l| l == file), "{file} is installed:\n{installed}\n{}", read("install.log"));
    }
    assert!(read("enabled").trim().ends_with("/twtune-metrics.timer"), "the timer is enabled on install");
    assert_eq!(read("verify.status").trim(), "0", "systemd-analyze verify:\n{}", read("verify.log"));

    assert_eq!(read("run.status").trim(), "0", "the unit's command:\n{}", read("run.log"));
    let metrics = read("twtune.prom");
    assert!(metrics.contains("twtune_info{") && metrics.contains("netns="), "the unit's metrics:\n{metrics}");
    crate::outputs::promtool_accepts(&metrics);
    failed_runs_keep_the_last_file(&read);
    each_capability_is_needed(&read);

    assert_eq!(read("left-after-purge"), "", "files left after dpkg --purge:\n{}", read("purge.log"));
}

/// A run refused at setns and one whose write runs out of space: exit 2, the last file as it was,
/// and no temporary file beside it.
fn failed_runs_keep_the_last_file(read: &dyn Fn(&str) -> String) {
    assert_eq!(read("failed.status").trim(), "2", "{}", read("failed.log"));
    assert_eq!(read("after-failed.ls"), "twtune.prom\n", "only the last file after a refused run");
    assert_eq!(read("after-failed.cmp").trim(), "same", "a refused run keeps the last file");
    assert_eq!(read("full.status").trim(), "2", "{}", read("full.log"));
    assert!(read("full.log").contains("No space left on device"), "{}", read("full.log"));
    assert_eq!(read("after-full.ls"), "filler\ntwtune.prom\n", "no temporary file after a failed write");
    assert_eq!(read("after-full.cmp").trim(), "same", "a failed write keeps the last file");
}

/// With the unit's whole bounding set, the audit sees the second namespace, the other user's
/// process holding its 20 connections and their conntrack entries; without each capability it
/// loses what the unit file says that capability is for.
fn each_capability_is_needed(read: &dyn Fn(&str) -> String) {
    let full = Seen::from(&read("caps.json"));
    assert_eq!((full.namespaces, full.owners, full.conntrack), (2, Some(20), Some(20)), "all caps: {full:?}");
    assert!(full.notes.is_empty(), "{full:?}");
    assert_eq!(read("caps-CAP_SYS_ADMIN.json"), "", "no report without CAP_SYS_ADMIN");
    assert!(read("caps-CAP_SYS_ADMIN.err").contains("CAP_SYS_ADMIN"), "{}", read("caps-CAP_SYS_ADMIN.err"));
    let ptrace = Seen::from(&read("caps-CAP_SYS_PTRACE.json"));
    assert!(ptrace.notes.iter().any(|n| n.contains("could not be looked at")), "{ptrace:?}");
    assert_eq!(ptrace.owners, None, "no owners without CAP_SYS_PTRACE: {ptrace:?}");
    let dac = Seen::from(&read("caps-CAP_DAC_READ_SEARCH.json"));
    assert_eq!((dac.namespaces, dac.owners, dac.conntrack), (2, None, Some(20)), "{dac:?}");
    let net_admin = Seen::from(&read("caps-CAP_NET_ADMIN.json"));
    assert_eq!((net_admin.owners, net_admin.conntrack), (Some(20), None), "{net_admin:?}");
    assert!(net_admin.unavailable.as_deref().is_some_and(|w| w.contains("CAP_NET_ADMIN")), "{net_admin:?}");
}

/// What an `--all-netns` JSON report saw of the scene package_scratch.sh sets up.
#[derive(Debug)]
struct Seen {
    namespaces: usize,
    notes: Vec<String>,
    /// Sockets python3 holds in the bucket to 127.0.0.1:8080, when its owners were found.
    owners: Option<u64>,
    /// The conntrack entries dumped in that namespace.
    conntrack: Option<u64>,
    unavailable: Option<String>,
}

impl Seen {
    fn from(json: &str) -> Seen {
        let report: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
        let namespaces = report["namespaces"].as_array().expect("namespaces");
        let notes = report["summary"]["notes"].as_array().expect("notes").iter().map(|n| n.to_string()).collect();
        let bucket = |r: &Value| {
            r["sockets"]["buckets"].as_array().and_then(|b| b.iter().find(|b| b["remote"] == "127.0.0.1:8080")).cloned()
        };
        let blue = namespaces.iter().map(|n| &n["report"]).find(|r| bucket(r).is_some());
        let owners = blue.and_then(bucket).and_then(|b| {
            b["owners"].as_array()?.iter().find(|o| o["command"] == "python3").and_then(|o| o["sockets"].as_u64())
        });
        Seen {
            namespaces: namespaces.len(),
            notes,
            owners,
            conntrack: blue.and_then(|r| r["conntrack"]["entries"].as_u64()),
            unavailable: blue.and_then(|r| r["conntrack"]["table_unavailable"].as_str().map(String::from)),
        }
    }
}
