//! The README's install and monitoring lines, run as they are written, as root, on this machine's
//! real paths, but in a scratch root that the host never sees.
//!
//! The normal run re-executes this test binary for the one test under `unshare --mount`. There the
//! test mounts an overlay over each tree the lines write into (`/usr/local`, `/usr/share`,
//! `/var/lib`, `/etc`), whose writable layer is a tmpfs of this mount namespace only, and removes,
//! in the overlay, the directories the README says to create, so that the lines must create them as
//! on a fresh machine. Everything written disappears with the namespace; the host's files are the
//! read-only lower layers.
//!
//! Each fenced block that follows a `<!-- test: ... -->` comment in the README runs with `sh -e`
//! from the repository's directory. Two things differ from a user's shell, both in the environment:
//! `cargo install` builds in this suite's own target directory (`CARGO_TARGET_DIR`, so that it
//! reuses the release build rather than making one in a temporary directory each time) and offline
//! (the suite's build already fetched every crate), and `systemctl` is a stub that records its
//! arguments, as there is no systemd manager in the namespace. The monitoring command itself is then
//! taken from the installed cron file and systemd unit and run with an empty environment (`env -i`),
//! which proves it assumes no `PATH`, and its output must pass `promtool check metrics`.
//!
//! Without root or `unshare` the test is skipped with a message, except under `CI=true`, where that
//! is a failure. A cold release build makes it take a minute or two; with the build done, seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the environment of the re-executed test, to the suite's target directory.
const INSIDE: &str = "TWTUNE_TEST_IN_SCRATCH_ROOT";

/// The trees the README's lines write into, each covered by an overlay.
const OVERLAID: &[&str] = &["/usr/local", "/usr/share", "/var/lib", "/etc"];

/// The directories the README's lines create with `install -d`: removed (in the overlay) first.
const CREATED: &[&str] = &[
    "/usr/local/share/man/man8",
    "/usr/local/share/man/man5",
    "/usr/share/bash-completion/completions",
    "/usr/local/share/zsh/site-functions",
    "/usr/share/fish/vendor_completions.d",
    "/var/lib/prometheus/node-exporter",
];

/// Files of an earlier install, removed (in the overlay) first.
const REMOVED: &[&str] = &[
    "/usr/local/bin/twtune",
    "/usr/local/.crates.toml",
    "/usr/local/.crates2.json",
    "/etc/cron.d/twtune",
    "/etc/systemd/system/twtune-metrics.service",
    "/etc/systemd/system/twtune-metrics.timer",
];

/// Where, in the suite's target directory, the scratch tmpfs is mounted (in the namespace only).
const SCRATCH: &str = "tmp/install-test";

const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced block right after `<!-- test: NAME -->` in the README.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let marker = format!("<!-- test: {name} -->\n```sh\n");
    let start = readme.find(&marker).unwrap_or_else(|| panic!("README has no block marked {marker:?}")) + marker.len();
    let end = readme[start..].find("\n```\n").expect("the block ends") + start;
    format!("{}\n", &readme[start..end])
}

#[test]
fn the_readme_install_and_monitoring_lines_work_as_written() {
    let Some(target_dir) = enter("install::the_readme_install_and_monitoring_lines_work_as_written") else {
        return;
    };
    let scratch = Path::new(&target_dir).join(SCRATCH);
    let stub_bin = scratch.join("bin");
    std::fs::create_dir_all(&stub_bin).expect("stub directory");
    let systemctl_log = scratch.join("systemctl.log");
    let stub = format!("#!/bin/sh\necho \"$*\" >> '{}'\n", systemctl_log.display());
    std::fs::write(stub_bin.join("systemctl"), stub).expect("systemctl stub");
    run("chmod", &["755", &stub_bin.join("systemctl").to_string_lossy()]);
    let path = format!("{}:{}", stub_bin.display(), std::env::var("PATH").unwrap_or_default());
    let shell = |block: &str| {
        let out = Command::new("sh")
            .args(["-e", "-c", &readme_block(block)])
            .current_dir(repo())
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_NET_OFFLINE", "true")
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "the README's {block} lines failed\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // --- install
    shell("install");
    let version = run("/usr/local/bin/twtune", &["--version"]);
    assert!(version.starts_with("twtune "), "twtune --version: {version}");
    let found = empty_env(&["PATH=/usr/local/bin:/usr/bin:/bin", "man", "-w", "twtune"]);
    // (Debian's /usr/local/man is a link to share/man, which man may name instead.)
    let found = std::fs::canonicalize(found.trim()).expect("the page man names");
    assert_eq!(found, Path::new("/usr/local/share/man/man8/twtune.8"), "man finds the installed page");
    let page = empty_env(&["PATH=/usr/bin:/bin", "MANWIDTH=80", "man", "-l", "/usr/local/share/man/man8/twtune.8"]);
    assert!(page.contains("twtune"), "man renders the installed page:\n{page}");
    let found = empty_env(&["PATH=/usr/local/bin:/usr/bin:/bin", "man", "-w", "5", "twtune-profile"]);
    let found = std::fs::canonicalize(found.trim()).expect("the profile page man names");
    assert_eq!(found, Path::new("/usr/local/share/man/man5/twtune-profile.5"), "man finds the profile format");
    for file in [
        "/usr/share/bash-completion/completions/twtune",
        "/usr/local/share/zsh/site-functions/_twtune",
        "/usr/share/fish/vendor_completions.d/twtune.fish",
    ] {
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{file} is installed and not empty");
    }
    shells_find_the_completions(&scratch);

    // --- monitoring, from cron
    shell("monitoring cron");
    let crontab = std::fs::read_to_string("/etc/cron.d/twtune").expect("/etc/cron.d/twtune");
    let lines: Vec<&str> = crontab.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 1, "one cron job:\n{crontab}");
    let fields: Vec<&str> = lines[0].splitn(7, ' ').collect();
    assert_eq!(fields.len(), 7, "a cron.d line has 5 time fields, a user and a command: {}", lines[0]);
    assert_eq!(fields[5], "root", "the job runs as root");
    assert!(!fields[6].contains('%'), "cron turns % into a newline: {}", fields[6]);
    textfile_written_by(fields[6]);

    // --- monitoring, from a systemd timer
    std::fs::remove_file(Path::new(TEXTFILE_DIR).join("twtune.prom")).expect("remove the cron job's file");
    shell("monitoring systemd");
    let unit = std::fs::read_to_string("/etc/systemd/system/twtune-metrics.service").expect("the service");
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart=");
    assert!(std::fs::read_to_string("/etc/systemd/system/twtune-metrics.timer").is_ok_and(|t| t.contains("[Timer]")));
    let called = std::fs::read_to_string(&systemctl_log).unwrap_or_default();
    assert_eq!(called, "daemon-reload\nenable --now twtune-metrics.timer\n", "what the lines ask of systemctl");
    // systemd splits ExecStart= on spaces as the shell does (the command has no quotes).
    textfile_written_by(exec);
}

/// Runs `command` once as cron or systemd would, from `/` with nothing in the environment, and checks
/// that it left exactly `twtune.prom`, which promtool accepts, in the textfile directory.
fn textfile_written_by(command: &str) {
    let out = Command::new("env").args(["-i", "/bin/sh", "-c", command]).current_dir("/").output().expect("env -i");
    assert!(
        out.status.success(),
        "{command} failed with an empty environment: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(TEXTFILE_DIR)
        .expect("the textfile directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["twtune.prom"], "only the final file, no temporary one, in {TEXTFILE_DIR}");
    let metrics = std::fs::read_to_string(Path::new(TEXTFILE_DIR).join("twtune.prom")).expect("twtune.prom");
    assert!(metrics.contains("twtune_info{"), "the file holds twtune's metrics:\n{metrics}");
    assert!(metrics.contains("netns="), "--all-netns labels every series with its namespace:\n{metrics}");
    crate::outputs::promtool_accepts(&metrics);
}

/// fish and zsh (which scripts/test installs) load the completion from where the README puts it.
fn shells_find_the_completions(scratch: &Path) {
    let home = format!("HOME={}", scratch.display());
    if Command::new("fish").arg("--version").output().is_ok() {
        let offered = empty_env(&["PATH=/usr/local/bin:/usr/bin:/bin", &home, "fish", "-c", "complete -C 'twtune '"]);
        assert!(offered.lines().any(|l| l.starts_with("audit")), "fish completes twtune's subcommands:\n{offered}");
    } else {
        assert!(!ci(), "CI=true but fish is missing: scripts/test installs it");
    }
    if Command::new("zsh").arg("--version").output().is_ok() {
        let fpath = empty_env(&["zsh", "-f", "-c", "print -l $fpath"]);
        assert!(
            fpath.lines().any(|l| l == "/usr/local/share/zsh/site-functions"),
            "zsh's fpath holds /usr/local/share/zsh/site-functions:\n{fpath}"
        );
    } else {
        assert!(!ci(), "CI=true but zsh is missing: scripts/test installs it");
    }
}

/// `env -i ARGS...`: its stdout; panics unless it succeeds.
fn empty_env(args: &[&str]) -> String {
    let mut all = vec!["-i"];
    all.extend_from_slice(args);
    run("env", &all)
}

/// `Some(target directory)`: we are inside the scratch root; run the test body. `None`: the body
/// already ran there (and passed), or was skipped outside CI.
fn enter(test_name: &str) -> Option<String> {
    if let Ok(target_dir) = std::env::var(INSIDE) {
        make_scratch_root(&target_dir);
        return Some(target_dir);
    }
    if let Err(why) = available() {
        assert!(!ci(), "{test_name}: {why}; CI must run as root with unshare");
        eprintln!("SKIPPED {test_name}: {why}; run the tests as root");
        return None;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    // target/debug/deps/integration-HASH: the suite's target directory is three levels up.
    let target_dir = exe.ancestors().nth(3).expect("the target directory").to_path_buf();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, &target_dir)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test_name} failed in its scratch root\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    None
}

fn available() -> Result<(), String> {
    let uid = run("id", &["-u"]);
    if uid.trim() != "0" {
        return Err("the README's lines run as root".into());
    }
    match Command::new("unshare").args(["--mount", "true"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("cannot create a mount namespace: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("unshare: {e}")),
    }
}

/// Covers each tree in [`OVERLAID`] with an overlay whose upper layer is a tmpfs, then removes the
/// directories of [`CREATED`] in it. Refuses to remove anything not on such an overlay.
fn make_scratch_root(target_dir: &str) {
    let ours = std::fs::read_link("/proc/self/ns/mnt").expect("read own mount namespace");
    let host = std::fs::read_link("/proc/1/ns/mnt").ok();
    assert!(host.is_none_or(|h| h != ours), "refusing to mount outside a private mount namespace");
    let layers = Path::new(target_dir).join(SCRATCH);
    std::fs::create_dir_all(&layers).expect("layers directory");
    run("mount", &["-t", "tmpfs", "-o", "size=64m", "twtune-install-test", &layers.to_string_lossy()]);
    for (i, tree) in OVERLAID.iter().enumerate() {
        let upper = layers.join(format!("{i}/upper"));
        let work = layers.join(format!("{i}/work"));
        std::fs::create_dir_all(&upper).expect("upper");
        std::fs::create_dir_all(&work).expect("work");
        let options = format!("lowerdir={tree},upperdir={},workdir={}", upper.display(), work.display());
        run("mount", &["-t", "overlay", "-o", &options, "twtune-install-test", tree]);
    }
    for path in CREATED.iter().chain(REMOVED) {
        if Path::new(path).exists() {
            let mount = run("findmnt", &["-n", "-o", "FSTYPE,SOURCE", "--target", path]);
            assert_eq!(mount.split_whitespace().collect::<Vec<_>>(), ["overlay", "twtune-install-test"], "{path}");
            let removed =
                if Path::new(path).is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
            removed.unwrap_or_else(|e| panic!("remove {path} in the overlay: {e}"));
        }
    }
    // Where cron or systemd is installed these exist; where one is not, the test still runs its lines.
    for dir in ["/etc/cron.d", "/etc/systemd/system"] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {dir} in the overlay: {e}"));
    }
}

/// Runs a command and panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}
