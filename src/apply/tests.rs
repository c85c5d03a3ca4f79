//! The transaction engine and the apply/rollback commands on temporary trees standing for `/`:
//! `proc/sys` files written through the same openat2 path as on a live host. A directory where a
//! key's file should be makes a write fail, as a kernel refusal would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::confirm::Scripted;
use super::journal::{StateDir, Status};
use super::*;
use crate::commands;
use crate::config::{ApplyConfig, RollbackConfig, Target};
use crate::error::Outcome;

/// A copy of the idle fixture root in a temp dir.
fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roots/idle"), dir.path());
    dir
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

fn value(root: &Path, key: &str) -> String {
    fold_whitespace(&std::fs::read_to_string(root.join("proc/sys").join(key.replace('.', "/"))).expect("read key"))
}

fn change(key: &str, current: &str, new: &str) -> Change {
    Change {
        key: SysctlKey::parse(key).expect("key"),
        current: current.into(),
        new: new.into(),
        why: "w".into(),
        risk: "r".into(),
    }
}

fn controls() -> Controls {
    Controls { interrupted: Arc::new(AtomicBool::new(false)), write_delay: None }
}

fn target(root: &Path, interactive: bool) -> Target {
    Target { interactive, root: root.to_path_buf(), state_dir: root.join("var/lib/twtune"), write_delay: None }
}

fn apply_config(root: &Path, profile: &str) -> ApplyConfig {
    ApplyConfig {
        dry_run: false,
        persist_file: Some("/etc/sysctl.d/90-twtune.conf".into()),
        profile: Some(profile.into()),
        select: false,
        target: target(root, true),
        yes: false,
    }
}

#[test]
fn apply_writes_persists_and_journals_then_rollback_restores_all() {
    let dir = root();
    let procsys = ProcSys::open(dir.path()).expect("proc/sys");
    let state = StateDir::new(&dir.path().join("state"));
    let plan = Plan {
        source: "profile t".into(),
        changes: vec![change("net.ipv4.tcp_tw_reuse", "2", "1"), change("net.core.somaxconn", "4096", "8192")],
    };
    let persist = PersistTarget {
        path: dir.path().join("etc/sysctl.d/90-twtune.conf"),
        shown: "/etc/sysctl.d/90-twtune.conf".into(),
    };
    let applied = apply(&plan, &procsys, &state, Some(&persist), &controls()).expect("apply");
    assert_eq!(
        (value(dir.path(), "net.ipv4.tcp_tw_reuse"), value(dir.path(), "net.core.somaxconn")),
        ("1".into(), "8192".into())
    );
    let file = std::fs::read_to_string(&persist.path).expect("persisted");
    assert!(file.contains("net.ipv4.tcp_tw_reuse = 1\n") && file.contains("net.core.somaxconn = 8192\n"), "{file}");
    assert!(file.starts_with("# Written by twtune") && file.contains("profile t"), "{file}");
    let mut entry = state.entries().expect("journal").pop().expect("entry");
    assert_eq!(entry, applied.entry);
    assert_eq!(entry.status, Status::Applied);
    assert_eq!(entry.persist.as_ref().map(|p| p.previous.clone()), Some(None), "the file did not exist before");

    rollback(&mut entry, &procsys, &state, &controls()).expect("rollback");
    assert_eq!(
        (value(dir.path(), "net.ipv4.tcp_tw_reuse"), value(dir.path(), "net.core.somaxconn")),
        ("2".into(), "4096".into())
    );
    assert!(!persist.path.exists(), "a file that did not exist is removed");
    assert_eq!(state.entries().expect("journal")[0].status, Status::RolledBack);
}

#[test]
fn rollback_restores_the_previous_file_content() {
    let dir = root();
    let procsys = ProcSys::open(dir.path()).expect("proc/sys");
    let state = StateDir::new(&dir.path().join("state"));
    let persist = PersistTarget {
        path: dir.path().join("etc/sysctl.d/90-twtune.conf"),
        shown: "/etc/sysctl.d/90-twtune.conf".into(),
    };
    let old = "# mine\nnet.ipv4.tcp_fin_timeout = 30\n";
    write_atomically(&persist.path, old).expect("seed");
    let plan = Plan { source: "recommended".into(), changes: vec![change("net.ipv4.tcp_tw_reuse", "2", "1")] };
    let mut entry = apply(&plan, &procsys, &state, Some(&persist), &controls()).expect("apply").entry;
    let file = std::fs::read_to_string(&persist.path).expect("read");
    assert!(file.contains("net.ipv4.tcp_fin_timeout = 30\n"), "earlier keys are kept: {file}");
    rollback(&mut entry, &procsys, &state, &controls()).expect("rollback");
    assert_eq!(std::fs::read_to_string(&persist.path).expect("read"), old, "byte for byte");
}

#[test]
fn a_failing_second_write_restores_the_first_and_leaves_the_file() {
    let dir = root();
    // A directory where the key's file should be: opening it for writing fails.
    std::fs::create_dir(dir.path().join("proc/sys/net/ipv4/tcp_bogus")).expect("mkdir");
    let procsys = ProcSys::open(dir.path()).expect("proc/sys");
    let file = dir.path().join("etc/sysctl.d/90-twtune.conf");
    let key = |k: &str| SysctlKey::parse(k).expect("key");
    let writes = vec![
        (key("net.core.somaxconn"), "4096".to_string(), "8192".to_string()),
        (key("net.ipv4.tcp_bogus"), "0".to_string(), "1".to_string()),
    ];
    let err =
        transaction(&procsys, &writes, Some(&(file.clone(), Some("x = 1\n".into()))), &controls()).expect_err("fails");
    let text = err.to_string();
    assert!(text.starts_with("writing net.ipv4.tcp_bogus = \"1\" failed: "), "{text}");
    assert!(text.contains("restored net.core.somaxconn=\"4096\""), "{text}");
    assert!(text.ends_with("the persisted file is unchanged"), "{text}");
    assert_eq!(value(dir.path(), "net.core.somaxconn"), "4096");
    assert!(!file.exists());
}

#[test]
fn a_journal_entry_is_written_before_the_first_change_and_marked_failed() {
    let dir = root();
    let procsys = ProcSys::open(dir.path()).expect("proc/sys");
    let state = StateDir::new(&dir.path().join("state"));
    let plan = Plan { source: "t".into(), changes: vec![change("net.core.somaxconn", "4096", "8192")] };
    let interrupted = Controls { interrupted: Arc::new(AtomicBool::new(true)), write_delay: None };
    apply(&plan, &procsys, &state, None, &interrupted).expect_err("interrupted");
    let entries = state.entries().expect("journal");
    assert_eq!(entries.len(), 1, "the entry existed before anything was written");
    assert_eq!(entries[0].status, Status::Failed);
    assert_eq!(entries[0].changes[0].before, "4096");
}

#[test]
fn an_interrupt_before_the_first_write_changes_nothing() {
    let dir = root();
    let procsys = ProcSys::open(dir.path()).expect("proc/sys");
    let state = StateDir::new(&dir.path().join("state"));
    let plan = Plan { source: "t".into(), changes: vec![change("net.core.somaxconn", "4096", "8192")] };
    let interrupted = Controls { interrupted: Arc::new(AtomicBool::new(true)), write_delay: None };
    let err = apply(&plan, &procsys, &state, None, &interrupted).expect_err("interrupted");
    assert!(err.to_string().starts_with("interrupted; nothing had been changed"), "{err}");
    assert_eq!(value(dir.path(), "net.core.somaxconn"), "4096");
}

#[test]
fn the_plan_refuses_what_the_kernel_would_refuse() {
    let plan =
        Plan { source: "t".into(), changes: vec![change("net.ipv4.ip_local_port_range", "32768 60999", "500 60999")] };
    let err =
        plan.check(|k| (k == "net.ipv4.ip_unprivileged_port_start").then(|| "1024".to_string())).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "refusing net.ipv4.ip_local_port_range: 500 60999 would start below ip_unprivileged_port_start 1024, which the \
         kernel refuses; nothing was changed"
    );
    // Lowering the start in the same plan makes it valid, and the start is written first.
    let mut both = plan.clone();
    both.changes.push(change("net.ipv4.ip_unprivileged_port_start", "1024", "500"));
    both.check(|_| None).expect("valid together");
    assert_eq!(both.write_order()[0].key.as_str(), "net.ipv4.ip_unprivileged_port_start");
    let out_of_range = Plan { source: "t".into(), changes: vec![change("net.ipv4.tcp_tw_reuse", "2", "3")] };
    assert!(out_of_range.check(|_| None).is_err());
}

#[test]
fn findings_become_one_change_per_key() {
    let finding = |id: &str, key: &str, current: &str, recommended: &str| crate::rules::Finding {
        id: id.into(),
        severity: crate::rules::Severity::Warn,
        key: Some(key.into()),
        current: Some(current.into()),
        recommended: Some(recommended.into()),
        message: format!("{id} message"),
        risk: "r".into(),
        evidence: Default::default(),
        advice: Vec::new(),
    };
    let findings = vec![
        finding("a", "net.ipv4.tcp_tw_reuse", "0", "1"),
        finding("b", "net.ipv4.tcp_tw_reuse", "0", "2"),
        finding("c", "net.core.somaxconn", "4096", "4096"),
    ];
    let plan = Plan::from_findings("recommended", &findings, |f| f.message.clone()).expect("plan");
    assert_eq!(plan.changes.len(), 1, "one per key, and none for a key already at its value");
    assert_eq!((plan.changes[0].new.as_str(), plan.changes[0].why.as_str()), ("1", "a message"));
}

#[test]
fn declining_changes_nothing_and_exits_1() {
    let dir = root();
    let mut out = Vec::new();
    let outcome = commands::apply(
        &apply_config(dir.path(), "outbound-heavy"),
        &mut out,
        &Scripted { answer: false, selection: vec![] },
    )
    .expect("declined is not an error");
    assert_eq!(outcome, Outcome::Declined);
    assert_eq!(outcome.code(), 1);
    assert!(String::from_utf8_lossy(&out).ends_with("Nothing was changed.\n"));
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
    assert!(!dir.path().join("var/lib/twtune/journal").exists(), "no journal entry either");
}

#[test]
fn accepting_applies_and_select_keeps_a_subset() {
    let dir = root();
    let mut config = apply_config(dir.path(), "outbound-heavy");
    config.select = true;
    let mut out = Vec::new();
    // outbound-heavy on a default host: ip_local_port_range, then tcp_tw_reuse. Keep the second only.
    let outcome = commands::apply(&config, &mut out, &Scripted { answer: true, selection: vec![1] }).expect("applies");
    assert_eq!(outcome, Outcome::Clean);
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "1");
    assert_eq!(value(dir.path(), "net.ipv4.ip_local_port_range"), "32768 60999", "not selected");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Applied 1 change (journal entry "), "{text}");
}

#[test]
fn without_a_terminal_and_without_yes_nothing_is_asked_or_changed() {
    let dir = root();
    let mut config = apply_config(dir.path(), "outbound-heavy");
    config.target.interactive = false;
    let err =
        commands::apply(&config, &mut Vec::new(), &Scripted { answer: true, selection: vec![] }).expect_err("refused");
    assert!(err.to_string().contains("re-run with --yes"), "{err}");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
    config.yes = true;
    commands::apply(&config, &mut Vec::new(), &Scripted { answer: false, selection: vec![] })
        .expect("--yes needs no prompt");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "1");
}

#[test]
fn dry_run_and_nothing_to_do_exit_0_without_changes() {
    let dir = root();
    let mut config = apply_config(dir.path(), "outbound-heavy");
    config.dry_run = true;
    let mut out = Vec::new();
    assert_eq!(
        commands::apply(&config, &mut out, &Scripted { answer: true, selection: vec![] }).expect("dry run"),
        Outcome::Clean
    );
    assert!(String::from_utf8_lossy(&out).contains("Dry run: nothing was changed."));
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
    let mut out = Vec::new();
    let outcome =
        commands::apply(&apply_config(dir.path(), "baseline"), &mut out, &Scripted { answer: true, selection: vec![] });
    assert_eq!(outcome.expect("nothing to do"), Outcome::Clean);
    assert!(String::from_utf8_lossy(&out).starts_with("Nothing to apply"));
}

#[test]
fn rollback_list_and_missing_entries() {
    let dir = root();
    let config = |id: Option<&str>, list: bool| RollbackConfig {
        id: id.map(String::from),
        list,
        target: target(dir.path(), true),
        yes: true,
    };
    let err = commands::rollback(&config(None, false), &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
        .expect_err("empty");
    assert!(err.to_string().starts_with("nothing to roll back"), "{err}");
    let mut apply_cfg = apply_config(dir.path(), "outbound-heavy");
    apply_cfg.yes = true;
    commands::apply(&apply_cfg, &mut Vec::new(), &Scripted { answer: true, selection: vec![] }).expect("apply");
    let mut out = Vec::new();
    commands::rollback(&config(None, true), &mut out, &Scripted { answer: true, selection: vec![] }).expect("list");
    let listing = String::from_utf8_lossy(&out);
    assert!(
        listing.contains("applied")
            && listing.contains("profile outbound-heavy")
            && listing.contains("net.ipv4.tcp_tw_reuse"),
        "{listing}"
    );
    let err = commands::rollback(
        &config(Some("nope"), false),
        &mut Vec::new(),
        &Scripted { answer: true, selection: vec![] },
    )
    .expect_err("unknown id");
    assert!(err.to_string().starts_with("no journal entry \"nope\""), "{err}");
    commands::rollback(&config(None, false), &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
        .expect("rollback");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
}

#[test]
fn an_apply_killed_mid_way_is_rolled_back_from_its_pending_entry() {
    let dir = root();
    let mut config = apply_config(dir.path(), "outbound-heavy");
    config.yes = true;
    commands::apply(&config, &mut Vec::new(), &Scripted { answer: true, selection: vec![] }).expect("apply");
    // As if the process died after the writes, before marking the entry applied.
    let state = StateDir::new(&dir.path().join("var/lib/twtune"));
    let mut entry = state.entries().expect("journal").pop().expect("entry");
    entry.status = Status::Pending;
    state.save(&entry).expect("save");
    let rollback = RollbackConfig { id: None, list: false, target: target(dir.path(), true), yes: true };
    let mut out = Vec::new();
    commands::rollback(&rollback, &mut out, &Scripted { answer: true, selection: vec![] })
        .expect("rollback a pending entry");
    assert!(String::from_utf8_lossy(&out).contains("never completed"), "{}", String::from_utf8_lossy(&out));
    assert_eq!(
        (value(dir.path(), "net.ipv4.tcp_tw_reuse"), value(dir.path(), "net.ipv4.ip_local_port_range")),
        ("2".into(), "32768 60999".into())
    );
}

#[test]
fn rollbacks_go_newest_first() {
    let dir = root();
    let yes = |profile: &str| {
        let mut c = apply_config(dir.path(), profile);
        c.yes = true;
        c
    };
    commands::apply(&yes("outbound-heavy"), &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
        .expect("first");
    std::fs::write(dir.path().join("proc/sys/net/core/somaxconn"), "128\n").expect("seed");
    commands::apply(&yes("inbound-heavy"), &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
        .expect("second");
    let state = StateDir::new(&dir.path().join("var/lib/twtune"));
    let ids: Vec<String> = state.entries().expect("journal").into_iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2);
    let rollback = |id: Option<&str>| RollbackConfig {
        id: id.map(String::from),
        list: false,
        target: target(dir.path(), true),
        yes: true,
    };
    let err =
        commands::rollback(&rollback(Some(&ids[0])), &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
            .expect_err("an older entry first is refused");
    assert!(err.to_string().contains(&format!("came after {}: roll it back first", ids[0])), "{err}");
    commands::rollback(&rollback(None), &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
        .expect("newest");
    assert_eq!(value(dir.path(), "net.core.somaxconn"), "128");
    let file =
        std::fs::read_to_string(dir.path().join("etc/sysctl.d/90-twtune.conf")).expect("first apply's file is back");
    assert!(file.contains("net.ipv4.tcp_tw_reuse = 1") && !file.contains("somaxconn"), "{file}");
    commands::rollback(&rollback(None), &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
        .expect("then the older");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
    assert!(!dir.path().join("etc/sysctl.d/90-twtune.conf").exists());
}

#[test]
fn the_persist_file_must_be_twtunes_own_conf_file() {
    let dir = root();
    let attempt = |persist: &str| {
        let mut config = apply_config(dir.path(), "outbound-heavy");
        config.yes = true;
        config.persist_file = Some(persist.into());
        commands::apply(&config, &mut Vec::new(), &Scripted { answer: true, selection: vec![] })
    };
    for (path, why) in [
        ("relative.conf", "give an absolute path to a .conf file"),
        ("/etc/passwd", "give an absolute path to a .conf file"),
    ] {
        let err = attempt(path).expect_err(path);
        assert!(err.to_string().contains(why), "{path}: {err}");
    }
    std::fs::create_dir_all(dir.path().join("etc/sysctl.d")).expect("mkdir");
    std::fs::write(dir.path().join("etc/sysctl.conf"), "# the admin's own\nkernel.panic = 10\n").expect("write");
    let err = attempt("/etc/sysctl.conf").expect_err("foreign file");
    assert!(err.to_string().contains("twtune did not write it"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etc/sysctl.conf")).expect("kept"),
        "# the admin's own\nkernel.panic = 10\n"
    );
    std::os::unix::fs::symlink("../sysctl.conf", dir.path().join("etc/sysctl.d/99-sysctl.conf")).expect("link");
    let err = attempt("/etc/sysctl.d/99-sysctl.conf").expect_err("a link");
    assert!(err.to_string().contains("it is a link"), "{err}");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2", "nothing was changed");
    // twtune's own file, written by an earlier apply, is fine.
    attempt("/etc/sysctl.d/90-twtune.conf").expect("new file");
    std::fs::write(dir.path().join("proc/sys/net/ipv4/tcp_tw_reuse"), "0\n").expect("drift");
    attempt("/etc/sysctl.d/90-twtune.conf").expect("twtune's own file again");
}
