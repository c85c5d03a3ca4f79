//! A captured `--root` tree is untrusted input: links stay inside it, FIFOs and devices are not
//! waited on, oversized and non-UTF-8 text does not take the audit down, and nothing outside the
//! tree reaches a report.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::util::{Expect, Run, audit_json, copy_tree, fixture};

/// A writable copy of the idle fixture, and beside it (outside the tree) a file it must not read.
fn tree_and_secret() -> (tempfile::TempDir, tempfile::TempDir) {
    let tree = tempfile::tempdir().expect("temp dir");
    copy_tree(&fixture("idle"), tree.path());
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("secret"), "31337\n").expect("write secret");
    (tree, outside)
}

fn root_arg(tree: &Path) -> String {
    tree.to_str().expect("utf-8 path").to_string()
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

#[test]
fn links_in_a_tree_resolve_inside_it() {
    let (tree, outside) = tree_and_secret();
    let secret = outside.path().join("secret");
    let key = tree.path().join("proc/sys/net/ipv4/tcp_fin_timeout");
    std::fs::remove_file(&key).expect("remove");
    // Absolute: means ROOT/<that path>, which the tree does not have.
    symlink(&secret, &key).expect("symlink");
    let relative = tree.path().join("proc/sys/net/ipv4/tcp_keepalive_time");
    std::fs::remove_file(&relative).expect("remove");
    // Relative and climbing: `..` stops at the root.
    symlink(format!("{}/../../../../../../../..{}", "..", secret.display()), &relative).expect("symlink");
    // A sysctl.d file linked out of the tree.
    std::fs::create_dir_all(tree.path().join("etc/sysctl.d")).expect("mkdir");
    std::fs::write(outside.path().join("evil.conf"), "net.ipv4.tcp_fin_timeout = 31337\n").expect("write");
    symlink(outside.path().join("evil.conf"), tree.path().join("etc/sysctl.d/50-evil.conf")).expect("symlink");

    let (_, report) = audit_json(&["--fail-on", "never", "--root", &root_arg(tree.path())]);
    assert_eq!(report.settings["net.ipv4.tcp_fin_timeout"], None, "the link leads nowhere inside the tree");
    assert_eq!(report.settings["net.ipv4.tcp_keepalive_time"], None);
    let json = format!("{:?} {:?}", report.findings, report.warnings);
    assert!(!json.contains("31337"), "nothing from outside the tree: {json}");
    let explain = Run::new(&["explain", "net.ipv4.tcp_fin_timeout", "--format", "json", "--root"])
        .arg(tree.path())
        .stdout(Expect::satisfies("no value from outside the tree", |s| !s.contains("31337")))
        .run();
    assert!(explain.contains("\"runtime\": null"), "{explain}");
}

#[test]
fn a_fifo_is_refused_not_waited_on() {
    let (tree, _outside) = tree_and_secret();
    // As a sysctl value: that key is treated as absent, with a warning.
    let key = tree.path().join("proc/sys/net/ipv4/tcp_fin_timeout");
    std::fs::remove_file(&key).expect("remove");
    mkfifo(&key);
    // As a sysctl.d file: a problem of the tree, the audit goes on.
    std::fs::create_dir_all(tree.path().join("etc/sysctl.d")).expect("mkdir");
    mkfifo(&tree.path().join("etc/sysctl.d/10-fifo.conf"));
    let (_, report) = audit_json(&["--fail-on", "never", "--root", &root_arg(tree.path())]);
    assert_eq!(report.settings["net.ipv4.tcp_fin_timeout"], None);
    assert!(
        report.warnings.iter().any(|w| w.contains("tcp_fin_timeout") && w.contains("FIFO")),
        "{:?}",
        report.warnings
    );
    assert!(report.findings.iter().any(|f| f.id == "persist.malformed" && f.message.contains("10-fifo.conf")));
    // As a table every audit needs: an error, at once.
    let tcp = tree.path().join("proc/net/tcp");
    std::fs::remove_file(&tcp).expect("remove");
    mkfifo(&tcp);
    Run::new(&["audit", "--root"])
        .arg(tree.path())
        .status(2)
        .stderr(Expect::one_line(&["proc/net/tcp", "a FIFO is not read"]))
        .run();
}

#[test]
fn oversized_and_non_utf8_text_is_bounded_and_read_lossily() {
    let (tree, _outside) = tree_and_secret();
    // A 2 MiB sysctl value: refused (treated as absent, with a warning), not read into memory.
    std::fs::write(tree.path().join("proc/sys/net/ipv4/tcp_fin_timeout"), vec![b'9'; 2 << 20]).expect("write");
    // Invalid UTF-8 in the kernel release and in sockstat: read lossily, the audit goes on.
    std::fs::write(tree.path().join("proc/sys/kernel/osrelease"), b"6.18.0-\xff\xfe\n").expect("write");
    let sockstat = std::fs::read(tree.path().join("proc/net/sockstat")).expect("read");
    let mut broken = b"\xff garbage\n".to_vec();
    broken.extend(sockstat);
    std::fs::write(tree.path().join("proc/net/sockstat"), broken).expect("write");
    let (_, report) = audit_json(&["--fail-on", "never", "--root", &root_arg(tree.path())]);
    assert_eq!(report.settings["net.ipv4.tcp_fin_timeout"], None);
    assert!(
        report.warnings.iter().any(|w| w.contains("tcp_fin_timeout") && w.contains("larger than")),
        "{:?}",
        report.warnings
    );
    assert!(report.kernel.starts_with("6.18.0-"), "{}", report.kernel);
    // A proc/net table without a line end, larger than any the kernel writes: an error, bounded.
    std::fs::write(tree.path().join("proc/net/netstat"), vec![b'x'; 2 << 20]).expect("write");
    Run::new(&["audit", "--root"])
        .arg(tree.path())
        .status(2)
        .stderr(Expect::one_line(&["proc/net/netstat", "larger than"]))
        .run();
}

#[test]
fn a_fifo_given_as_a_profile_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("p.yaml");
    mkfifo(&fifo);
    Run::new(&["profiles", "check"])
        .arg(&fifo)
        .status(2)
        .stderr(Expect::one_line(&["p.yaml", "not a regular file"]))
        .run();
    let tree = dir.path().join("root");
    copy_tree(&fixture("idle"), &tree);
    std::fs::create_dir_all(tree.join("etc/twtune/profiles.d")).expect("mkdir");
    mkfifo(&tree.join("etc/twtune/profiles.d/planted.yaml"));
    // In profiles.d (read inside the tree) too: refused at once, nothing waits.
    Run::new(&["audit", "--profile", "planted", "--root"])
        .arg(&tree)
        .status(2)
        .stderr(Expect::one_line(&["profiles.d/planted.yaml", "a FIFO is not read"]))
        .run();
    // A profiles.d linked out of the tree is the tree's own path: an absolute link means ROOT/...
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("leak.yaml"), "name: leak\ndescription: from outside the tree\nsettings: {}\n")
        .expect("write");
    std::fs::remove_dir_all(tree.join("etc/twtune/profiles.d")).expect("rm");
    std::os::unix::fs::symlink(&outside, tree.join("etc/twtune/profiles.d")).expect("symlink");
    Run::new(&["profiles", "list", "--root"])
        .arg(&tree)
        .stdout(Expect::satisfies("only the built-in profiles", |s| !s.contains("leak") && s.contains("baseline")))
        .run();
}

#[test]
fn escape_sequences_from_files_do_not_reach_the_terminal() {
    let (tree, _outside) = tree_and_secret();
    std::fs::write(tree.path().join("proc/sys/kernel/osrelease"), "6.18.0\u{1b}[2J\n").expect("write");
    std::fs::create_dir_all(tree.path().join("etc/sysctl.d")).expect("mkdir");
    std::fs::write(tree.path().join("etc/sysctl.d/10-x.conf"), "\u{1b}]0;pwned\u{7} no equals sign\n").expect("write");
    // With colour forced on, twtune's own styles are there; the files' sequences are not.
    let report = Run::new(&["audit", "--color", "always", "--fail-on", "never", "--root"])
        .arg(tree.path())
        .stdout(Expect::contains(&["twtune audit"]))
        .run();
    assert!(report.contains('\u{1b}'), "colour is on");
    assert!(!report.contains("\u{1b}[2J") && !report.contains("\u{1b}]0;"), "{report:?}");
    assert!(report.contains("kernel 6.18.0\\u{1b}[2J"), "shown escaped: {report:?}");
    // And in an error line.
    let root = tree.path().join("missing\u{1b}[2J");
    Run::new(&["audit", "--root"]).arg(&root).status(2).stderr(Expect::one_line(&["missing\\u{1b}[2J"])).run();
}

#[test]
fn a_snapshot_of_a_hostile_tree_copies_nothing_from_outside_it() {
    let (tree, outside) = tree_and_secret();
    let secret = outside.path().join("secret");
    // A table linked out of the tree, a FIFO in sysctl.d, a sysctl.d link kept as a link.
    let netstat = tree.path().join("proc/net/netstat");
    let original = std::fs::read(&netstat).expect("read");
    std::fs::create_dir_all(tree.path().join(outside.path().strip_prefix("/").expect("absolute"))).expect("mkdir");
    std::fs::write(tree.path().join(secret.strip_prefix("/").expect("absolute")), &original).expect("in-tree twin");
    std::fs::remove_file(&netstat).expect("rm");
    symlink(&secret, &netstat).expect("symlink");
    std::fs::create_dir_all(tree.path().join("etc/sysctl.d")).expect("mkdir");
    mkfifo(&tree.path().join("etc/sysctl.d/20-fifo.conf"));
    symlink(&secret, tree.path().join("etc/sysctl.d/30-link.conf")).expect("symlink");
    let copy = tempfile::tempdir().expect("temp dir");
    let target = copy.path().join("snap");
    Run::new(&["snapshot", "--root"])
        .arg(tree.path())
        .arg(&target)
        .status(2)
        .stderr(Expect::one_line(&["20-fifo.conf", "a FIFO is not read"]))
        .run();
    // What was copied before the FIFO stopped it came from inside the tree.
    let copied = std::fs::read(target.join("proc/net/netstat")).expect("copied");
    assert_eq!(copied, original, "the in-tree twin, not {}", secret.display());
    assert!(std::fs::read_link(target.join("etc/sysctl.d/30-link.conf")).is_ok(), "kept as a link");
}

#[test]
fn a_fifo_as_a_network_namespace_is_refused_at_once() {
    if !crate::netns::enter("untrusted::a_fifo_as_a_network_namespace_is_refused_at_once") {
        return;
    }
    // This mount namespace's own /run: a FIFO planted where `ip netns` keeps its names.
    crate::netns::run("mount", &["-t", "tmpfs", "-o", "size=1m", "twtune-test", "/run"]);
    std::fs::create_dir_all("/run/netns").expect("mkdir");
    mkfifo(Path::new("/run/netns/planted"));
    Run::new(&["audit", "--netns", "planted"]).status(2).stderr(Expect::one_line(&["/run/netns/planted"])).run();
    // The sweep passes over it, over a plain file and a link to one, without waiting; a link to a
    // namespace (a known recipe) names it.
    symlink("/etc/passwd", "/run/netns/linked").expect("symlink");
    std::fs::write("/run/netns/plain", "").expect("plain file");
    symlink(format!("/proc/{}/ns/net", std::process::id()), "/run/netns/ours").expect("symlink");
    let out = crate::util::twtune().args(["audit", "--all-netns", "--format", "json", "--fail-on", "never"]).output();
    let out = out.expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let sweep: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    crate::util::valid_json("audit-all-netns", &out.stdout);
    let names: Vec<&str> =
        sweep["namespaces"].as_array().expect("list").iter().filter_map(|ns| ns["netns"]["name"].as_str()).collect();
    assert!(names.contains(&"ours"), "{names:?}");
    for name in ["planted", "linked", "plain"] {
        assert!(!names.iter().any(|n| n.split(',').any(|n| n == name)), "{name} taken for a namespace: {names:?}");
    }
}

#[test]
fn a_journal_directory_that_is_a_link_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    symlink(&elsewhere, state.join("journal")).expect("symlink");
    Run::new(&["rollback", "--list", "--state-dir"])
        .arg(&state)
        .status(2)
        .stderr(Expect::one_line(&["journal", "it is a link"]))
        .run();
}

#[test]
fn an_unreadable_sysctl_d_directory_is_a_problem_not_an_abort() {
    use std::os::unix::fs::PermissionsExt;
    if !running_as_root() {
        assert!(std::env::var("CI").is_err(), "CI runs as root: this test needs it to drop privileges");
        eprintln!("SKIPPED: needs root to run twtune as another user");
        return;
    }
    // A tree any user can read, but for one sysctl.d directory; twtune runs as nobody.
    let parent = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tree = parent.path().join("root");
    copy_tree(&fixture("idle"), &tree);
    std::fs::create_dir_all(tree.join("etc/sysctl.d")).expect("mkdir");
    std::fs::write(tree.join("etc/sysctl.d/10-a.conf"), "net.ipv4.tcp_fin_timeout = 30\n").expect("write");
    std::fs::set_permissions(tree.join("etc/sysctl.d"), std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_twtune"))
        .args(["audit", "--format", "json", "--fail-on", "never", "--root"])
        .arg(&tree)
        .output()
        .expect("setpriv");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    crate::util::valid_json("audit", &output.stdout);
    assert!(stdout.contains("/etc/sysctl.d: cannot read the directory"), "{stdout}");
}

fn running_as_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn a_state_directory_reached_through_a_link_is_refused() {
    // A tree whose var is a link: the default state directory beneath it would be someone else's.
    let dir = tempfile::tempdir().expect("temp dir");
    let tree = dir.path().join("root");
    copy_tree(&fixture("idle"), &tree);
    let other = dir.path().join("other/lib/twtune");
    std::fs::create_dir_all(&other).expect("mkdir");
    symlink(dir.path().join("other"), tree.join("var")).expect("symlink");
    Run::new(&["rollback", "--list", "--root"])
        .arg(&tree)
        .status(2)
        .stderr(Expect::one_line(&["a directory on the way to it is a link"]))
        .run();
}

#[test]
fn a_snapshot_into_a_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    Run::new(&["snapshot", "--root"])
        .arg(fixture("idle"))
        .arg(&shared)
        .status(2)
        .stderr(Expect::one_line(&["shared", "writable by group or others"]))
        .run();
    let link = dir.path().join("link");
    symlink(&shared, &link).expect("symlink");
    Run::new(&["snapshot", "--root"])
        .arg(fixture("idle"))
        .arg(&link)
        .status(2)
        .stderr(Expect::one_line(&["it is a link"]))
        .run();
}

#[test]
fn an_archive_name_that_is_a_link_or_a_fifo_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    let link = dir.path().join("snap.tar.gz");
    symlink(&victim, &link).expect("symlink");
    Run::new(&["snapshot", "--root"])
        .arg(fixture("idle"))
        .arg("--archive")
        .arg(&link)
        .status(2)
        .stderr(Expect::one_line(&["it is a link"]))
        .run();
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious\n");
    let fifo = dir.path().join("fifo.tar.gz");
    mkfifo(&fifo);
    Run::new(&["snapshot", "--root"])
        .arg(fixture("idle"))
        .arg("--archive")
        .arg(&fifo)
        .status(2)
        .stderr(Expect::one_line(&["not a regular file"]))
        .run();
}

/// JSON carries C1 controls (U+0085 NEL, U+009B CSI) and the marks that reorder text (U+202E)
/// escaped, as `\uXXXX`, as the human and Prometheus outputs escape them; parsed, the text is the
/// same.
#[test]
fn json_escapes_c1_controls_and_reordering_marks() {
    let (tree, _outside) = tree_and_secret();
    let hostile = "6.18.0\u{85}x\u{202e}y\u{9b}2J";
    std::fs::write(tree.path().join("proc/sys/kernel/osrelease"), format!("{hostile}\n")).expect("write");
    std::fs::create_dir_all(tree.path().join("etc/sysctl.d")).expect("mkdir");
    std::fs::write(tree.path().join("etc/sysctl.d/10-x.conf"), "net.ipv4.tcp_fin_timeout = 30\u{9b}\u{202e}\n")
        .expect("write");
    let profile = tree.path().join("p.yaml");
    std::fs::write(
        &profile,
        "name: evil\ndescription: \"d\\u009b\\u202e\"\nsettings:\n  net.ipv4.tcp_fin_timeout:\n    \
         value: 1\n    why: \"w\\u009b\\u202e\"\n    risk: \"r\\u009b\\u202e\"\n",
    )
    .expect("write");
    let audit = Run::new(&["audit", "--format", "json", "--fail-on", "never", "--root"])
        .arg(tree.path())
        .arg("--profile")
        .arg(&profile)
        .stdout(Expect::contains(&["\"kernel\""]))
        .run();
    let explain = Run::new(&["explain", "net.ipv4.tcp_fin_timeout", "--format", "json", "--root"])
        .arg(tree.path())
        .stdout(Expect::contains(&["\"key\""]))
        .run();
    for json in [&audit, &explain] {
        assert!(!json.contains('\u{85}') && !json.contains('\u{202e}') && !json.contains('\u{9b}'), "{json}");
        assert!(json.contains("\\u009b") && json.contains("\\u202e"), "{json}");
    }
    let report: serde_json::Value = serde_json::from_str(&audit).expect("json");
    assert_eq!(report["kernel"], hostile, "the same text once parsed");
    assert!(audit.contains("w\\u009b\\u202e"), "the profile's why: {audit}");
    // A sysctl.d value (U+0085 is white space there, and folded).
    let explained: serde_json::Value = serde_json::from_str(&explain).expect("json");
    assert_eq!(explained["boot"]["systemd"]["value"], "30\u{9b}\u{202e}", "{explain}");
}
