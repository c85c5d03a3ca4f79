//! `twtune apply` and `twtune rollback` on the real kernel, each test in private network and mount
//! namespaces with tmpfs over every sysctl.d directory (so /etc/sysctl.d/90-twtune.conf lands in
//! the namespace's tmpfs) and a temporary state directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::{SYSCTL_DIRS, enter, initial_namespace_known, run, set_sysctl, sysctl};
use crate::util::{Expect, Run, audit_json};

const PERSISTED: &str = "/etc/sysctl.d/90-twtune.conf";

/// What apply says in a network namespace other than the initial one, where it persists nothing.
/// (Every test here runs in such a namespace: the ones that check persisting pass `--persist`.)
const NOT_PERSISTED_HERE: &str = "Not persisted: the values were changed in this network namespace only; persisting \
                                  them would write /etc/sysctl.d/90-twtune.conf, which at boot sets the host's initial \
                                  network namespace, not this one (`--persist` writes it anyway).\n";

/// What `twtune rollback` says when the journal has no applied entry.
fn nothing_to_roll_back(state: &Path) -> String {
    format!(
        "twtune: nothing to roll back: no applied entry in {}; `twtune rollback --list` shows the journal\n",
        state.display()
    )
}

/// The state directory of a test, and a guard that the persisted file cannot reach the host.
fn setup() -> tempfile::TempDir {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        mounts.lines().any(|l| l.split_whitespace().nth(4) == Some("/etc/sysctl.d") && l.contains("tmpfs")),
        "/etc/sysctl.d must be this namespace's tmpfs before anything is applied"
    );
    tempfile::tempdir().expect("state dir")
}

fn state_arg(state: &Path) -> [String; 2] {
    ["--state-dir".into(), state.to_str().expect("utf-8").into()]
}

fn profile_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write profile");
    path
}

#[test]
fn apply_and_rollback_round_trip() {
    if !enter("apply::apply_and_rollback_round_trip") {
        return;
    }
    let state = setup();
    Run::new(&["apply", "outbound-heavy", "--yes", "--persist"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&[
            "net.ipv4.tcp_tw_reuse             2 -> 1",
            "Applied 3 changes (journal entry ",
            &format!("Persisted to {PERSISTED}."),
        ]))
        .run();
    assert_eq!(
        (sysctl("net.ipv4.tcp_tw_reuse"), sysctl("net.ipv4.ip_local_port_range")),
        ("1".into(), "10000 65535".into())
    );
    let persisted = std::fs::read_to_string(PERSISTED).expect("persisted file");
    assert!(persisted.starts_with("# Written by twtune "), "{persisted}");
    assert!(
        persisted.contains("profile outbound-heavy") && persisted.contains("net.ipv4.tcp_tw_reuse = 1\n"),
        "{persisted}"
    );
    // The file is what the next boot applies: twtune's own audit agrees nothing drifts.
    let (_, report) = audit_json(&["--profile", "outbound-heavy"]);
    let ids = report.ids();
    assert!(!ids.iter().any(|id| id.starts_with("persist.") || id.starts_with("profile.")), "{ids:?}");

    Run::new(&["rollback", "--list"]).args(state_arg(state.path())).stdout(Expect::contains(&["applied"])).run();
    // The same listing for programs (Run checks it against docs/schema/rollback-list.json).
    let listing = Run::new(&["rollback", "--list", "--format", "json"])
        .args(state_arg(state.path()))
        .stdout(Expect::satisfies("a JSON listing", |s| s.starts_with('{')))
        .run();
    let listing: serde_json::Value = serde_json::from_str(&listing).expect("JSON");
    let entry = &listing["entries"][0];
    assert_eq!((&entry["status"], &entry["can_roll_back"]), (&"applied".into(), &true.into()), "{listing}");
    assert_eq!(entry["persist_file"], PERSISTED, "{listing}");
    let reuse = entry["changes"].as_array().expect("changes").iter().find(|c| c["key"] == "net.ipv4.tcp_tw_reuse");
    assert_eq!(reuse.map(|c| (&c["before"], &c["after"])), Some((&"2".into(), &"1".into())), "{listing}");
    Run::new(&["rollback", "--yes"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&[&format!("and remove {PERSISTED}"), "Rolled back journal entry"]))
        .run();
    assert_eq!(
        (sysctl("net.ipv4.tcp_tw_reuse"), sysctl("net.ipv4.ip_local_port_range")),
        ("2".into(), "32768 60999".into())
    );
    assert!(!Path::new(PERSISTED).exists());
    Run::new(&["rollback", "--yes"])
        .args(state_arg(state.path()))
        .status(2)
        .stderr(nothing_to_roll_back(state.path()))
        .run();
}

/// Every file beneath the sysctl.d directories (this namespace's tmpfs), for checking that none
/// was written.
fn sysctl_d_files() -> Vec<PathBuf> {
    SYSCTL_DIRS
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .collect()
}

#[test]
fn outside_the_initial_namespace_apply_persists_nothing_unless_asked() {
    let name = "apply::outside_the_initial_namespace_apply_persists_nothing_unless_asked";
    if !enter(name) || !initial_namespace_known(name) {
        return;
    }
    let state = setup();
    assert_eq!(sysctl_d_files(), Vec::<PathBuf>::new(), "the tmpfs starts empty");
    // The audit recommends restoring a lowered tcp_fin_timeout to 60.
    set_sysctl("net.ipv4.tcp_fin_timeout", "10");
    let out = Run::new(&["apply", "--recommended", "--yes"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["Plan (recommended): 1 change", "Applied 1 change (journal entry "]))
        .run();
    // One sentence, last, instead of "Persisted to"; no warning.
    let fold = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(fold(&out).ends_with(&fold(NOT_PERSISTED_HERE)) && !out.contains("Persisted to"), "{out}");
    assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "60", "the runtime value is changed");
    assert_eq!(sysctl_d_files(), Vec::<PathBuf>::new(), "no file under any sysctl.d directory");
    assert!(!Path::new(PERSISTED).exists());
    // The journal entry holds no file, so its rollback restores the value and touches none.
    let out = Run::new(&["rollback", "--yes"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["net.ipv4.tcp_fin_timeout: 60 -> 10", "Rolled back journal entry "]))
        .run();
    assert!(!out.contains("sysctl.d"), "{out}");
    assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "10");

    // Asked for, the file is written as in the initial namespace, and said so.
    let out = Run::new(&["apply", "--recommended", "--yes", "--persist"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["Applied 1 change"]))
        .run();
    assert!(out.ends_with(&format!("Persisted to {PERSISTED}.\n")) && !out.contains("Not persisted"), "{out}");
    assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "60");
    let persisted = std::fs::read_to_string(PERSISTED).expect("persisted file");
    assert!(persisted.contains("net.ipv4.tcp_fin_timeout = 60\n"), "{persisted}");
    assert_eq!(sysctl_d_files(), vec![PathBuf::from(PERSISTED)]);
    // ... and its rollback removes it again.
    Run::new(&["rollback", "--yes"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&[&format!("and remove {PERSISTED}"), "Rolled back journal entry "]))
        .run();
    assert_eq!(sysctl_d_files(), Vec::<PathBuf>::new());

    // --persist and --no-persist contradict each other.
    Run::new(&["apply", "--recommended", "--yes", "--persist", "--no-persist"])
        .args(state_arg(state.path()))
        .status(2)
        .stderr(Expect::one_line(&["--persist", "--no-persist"]))
        .run();
}

#[test]
fn dry_run_changes_nothing() {
    if !enter("apply::dry_run_changes_nothing") {
        return;
    }
    let state = setup();
    let out = Run::new(&["apply", "outbound-heavy", "--dry-run"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["Plan (profile outbound-heavy): 3 changes", "why:", "risk:"]))
        .run();
    assert!(out.ends_with("Dry run: nothing was changed.\n"), "{out}");
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2");
    assert!(!Path::new(PERSISTED).exists());
    assert!(std::fs::read_dir(state.path()).expect("state").next().is_none(), "no journal for a dry run");
}

#[test]
fn a_value_the_kernel_rejects_restores_the_first_key_and_persists_nothing() {
    if !enter("apply::a_value_the_kernel_rejects_restores_the_first_key_and_persists_nothing") {
        return;
    }
    let state = setup();
    // somaxconn is written first; the kernel refuses an unknown congestion control second.
    let profile = profile_file(
        state.path(),
        "bad",
        "name: bad\ndescription: d\nsettings:\n  net.core.somaxconn: {min: 8192, why: w, risk: r}\n  \
         net.ipv4.tcp_congestion_control: {value: no_such_algorithm, why: w, risk: r}\n",
    );
    let before = sysctl("net.ipv4.tcp_congestion_control");
    Run::new(&["apply", "--yes"])
        .arg(&profile)
        .args(state_arg(state.path()))
        .status(2)
        .stdout(Expect::contains(&["Plan ("]))
        .stderr(Expect::one_line(&[
            "writing net.ipv4.tcp_congestion_control = \"no_such_algorithm\" failed",
            "restored net.core.somaxconn=\"4096\"",
            "the persisted file is unchanged",
        ]))
        .run();
    assert_eq!(sysctl("net.core.somaxconn"), "4096");
    assert_eq!(sysctl("net.ipv4.tcp_congestion_control"), before);
    assert!(!Path::new(PERSISTED).exists());
    Run::new(&["rollback", "--list"]).args(state_arg(state.path())).stdout(Expect::contains(&["failed"])).run();
}

#[test]
fn without_root_nothing_is_written() {
    if !enter("apply::without_root_nothing_is_written") {
        return;
    }
    let state = setup();
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_twtune"))
        .args(["apply", "outbound-heavy", "--yes"])
        .args(state_arg(state.path()))
        .output()
        .expect("setpriv");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("twtune: not allowed to write /proc/sys/net/"), "{stderr}");
    assert!(stderr.ends_with("run as root, e.g. with sudo\n"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // The plan is shown before the first write; nothing claims to have been applied.
    assert!(
        stdout.starts_with("Plan (profile outbound-heavy): 3 changes\n") && !stdout.contains("Applied"),
        "{stdout}"
    );
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2");
    assert!(!Path::new(PERSISTED).exists());
}

#[test]
fn without_a_terminal_it_refuses_unless_yes() {
    if !enter("apply::without_a_terminal_it_refuses_unless_yes") {
        return;
    }
    let state = setup();
    Run::new(&["apply", "outbound-heavy"])
        .args(state_arg(state.path()))
        .stdin("y\n")
        .status(2)
        .stdout(Expect::contains(&["Plan ("]))
        .stderr(Expect::one_line(&["refusing to change anything without confirmation", "--yes"]))
        .run();
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2");
    // The refused apply left no journal entry to undo.
    Run::new(&["rollback"]).args(state_arg(state.path())).status(2).stderr(nothing_to_roll_back(state.path())).run();
}

#[test]
fn a_second_apply_waits_for_no_one_and_says_so() {
    if !enter("apply::a_second_apply_waits_for_no_one_and_says_so") {
        return;
    }
    let state = setup();
    let held = twtune::lock_state_dir(state.path()).expect("take the lock");
    Run::new(&["apply", "outbound-heavy", "--yes"])
        .args(state_arg(state.path()))
        .status(2)
        .stdout(Expect::contains(&["Plan (profile outbound-heavy): 3 changes"]))
        .stderr(Expect::one_line(&["another twtune apply or rollback is running", &std::process::id().to_string()]))
        .run();
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2");
    drop(held);
    Run::new(&["apply", "outbound-heavy", "--yes"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["Applied 3 changes"]))
        .run();
}

#[test]
fn a_file_that_overrides_the_applied_keys_is_named() {
    if !enter("apply::a_file_that_overrides_the_applied_keys_is_named") {
        return;
    }
    let state = setup();
    std::fs::write("/etc/sysctl.d/99-zz-team.conf", "net.ipv4.tcp_tw_reuse = 0\n").expect("write");
    Run::new(&["apply", "outbound-heavy", "--yes", "--persist"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["Applied 3 changes"]))
        // One warning per boot order, and none about ip_local_port_range, which no file overrides.
        .stderr(
            "twtune: warning: at the next boot (systemd-sysctl) /etc/sysctl.d/99-zz-team.conf:1 sets \
             net.ipv4.tcp_tw_reuse = \"0\" and overrides /etc/sysctl.d/90-twtune.conf\n\
             twtune: warning: at the next boot (sysctl --system) /etc/sysctl.d/99-zz-team.conf:1 sets \
             net.ipv4.tcp_tw_reuse = \"0\" and overrides /etc/sysctl.d/90-twtune.conf\n",
        )
        .run();
}

#[test]
fn ctrl_c_during_apply_leaves_the_old_state() {
    if !enter("apply::ctrl_c_during_apply_leaves_the_old_state") {
        return;
    }
    let state = setup();
    let child = Command::new(env!("CARGO_BIN_EXE_twtune"))
        .args(["apply", "outbound-heavy", "--yes"])
        .args(state_arg(state.path()))
        .env("TWTUNE_TEST_WRITE_DELAY_MS", "1500")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // The first write happens at once; the second waits 1.5 s: interrupt in between.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sysctl("net.ipv4.ip_local_port_range") != "10000 65535" {
        assert!(std::time::Instant::now() < deadline, "the first write never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().expect("kill");
    let output = child.wait_with_output().expect("wait");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("twtune: interrupted; restored net.ipv4.ip_local_port_range=\"32768 60999\""),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stdout.starts_with("Plan (profile outbound-heavy): 3 changes\n") && !stdout.contains("Applied"),
        "{stdout}"
    );
    assert_eq!(
        (sysctl("net.ipv4.ip_local_port_range"), sysctl("net.ipv4.tcp_tw_reuse")),
        ("32768 60999".into(), "2".into())
    );
    assert!(!Path::new(PERSISTED).exists());
}

/// Runs `twtune apply` in a pseudo-terminal and answers the real dialoguer prompt.
fn answer_prompt(state: &Path, key: &str) -> (String, i32) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_twtune"));
    command.args(["apply", "outbound-heavy", "--persist"]).args(state_arg(state)).env("TERM", "dumb");
    let mut session = rexpect::session::spawn_command(command, Some(20_000)).expect("spawn in a pty");
    session.exp_string("Apply 3 changes?").expect("the prompt");
    session.send(key).expect("answer");
    session.flush().expect("flush");
    let rest = session.exp_eof().expect("exit");
    let code = match session.process().wait().expect("wait") {
        rexpect::process::WaitStatus::Exited(_, code) => code,
        other => panic!("{other:?}"),
    };
    (rest, code)
}

#[test]
fn answering_the_real_prompt_y_applies_and_n_changes_nothing() {
    if !enter("apply::answering_the_real_prompt_y_applies_and_n_changes_nothing") {
        return;
    }
    let state = setup();
    let (rest, code) = answer_prompt(state.path(), "n");
    assert_eq!(code, 1, "{rest}");
    assert!(rest.contains("Nothing was changed."), "{rest}");
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2");
    assert!(!Path::new(PERSISTED).exists());

    let (rest, code) = answer_prompt(state.path(), "y");
    assert_eq!(code, 0, "{rest}");
    assert!(rest.contains("Applied 3 changes"), "{rest}");
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "1");
    assert!(Path::new(PERSISTED).exists());
}

#[test]
fn no_persist_changes_runtime_only_and_warns() {
    if !enter("apply::no_persist_changes_runtime_only_and_warns") {
        return;
    }
    let state = setup();
    // The audit recommends restoring a lowered tcp_fin_timeout to 60.
    set_sysctl("net.ipv4.tcp_fin_timeout", "10");
    Run::new(&["apply", "--recommended", "--yes", "--no-persist"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["Plan (recommended): 1 change", "net.ipv4.tcp_fin_timeout  10 -> 60"]))
        .stderr("twtune: warning: not persisted (--no-persist): these values are lost at the next reboot\n")
        .run();
    assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "60");
    assert!(!Path::new(PERSISTED).exists());
}

#[test]
fn a_warning_that_cannot_be_written_fails_the_run_without_a_panic() {
    if !enter("apply::a_warning_that_cannot_be_written_fails_the_run_without_a_panic") {
        return;
    }
    let state = setup();
    set_sysctl("net.ipv4.tcp_fin_timeout", "10");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_twtune"))
        .args(["apply", "--recommended", "--yes", "--no-persist"])
        .args(state_arg(state.path()))
        .stdout(std::process::Stdio::null())
        .stderr(full)
        .status()
        .expect("run twtune");
    // The change is made (and journalled); the warning that it is not persisted is lost, so the
    // status is 2, not 0, and not a panic's 101.
    assert_eq!(status.code(), Some(2));
    assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "60");
}

#[test]
fn a_value_the_kernel_rewrites_is_an_error_and_is_restored() {
    if !enter("apply::a_value_the_kernel_rewrites_is_an_error_and_is_restored") {
        return;
    }
    let state = setup();
    // The kernel accepts "0x5" for tcp_syn_retries (a key twtune does not know) but keeps 5.
    let profile = profile_file(
        state.path(),
        "rewritten",
        "name: rewritten\ndescription: d\nsettings:\n  net.core.somaxconn: {min: 8192, why: w, risk: r}\n  \
         net.ipv4.tcp_syn_retries: {value: \"0x5\", why: w, risk: r}\n",
    );
    let before = sysctl("net.ipv4.tcp_syn_retries");
    Run::new(&["apply", "--yes"])
        .arg(&profile)
        .args(state_arg(state.path()))
        .status(2)
        .stdout(Expect::contains(&["Plan ("]))
        .stderr(Expect::one_line(&[
            "the kernel kept \"5\" instead of \"0x5\"",
            &format!("net.ipv4.tcp_syn_retries={before:?}"),
            "net.core.somaxconn=\"4096\"",
        ]))
        .run();
    assert_eq!((sysctl("net.ipv4.tcp_syn_retries"), sysctl("net.core.somaxconn")), (before, "4096".to_string()));
    assert!(!Path::new(PERSISTED).exists());
}

#[test]
fn a_read_only_persist_directory_is_named_as_such_not_as_privilege() {
    if !enter("apply::a_read_only_persist_directory_is_named_as_such_not_as_privilege") {
        return;
    }
    let state = setup();
    let ro = state.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    run("mount", &["-t", "tmpfs", "-o", "ro,size=1m", "twtune-ro", ro.to_str().expect("utf-8")]);
    set_sysctl("net.ipv4.tcp_fin_timeout", "10");
    Run::new(&["apply", "--recommended", "--yes", "--persist", "--persist-file"])
        .arg(ro.join("90-twtune.conf"))
        .args(state_arg(state.path()))
        .status(2)
        .stdout(Expect::contains(&["Plan (recommended)"]))
        .stderr(Expect::one_line(&["its file system is read-only"]))
        .run();
    assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "10", "nothing was changed");
}

#[test]
fn a_proc_sys_turning_read_only_mid_apply_leaves_an_entry_rollback_can_finish() {
    if !enter("apply::a_proc_sys_turning_read_only_mid_apply_leaves_an_entry_rollback_can_finish") {
        return;
    }
    let state = setup();
    let child = Command::new(env!("CARGO_BIN_EXE_twtune"))
        .args(["apply", "outbound-heavy", "--yes"])
        .args(state_arg(state.path()))
        .env("TWTUNE_TEST_WRITE_DELAY_MS", "1500")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sysctl("net.ipv4.ip_local_port_range") != "10000 65535" {
        assert!(std::time::Instant::now() < deadline, "the first write never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // This mount namespace's /proc only: the next write and the undo both meet a read-only /proc/sys.
    run("mount", &["-o", "remount,bind,ro", "/proc"]);
    let output = child.wait_with_output().expect("wait");
    run("mount", &["-o", "remount,bind,rw", "/proc"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nothing could be restored"), "{stderr}");
    assert!(stderr.contains("COULD NOT RESTORE net.ipv4.ip_local_port_range"), "{stderr}");
    assert!(stderr.contains("which keep their new values"), "{stderr}");
    assert!(!stderr.contains("nothing had been changed"), "an honest message: {stderr}");
    assert!(stderr.contains("`twtune rollback "), "{stderr}");
    assert_eq!(sysctl("net.ipv4.ip_local_port_range"), "10000 65535", "still changed");
    // Later, with /proc/sys writable again, the entry is rolled back.
    Run::new(&["rollback", "--list"]).args(state_arg(state.path())).stdout(Expect::contains(&["incomplete"])).run();
    Run::new(&["rollback", "--yes"])
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["Rolled back journal entry "]))
        .run();
    assert_eq!(sysctl("net.ipv4.ip_local_port_range"), "32768 60999");
}

#[test]
fn a_full_state_directory_after_the_writes_says_what_happened_and_rollback_finishes() {
    if !enter("apply::a_full_state_directory_after_the_writes_says_what_happened_and_rollback_finishes") {
        return;
    }
    let _state = setup();
    // Two pages: the lock and the pending entry fit, the entry marked applied does not.
    let full = tempfile::tempdir().expect("temp dir");
    run("mount", &["-t", "tmpfs", "-o", "size=8k", "twtune-full", full.path().to_str().expect("utf-8")]);
    let state = full.path().join("state");
    set_sysctl("net.ipv4.tcp_fin_timeout", "10");
    Run::new(&["apply", "--recommended", "--yes", "--no-persist"])
        .args(state_arg(&state))
        .stdout(Expect::contains(&["Applied 1 change"]))
        .stderr(Expect::satisfies("the journal warning, then the --no-persist one", |s| {
            s.lines().count() == 2 && s.contains("could not be marked applied") && s.contains("No space left")
        }))
        .run();
    assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "60", "applied, as exit 0 says");
    // The pending entry rolls back; marking it fails too, which is said, and a second rollback
    // finishes the same way instead of failing for ever.
    for _ in 0..2 {
        Run::new(&["rollback", "--yes"])
            .args(state_arg(&state))
            .stdout(Expect::contains(&["Rolled back journal entry "]))
            .stderr(Expect::one_line(&["could not be marked rolled-back"]))
            .run();
        assert_eq!(sysctl("net.ipv4.tcp_fin_timeout"), "10");
    }
    run("umount", &[full.path().to_str().expect("utf-8")]);
}

#[test]
fn conntrack_timeouts_apply_per_namespace_and_the_global_limit_is_refused_here() {
    if !enter("apply::conntrack_timeouts_apply_per_namespace_and_the_global_limit_is_refused_here") {
        return;
    }
    let state = setup();
    let profile = profile_file(
        state.path(),
        "nat",
        "name: nat\ndescription: d\nsettings:\n  net.netfilter.nf_conntrack_tcp_timeout_time_wait: {max: 60, why: w, risk: r}\n",
    );
    Run::new(&["apply", "--yes", "--persist"])
        .arg(&profile)
        .args(state_arg(state.path()))
        .stdout(Expect::contains(&["net.netfilter.nf_conntrack_tcp_timeout_time_wait", "Applied 1 change"]))
        .run();
    assert_eq!(sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait"), "60");
    let persisted = std::fs::read_to_string(PERSISTED).expect("persisted");
    assert!(persisted.contains("net.netfilter.nf_conntrack_tcp_timeout_time_wait = 60"), "{persisted}");

    // nf_conntrack_max is global: a namespace other than the host's cannot write it, and nothing changes.
    let before = sysctl("net.netfilter.nf_conntrack_max");
    let raise = format!("{}", before.parse::<u64>().expect("max") + 1);
    let global = profile_file(
        state.path(),
        "global",
        &format!(
            "name: global\ndescription: d\nsettings:\n  net.netfilter.nf_conntrack_max: {{min: {raise}, why: w, risk: r}}\n"
        ),
    );
    let out = crate::util::twtune()
        .args(["apply", "--yes"])
        .arg(&global)
        .args(state_arg(state.path()))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("net.netfilter.nf_conntrack_max"), "{stderr}");
    assert_eq!(sysctl("net.netfilter.nf_conntrack_max"), before, "the host's limit is untouched");
}
