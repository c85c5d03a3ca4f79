//! Precedence on the committed fixture tree `tests/fixtures/sysctl-trees/precedence`, whose files
//! each exercise one rule (see the comments in them).

use std::path::PathBuf;

use super::*;

fn tree() -> Tree {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysctl-trees/precedence");
    Tree::read(&root).expect("fixture tree")
}

fn values(r: &Resolution) -> (Option<String>, Option<String>) {
    (r.systemd.as_ref().map(Assignment::comparable), r.procps.as_ref().map(Assignment::comparable))
}

fn both(v: &str) -> (Option<String>, Option<String>) {
    (Some(v.to_string()), Some(v.to_string()))
}

#[test]
fn file_order_of_each_tool() {
    let (systemd, procps) = tree().file_lists();
    assert_eq!(
        systemd,
        vec![
            "/etc/sysctl.d/05-explicit.conf",
            "/etc/sysctl.d/10-common.conf",
            "/run/sysctl.d/20-runtime.conf",
            "/usr/local/lib/sysctl.d/30-local.conf",
            "/usr/lib/sysctl.d/60-globs.conf",
            "/etc/sysctl.d/70-broken.conf",
            "/etc/sysctl.d/80-old.conf",
            "/etc/sysctl.d/99-sysctl.conf",
            "/etc/sysctl.d/zz-late.conf",
        ]
    );
    assert_eq!(procps.len(), systemd.len() + 2, "plus /lib/sysctl.d and /etc/sysctl.conf: {procps:?}");
    assert_eq!(procps[4], "/lib/sysctl.d/40-lib.conf");
    assert_eq!(procps.last().map(String::as_str), Some("/etc/sysctl.conf"));
}

#[test]
fn sysctl_conf_wins_for_procps_but_not_after_99_for_systemd() {
    let r = tree().resolve("net.ipv4.tcp_fin_timeout");
    assert_eq!(values(&r), (Some("42".into()), Some("41".into())));
    assert_eq!(r.systemd.as_ref().map(Assignment::place).as_deref(), Some("/etc/sysctl.d/zz-late.conf:2"));
    assert_eq!(r.procps.as_ref().map(Assignment::place).as_deref(), Some("/etc/sysctl.conf:2"));
    assert!(r.orders_differ());
    let shadowed: Vec<String> = r.shadowed().iter().map(|a| a.place()).collect();
    assert_eq!(shadowed, vec!["/etc/sysctl.d/99-sysctl.conf:2"]);
}

#[test]
fn same_name_in_an_earlier_directory_masks_the_later_one() {
    let t = tree();
    assert_eq!(values(&t.resolve("net.ipv4.tcp_keepalive_time")), both("600"));
    assert_eq!(values(&t.resolve("net.ipv4.tcp_keepalive_probes")), (None, None), "the whole /usr/lib file is masked");
    assert_eq!(values(&t.resolve("net.ipv4.tcp_max_tw_buckets")), both("5000"), "/run masks /usr/local/lib");
    assert_eq!(values(&t.resolve("net.ipv4.tcp_max_syn_backlog")), both("3000"));
}

#[test]
fn a_link_to_dev_null_masks_a_file() {
    assert_eq!(values(&tree().resolve("net.ipv4.tcp_syncookies")), (None, None));
}

#[test]
fn explicit_keys_beat_globs_and_exclusions_keep_keys_out() {
    let t = tree();
    assert_eq!(values(&t.resolve("net.ipv4.conf.all.rp_filter")), both("2"));
    assert!(t.resolve("net.ipv4.conf.all.rp_filter").procps.is_some_and(|a| a.glob));
    assert_eq!(values(&t.resolve("net.ipv4.conf.default.rp_filter")), both("1"), "explicit, though in an earlier file");
    assert_eq!(values(&t.resolve("net.ipv4.conf.lo.rp_filter")), (None, None), "excluded with -key");
}

#[test]
fn slash_separated_keys_and_lib_directory() {
    let t = tree();
    assert_eq!(values(&t.resolve("net.ipv4.tcp_keepalive_intvl")), both("31"));
    assert_eq!(values(&t.resolve("net.ipv4.tcp_orphan_retries")), (None, Some("3".into())), "only procps reads /lib");
}

#[test]
fn malformed_lines_are_reported_once_as_file_and_line() {
    let t = tree();
    assert_eq!(t.problems, vec!["/etc/sysctl.d/70-broken.conf:1: expected \"key = value\" (no '=' in the line)"]);
    assert_eq!(values(&t.resolve("net.ipv4.tcp_tw_reuse")), both("1"), "the next line still counts");
}

#[test]
fn ignore_failure_prefix_is_kept() {
    let r = tree().resolve("net.ipv4.tcp_tw_recycle");
    assert!(r.procps.is_some_and(|a| a.ignore_failure && a.value == "1"));
}

#[test]
fn explicit_keys_are_listed_once() {
    let keys = tree().explicit_keys();
    assert!(keys.contains(&"net.ipv4.tcp_fin_timeout".to_string()));
    assert!(!keys.iter().any(|k| k.contains('*')));
    assert_eq!(keys.iter().filter(|k| *k == "net.core.somaxconn").count(), 1);
}

#[test]
fn an_empty_root_has_no_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Tree::read(dir.path()).expect("empty");
    assert!(t.procps.is_empty() && t.systemd.is_empty() && t.problems.is_empty());
    assert_eq!(t.resolve("net.ipv4.tcp_tw_reuse"), Resolution::default());
}

#[test]
fn a_dangling_link_is_a_problem_not_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("etc/sysctl.d")).expect("mkdir");
    std::os::unix::fs::symlink("../nowhere.conf", dir.path().join("etc/sysctl.d/10-x.conf")).expect("link");
    let t = Tree::read(dir.path()).expect("reads");
    assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
    assert!(t.problems[0].starts_with("/etc/sysctl.d/10-x.conf: cannot read"), "{:?}", t.problems);
}

#[test]
fn many_keys_resolve_through_the_index_in_file_order() {
    // 20 000 keys, each set twice, and one glob over all: the later explicit value wins everywhere.
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("etc/sysctl.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let lines =
        |value: u32| -> String { (0..20_000).map(|i| format!("net.ipv4.conf.if{i}.rp_filter = {value}\n")).collect() };
    std::fs::write(dir.join("10-first.conf"), lines(1)).expect("write");
    std::fs::write(dir.join("20-glob.conf"), "net.ipv4.conf.*.rp_filter = 7\n").expect("write");
    std::fs::write(dir.join("30-second.conf"), lines(2)).expect("write");
    let tree = Tree::read(root.path()).expect("tree");
    assert_eq!(tree.explicit_keys().len(), 20_000);
    for i in [0, 12_345, 19_999] {
        let r = tree.resolve(&format!("net.ipv4.conf.if{i}.rp_filter"));
        let order: Vec<(&str, bool)> = r.all.iter().map(|a| (a.value.as_str(), a.glob)).collect();
        assert_eq!(order, vec![("1", false), ("7", true), ("2", false)]);
        assert_eq!(r.procps.map(|a| a.value), Some("2".into()));
    }
    let only_glob = tree.resolve("net.ipv4.conf.eth0.rp_filter");
    assert_eq!(only_glob.procps.map(|a| (a.value, a.glob)), Some(("7".into(), true)));
}

#[test]
fn glob_lines_and_key_lengths_are_bounded() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("etc/sysctl.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut text: String = (0..300).map(|i| format!("net.ipv4.conf.g{i}x*.rp_filter = 1\n")).collect();
    text.push_str(&format!("net.ipv4.{} = 1\n", "a".repeat(300)));
    std::fs::write(dir.join("10-globs.conf"), text).expect("write");
    let tree = Tree::read(root.path()).expect("tree");
    assert!(
        tree.problems.iter().any(|p| p.contains("300 glob lines") && p.contains("first 256")),
        "{:?}",
        tree.problems
    );
    assert!(tree.problems.iter().any(|p| p.contains("longer than 256 characters")), "{:?}", tree.problems);
    // The first 256 globs still apply, the rest do not.
    assert!(tree.resolve("net.ipv4.conf.g10xy.rp_filter").procps.is_some());
    assert!(tree.resolve("net.ipv4.conf.g299xy.rp_filter").procps.is_none());
}
