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

/// A state directory in a fresh temporary directory, and the temporary directory.
fn state_in_temp() -> (tempfile::TempDir, StateDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = StateDir::new(&dir.path().join("state"));
    state.lock().expect("a new state directory is fine");
    (dir, state)
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, state) = state_in_temp();
    std::fs::set_permissions(dir.path().join("state"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = state.lock().err().expect("refused");
    assert!(err.to_string().contains("writable by group or others (mode 777)"), "{err}");
    assert!(state.entries().is_err(), "nor are its entries read");
    std::fs::set_permissions(dir.path().join("state"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(dir.path().join("state"), Some(65534), None).expect("chown");
        let err = state.lock().err().expect("refused");
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }
}

#[test]
fn a_lock_linked_to_another_file_leaves_that_file_alone() {
    let (dir, state) = state_in_temp();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    std::fs::remove_file(dir.path().join("state/lock")).expect("remove lock");
    std::os::unix::fs::symlink(&victim, dir.path().join("state/lock")).expect("symlink");
    assert!(state.lock().is_err(), "a linked lock is refused");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious\n");
}

#[test]
fn planted_journal_entries_are_refused_before_they_steer_a_write() {
    let (dir, state) = state_in_temp();
    let journal = dir.path().join("state/journal");
    let entry = |id: &str, persist: &str| {
        format!(
            "{{\"id\":\"{id}\",\"created\":\"c\",\"twtune_version\":\"0\",\"source\":\"s\",\"status\":\"applied\",\
             \"changes\":[],\"persist\":{{\"path\":\"{persist}\",\"previous\":null}}}}"
        )
    };
    // An id that is a path: it would make twtune write its JSON elsewhere.
    std::fs::write(journal.join("20260101T000000Z.json"), entry("../../victim", "/etc/sysctl.d/x.conf")).expect("w");
    let err = state.entries().expect_err("refused");
    assert!(err.to_string().contains("is not its file name"), "{err}");
    // A persisted file that is not a .conf path: a rollback would remove /etc/passwd.
    std::fs::write(journal.join("20260101T000000Z.json"), entry("20260101T000000Z", "/etc/passwd")).expect("w");
    let err = state.entries().expect_err("refused");
    assert!(err.to_string().contains("not an absolute .conf path"), "{err}");
    // Ten megabytes of JSON: refused, and the error stays one short line.
    std::fs::write(journal.join("20260101T000000Z.json"), "x".repeat(10 << 20)).expect("w");
    let err = state.entries().expect_err("refused").to_string();
    assert!(err.contains("larger than") && err.len() < 300 && !err.contains('\n'), "{}", &err[..err.len().min(300)]);
    // A link in place of an entry.
    std::fs::remove_file(journal.join("20260101T000000Z.json")).expect("rm");
    std::os::unix::fs::symlink("/etc/hostname", journal.join("20260101T000000Z.json")).expect("symlink");
    assert!(state.entries().is_err(), "an entry that is a link is not read");
}

#[test]
fn the_persisted_file_and_journal_are_never_written_through_a_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    let link = dir.path().join("90-twtune.conf");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let err = crate::files::write_atomically(&link, "x = 1\n").expect_err("a link is refused");
    assert!(err.to_string().contains("it is a link"), "{err}");
    // A link among the parents.
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, dir.path().join("linked")).expect("symlink");
    assert!(crate::files::write_atomically(&dir.path().join("linked/90-twtune.conf"), "x = 1\n").is_err());
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious\n");
    assert!(std::fs::read_dir(&real).expect("list").next().is_none(), "nothing written through the link");
}

#[test]
fn a_rollback_never_overwrites_a_file_twtune_did_not_write() {
    let dir = root();
    let procsys = ProcSys::open(dir.path()).expect("proc/sys");
    let state = StateDir::new(&dir.path().join("state"));
    let persist = PersistTarget {
        path: dir.path().join("etc/sysctl.d/90-twtune.conf"),
        shown: "/etc/sysctl.d/90-twtune.conf".into(),
    };
    let plan = Plan { source: "t".into(), changes: vec![change("net.ipv4.tcp_tw_reuse", "2", "1")] };
    let mut entry = apply(&plan, &procsys, &state, Some(&persist), &controls()).expect("apply").entry;
    // Someone replaced the file with their own since.
    std::fs::write(&persist.path, "# mine\nnet.ipv4.tcp_tw_reuse = 1\n").expect("write");
    let err = rollback(&mut entry, &procsys, &state, &controls()).expect_err("refused");
    assert!(err.to_string().contains("which twtune did not write"), "{err}");
    assert_eq!(std::fs::read_to_string(&persist.path).expect("kept"), "# mine\nnet.ipv4.tcp_tw_reuse = 1\n");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "1", "nothing was changed");
}

#[test]
fn outside_the_initial_namespace_nothing_is_persisted_unless_forced() {
    use super::persist_file::{Persisting, persisting};
    let dir = root();
    let file = Some("/etc/sysctl.d/90-twtune.conf");
    let written = |p: &Persisting| p.target().map(|t| t.path.clone());
    let expected = Some(dir.path().join("etc/sysctl.d/90-twtune.conf"));
    // The initial namespace, and one that cannot be told (a --root tree): persisted as ever.
    for initial in [Some(true), None] {
        let p = persisting(dir.path(), file, initial, false).expect("persist");
        assert_eq!(written(&p), expected, "{initial:?}");
    }
    assert_eq!(
        persisting(dir.path(), file, Some(false), false).expect("decided"),
        Persisting::OtherNamespace { shown: "/etc/sysctl.d/90-twtune.conf".into() }
    );
    assert_eq!(written(&persisting(dir.path(), file, Some(false), true).expect("forced")), expected);
    for initial in [Some(true), Some(false), None] {
        assert_eq!(persisting(dir.path(), None, initial, true).expect("--no-persist"), Persisting::NotAsked);
    }
    // A file that would be refused is not looked at when it is not written.
    assert!(persisting(dir.path(), Some("relative.conf"), Some(false), false).is_ok());
    assert!(persisting(dir.path(), Some("relative.conf"), Some(false), true).is_err());
}

#[test]
fn a_persist_file_name_that_is_not_utf8_is_refused() {
    let err = super::persist_file::persist_target(Path::new("/r"), "/etc/sysctl.d/\u{fffd}.conf").expect_err("refused");
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}

#[test]
fn a_persisted_file_too_large_to_journal_is_refused_before_anything_changes() {
    let dir = root();
    let procsys = ProcSys::open(dir.path()).expect("proc/sys");
    let state = StateDir::new(&dir.path().join("state"));
    let persist = PersistTarget {
        path: dir.path().join("etc/sysctl.d/90-twtune.conf"),
        shown: "/etc/sysctl.d/90-twtune.conf".into(),
    };
    let huge = format!("{}\n{}", super::persist_file::PERSIST_HEADER, "# x\n".repeat(200_000));
    write_atomically(&persist.path, &huge).expect("seed");
    let plan = Plan { source: "t".into(), changes: vec![change("net.ipv4.tcp_tw_reuse", "2", "1")] };
    let err = apply(&plan, &procsys, &state, Some(&persist), &controls()).expect_err("refused");
    assert!(err.to_string().contains("larger than"), "{err}");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2", "nothing changed");
    assert!(state.entries().expect("journal").is_empty(), "no entry a rollback could not read");
}
