//! The plan and the transaction engine on temporary trees standing for `/`: `proc/sys` files
//! written through the same openat2 path as on a live host. A directory where a key's file should
//! be makes a write fail, as a kernel refusal would.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::journal::{StateDir, Status};
use super::persist_file::PersistTarget;
use super::transaction::{Controls, apply, commit, rollback};
use super::*;
use crate::files::write_atomically;
use crate::sysctl::procsys::ProcSys;
use crate::testing::fixture_copy;

/// A copy of the idle fixture root in a temp dir.
fn root() -> tempfile::TempDir {
    fixture_copy("roots/idle")
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
    let err = commit(&procsys, &writes, Some(&(file.clone(), Some("x = 1\n".into()))), &controls()).expect_err("fails");
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
fn the_journal_keeps_the_persisted_file_as_an_absolute_path() {
    let target = super::persist_file::persist_target(Path::new("relative/root"), "/etc/sysctl.d/90-twtune.conf")
        .expect("a new file is fine");
    assert!(target.path.is_absolute(), "{}", target.path.display());
    assert!(target.path.ends_with("relative/root/etc/sysctl.d/90-twtune.conf"), "{}", target.path.display());
    assert_eq!(target.shown, "/etc/sysctl.d/90-twtune.conf");
}
