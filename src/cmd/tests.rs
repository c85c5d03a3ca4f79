//! The apply and rollback commands end to end on temporary trees standing for `/`, with scripted
//! answers instead of a terminal.

use std::path::Path;

use crate::apply::confirm::Scripted;
use crate::apply::journal::{StateDir, Status};
use crate::config::{ApplyConfig, RollbackConfig, Target};
use crate::error::Outcome;
use crate::sysctl::fold_whitespace;
use crate::testing::fixture_copy;

/// Scripted answers at the prompt: yes, or no, and no selection.
const ANSWER_YES: Scripted = Scripted { answer: true, selection: Vec::new() };
const ANSWER_NO: Scripted = Scripted { answer: false, selection: Vec::new() };

/// A copy of the idle fixture root in a temp dir.
fn root() -> tempfile::TempDir {
    fixture_copy("roots/idle")
}

fn value(root: &Path, key: &str) -> String {
    fold_whitespace(&std::fs::read_to_string(root.join("proc/sys").join(key.replace('.', "/"))).expect("read key"))
}

fn target(root: &Path, interactive: bool) -> Target {
    Target { interactive, root: root.to_path_buf(), state_dir: root.join("var/lib/twtune"), write_delay: None }
}

fn apply_config(root: &Path, profile: &str) -> ApplyConfig {
    ApplyConfig {
        dry_run: false,
        persist_file: Some("/etc/sysctl.d/90-twtune.conf".into()),
        persist_in_any_namespace: false,
        profile: Some(profile.into()),
        select: false,
        target: target(root, true),
        yes: false,
    }
}

#[test]
fn declining_changes_nothing_and_exits_1() {
    let dir = root();
    let mut out = Vec::new();
    let outcome = super::apply::run(&apply_config(dir.path(), "outbound-heavy"), &mut out, &ANSWER_NO)
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
    // outbound-heavy on a default host: ip_local_port_range, ip_local_reserved_ports, then tcp_tw_reuse.
    // Keep the last only.
    let outcome =
        super::apply::run(&config, &mut out, &Scripted { answer: true, selection: vec![2] }).expect("applies");
    assert_eq!(outcome, Outcome::Clean);
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "1");
    assert_eq!(value(dir.path(), "net.ipv4.ip_local_port_range"), "32768 60999", "not selected");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Applied 1 change (journal entry "), "{text}");
}

#[test]
fn a_root_tree_is_persisted_as_before_whatever_namespace_twtune_runs_in() {
    // A --root tree is not the live system: which namespace it stands for cannot be told, so the
    // file is written, with or without --persist, and nothing is said about namespaces.
    for forced in [false, true] {
        let dir = root();
        let mut config = apply_config(dir.path(), "outbound-heavy");
        (config.yes, config.persist_in_any_namespace) = (true, forced);
        let mut out = Vec::new();
        super::apply::run(&config, &mut out, &ANSWER_YES).expect("applies");
        let text = String::from_utf8_lossy(&out);
        assert!(text.ends_with("Persisted to /etc/sysctl.d/90-twtune.conf.\n"), "{text}");
        assert!(!text.contains("namespace"), "{text}");
        let persisted = std::fs::read_to_string(dir.path().join("etc/sysctl.d/90-twtune.conf")).expect("persisted");
        assert!(persisted.contains("net.ipv4.tcp_tw_reuse = 1"), "{persisted}");
    }
}

#[test]
fn without_a_terminal_and_without_yes_nothing_is_asked_or_changed() {
    let dir = root();
    let mut config = apply_config(dir.path(), "outbound-heavy");
    config.target.interactive = false;
    let err = super::apply::run(&config, &mut Vec::new(), &ANSWER_YES).expect_err("refused");
    assert!(err.to_string().contains("re-run with --yes"), "{err}");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
    config.yes = true;
    super::apply::run(&config, &mut Vec::new(), &ANSWER_NO).expect("--yes needs no prompt");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "1");
}

#[test]
fn dry_run_and_nothing_to_do_exit_0_without_changes() {
    let dir = root();
    let mut config = apply_config(dir.path(), "outbound-heavy");
    config.dry_run = true;
    let mut out = Vec::new();
    assert_eq!(super::apply::run(&config, &mut out, &ANSWER_YES).expect("dry run"), Outcome::Clean);
    assert!(String::from_utf8_lossy(&out).contains("Dry run: nothing was changed."));
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
    let mut out = Vec::new();
    let outcome = super::apply::run(&apply_config(dir.path(), "baseline"), &mut out, &ANSWER_YES);
    assert_eq!(outcome.expect("nothing to do"), Outcome::Clean);
    assert!(String::from_utf8_lossy(&out).starts_with("Nothing to apply"));
}

#[test]
fn rollback_list_and_missing_entries() {
    let dir = root();
    let config = |id: Option<&str>, list: bool| RollbackConfig {
        id: id.map(String::from),
        list,
        json: false,
        target: target(dir.path(), true),
        yes: true,
    };
    let err = super::rollback::run(&config(None, false), &mut Vec::new(), &ANSWER_YES).expect_err("empty");
    assert!(err.to_string().starts_with("nothing to roll back"), "{err}");
    let mut apply_cfg = apply_config(dir.path(), "outbound-heavy");
    apply_cfg.yes = true;
    super::apply::run(&apply_cfg, &mut Vec::new(), &ANSWER_YES).expect("apply");
    let mut out = Vec::new();
    super::rollback::run(&config(None, true), &mut out, &ANSWER_YES).expect("list");
    let listing = String::from_utf8_lossy(&out);
    assert!(
        listing.contains("applied")
            && listing.contains("profile outbound-heavy")
            && listing.contains("net.ipv4.tcp_tw_reuse"),
        "{listing}"
    );
    let mut out = Vec::new();
    super::rollback::run(&RollbackConfig { json: true, ..config(None, true) }, &mut out, &ANSWER_YES).expect("list");
    let listing: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
    assert_eq!(listing["schema_version"], 1);
    let entry = &listing["entries"][0];
    assert_eq!(
        (&entry["status"], &entry["source"], &entry["can_roll_back"]),
        (&"applied".into(), &"profile outbound-heavy".into(), &true.into())
    );
    assert!(
        entry["changes"].as_array().expect("changes").iter().any(|c| c["key"] == "net.ipv4.tcp_tw_reuse"),
        "{listing}"
    );
    let err = super::rollback::run(&config(Some("nope"), false), &mut Vec::new(), &ANSWER_YES).expect_err("unknown id");
    assert!(err.to_string().starts_with("no journal entry \"nope\""), "{err}");
    super::rollback::run(&config(None, false), &mut Vec::new(), &ANSWER_YES).expect("rollback");
    assert_eq!(value(dir.path(), "net.ipv4.tcp_tw_reuse"), "2");
}

#[test]
fn an_apply_killed_mid_way_is_rolled_back_from_its_pending_entry() {
    let dir = root();
    let mut config = apply_config(dir.path(), "outbound-heavy");
    config.yes = true;
    super::apply::run(&config, &mut Vec::new(), &ANSWER_YES).expect("apply");
    // As if the process died after the writes, before marking the entry applied.
    let state = StateDir::new(&dir.path().join("var/lib/twtune"));
    let mut entry = state.entries().expect("journal").pop().expect("entry");
    entry.status = Status::Pending;
    state.save(&entry).expect("save");
    let rollback = RollbackConfig { id: None, list: false, json: false, target: target(dir.path(), true), yes: true };
    let mut out = Vec::new();
    super::rollback::run(&rollback, &mut out, &ANSWER_YES).expect("rollback a pending entry");
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
    super::apply::run(&yes("outbound-heavy"), &mut Vec::new(), &ANSWER_YES).expect("first");
    std::fs::write(dir.path().join("proc/sys/net/core/somaxconn"), "128\n").expect("seed");
    super::apply::run(&yes("inbound-heavy"), &mut Vec::new(), &ANSWER_YES).expect("second");
    let state = StateDir::new(&dir.path().join("var/lib/twtune"));
    let ids: Vec<String> = state.entries().expect("journal").into_iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2);
    let rollback = |id: Option<&str>| RollbackConfig {
        id: id.map(String::from),
        list: false,
        json: false,
        target: target(dir.path(), true),
        yes: true,
    };
    let err = super::rollback::run(&rollback(Some(&ids[0])), &mut Vec::new(), &ANSWER_YES)
        .expect_err("an older entry first is refused");
    assert!(err.to_string().contains(&format!("came after {}: roll it back first", ids[0])), "{err}");
    super::rollback::run(&rollback(None), &mut Vec::new(), &ANSWER_YES).expect("newest");
    assert_eq!(value(dir.path(), "net.core.somaxconn"), "128");
    let file =
        std::fs::read_to_string(dir.path().join("etc/sysctl.d/90-twtune.conf")).expect("first apply's file is back");
    assert!(file.contains("net.ipv4.tcp_tw_reuse = 1") && !file.contains("somaxconn"), "{file}");
    super::rollback::run(&rollback(None), &mut Vec::new(), &ANSWER_YES).expect("then the older");
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
        super::apply::run(&config, &mut Vec::new(), &ANSWER_YES)
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
