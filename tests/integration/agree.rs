//! An export means what `twtune apply` means, shown on the real kernel: for every shipped profile
//! and each host state below, `twtune apply PROFILE --yes` and the exported playbook (run with
//! `ansible-playbook -c local`), and the `--from-host` drop-in loaded by `sysctl --system`, each in
//! fresh network and mount namespaces of their own, leave the same values at runtime and the same
//! values after a simulated boot (every key back to the namespace's default, then `sysctl --system`).
//! A host that meets the profile is changed by none, and a second run changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::export::{ansible_playbook, playbook_output};
use crate::netns::{enter, run, run_inside, set_sysctl};
use crate::util::twtune;

const PROFILES: &[&str] = &["baseline", "inbound-heavy", "outbound-heavy", "kubernetes-node"];

/// Host states: each one's runtime values, and the sysctl.d file (name, content) that sets some.
const STATES: &[&str] = &["better", "worse", "list-elsewhere", "key-absent"];

/// Every key the profiles name (and those their choices read); absent ones are left out.
const KEYS: &[&str] = &[
    "net.core.somaxconn",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_tw_reuse",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
];

/// The host's own sysctl.d file, which sets a state's values at boot too.
const SITE_FILE: &str = "/etc/sysctl.d/80-site.conf";

/// The runtime values of a state, and the content of [`SITE_FILE`] that sets them at boot.
fn state(name: &str) -> (Vec<(&'static str, &'static str)>, Option<String>) {
    let values = match name {
        // Meets every profile: a wide range of different parity with the NodePorts reserved.
        "better" => vec![
            ("net.ipv4.ip_local_port_range", "10000 65535"),
            ("net.ipv4.ip_local_reserved_ports", "30000-32767"),
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.core.somaxconn", "8192"),
            ("net.netfilter.nf_conntrack_tcp_timeout_established", "3600"),
        ],
        // Below every bound: a narrow range across the NodePorts, timestamps and cookies off.
        "worse" => vec![
            ("net.ipv4.ip_local_port_range", "20000 30500"),
            ("net.ipv4.tcp_timestamps", "0"),
            ("net.ipv4.tcp_tw_reuse", "0"),
            ("net.ipv4.tcp_max_tw_buckets", "1000"),
            ("net.core.somaxconn", "128"),
            ("net.ipv4.tcp_syncookies", "0"),
        ],
        // Ports reserved by another file, which a profile that reserves more must keep.
        "list-elsewhere" => vec![("net.ipv4.ip_local_reserved_ports", "9100,9200")],
        // The kernel's defaults; the profile adds a key this namespace lacks.
        "key-absent" => Vec::new(),
        other => panic!("no state {other}"),
    };
    let file = (!values.is_empty()).then(|| {
        values
            .iter()
            .filter(|(key, _)| Path::new("/proc/sys").join(key.replace('.', "/")).exists())
            .map(|(key, value)| format!("{key} = {value}\n"))
            .collect()
    });
    (values, file)
}

#[test]
fn every_export_means_what_apply_means() {
    if !enter_outside("agree::every_export_means_what_apply_means") || ansible_playbook().is_none() {
        return;
    }
    let scenarios: Vec<(&str, &str)> = PROFILES.iter().flat_map(|p| STATES.iter().map(move |s| (*p, *s))).collect();
    // Two at a time: each side is its own process tree, and the machine has two cores.
    let results: Vec<((&str, &str), [Side; 3])> = scenarios
        .chunks(2)
        .flat_map(|pair| {
            let handles: Vec<_> = pair
                .iter()
                .map(|&(profile, state)| {
                    std::thread::spawn(move || {
                        let side = |how: &str| run_side(how, profile, state);
                        ((profile, state), [side("apply"), side("ansible"), side("drop-in")])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("scenario thread")).collect::<Vec<_>>()
        })
        .collect();
    for ((profile, state), [apply, ansible, dropin]) in &results {
        let what = format!("{profile} on a host with {state} values");
        for (name, side) in [("the playbook", ansible), ("the --from-host drop-in", dropin)] {
            assert_eq!(side.runtime, apply.runtime, "{what}: {name} and apply leave different runtime values");
            assert_eq!(side.boot, apply.boot, "{what}: {name} and apply leave different values at boot");
        }
        for (name, side) in [("apply", apply), ("the playbook", ansible), ("the drop-in", dropin)] {
            assert!(!side.changed_second, "{what}: a second run of {name} changed something");
            if *state == "better" {
                assert!(!side.changed_first, "{what}: {name} changed a host that meets the profile");
                assert_eq!(side.runtime, side.before, "{what}: {name} changed a host that meets the profile");
            }
        }
    }
    // The scenarios changed something at all: worse hosts are raised to the profile.
    let worse = results.iter().filter(|((_, s), _)| *s == "worse");
    assert!(worse.into_iter().all(|(_, [apply, ..])| apply.changed_first && apply.runtime != apply.before));
}

/// Whether the outer test may run: namespaces are needed (under CI=true they must exist).
fn enter_outside(name: &str) -> bool {
    let ok = Command::new("unshare").args(["--net", "--mount", "true"]).status().is_ok_and(|s| s.success());
    assert!(ok || std::env::var("CI").map_or(true, |v| v != "true"), "{name}: CI must run as root with unshare");
    ok
}

/// What one side left: the values before, after the first run and after the simulated boot, and
/// whether each run changed anything.
#[derive(Debug, serde::Deserialize)]
struct Side {
    before: BTreeMap<String, String>,
    runtime: BTreeMap<String, String>,
    boot: BTreeMap<String, String>,
    changed_first: bool,
    changed_second: bool,
}

fn run_side(how: &str, profile: &str, state: &str) -> Side {
    let env = [
        ("TWTUNE_AGREE_HOW", how.to_string()),
        ("TWTUNE_AGREE_PROFILE", profile.to_string()),
        ("TWTUNE_AGREE_STATE", state.to_string()),
    ];
    let stdout = run_inside("agree::one_side", &env);
    let line =
        stdout.lines().find_map(|l| l.split_once("AGREE ").map(|(_, json)| json)).expect("the side's result line");
    serde_json::from_str(line).expect("the side's result")
}

/// One side of [`every_export_means_what_apply_means`], in its own namespaces.
#[test]
#[ignore = "run by every_export_means_what_apply_means, in namespaces of its own"]
fn one_side() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the outer test"));
    let (how, profile, state_name) = (var("TWTUNE_AGREE_HOW"), var("TWTUNE_AGREE_PROFILE"), var("TWTUNE_AGREE_STATE"));
    assert!(enter("agree::one_side"), "run by every_export_means_what_apply_means only");
    let work = tempfile::tempdir().expect("temp dir");
    let defaults = read_keys();
    let (values, file) = state(&state_name);
    for (key, value) in &values {
        set_sysctl(key, value);
    }
    if let Some(text) = &file {
        std::fs::write(SITE_FILE, text).expect("the host's own sysctl file");
    }
    let profile = if state_name == "key-absent" { absent_key_profile(work.path(), &profile) } else { profile };
    let before = read_keys();
    let changed_first = run_once(&how, &profile, work.path());
    let runtime = read_keys();
    let changed_second = run_once(&how, &profile, work.path());
    // A boot: every key back to this namespace's default, then every sysctl file.
    for (key, value) in &defaults {
        if read_keys().get(key) != Some(value) && writable(key) {
            set_sysctl(key, value);
        }
    }
    run("/usr/sbin/sysctl", &["--system"]);
    let boot = read_keys();
    let result = serde_json::json!({
        "before": before, "runtime": runtime, "boot": boot,
        "changed_first": changed_first, "changed_second": changed_second,
    });
    println!("AGREE {result}");
}

/// A profile extending `parent` with a key that exists on this kernel but not in a network
/// namespace other than the initial one.
fn absent_key_profile(dir: &Path, parent: &str) -> String {
    let path = dir.join("absent.yaml");
    std::fs::write(
        &path,
        format!(
            "name: absent\ndescription: with a key this namespace lacks\nextends: {parent}\nsettings:\n  \
             net.ipv4.tcp_max_orphans:\n    min: 65536\n    why: test\n    risk: test\n"
        ),
    )
    .expect("profile");
    assert!(!Path::new("/proc/sys/net/ipv4/tcp_max_orphans").exists(), "absent outside the initial namespace");
    path.to_string_lossy().into_owned()
}

fn writable(key: &str) -> bool {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    std::fs::metadata(path).is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o200 != 0)
}

/// The values of [`KEYS`] this namespace has, whitespace folded.
fn read_keys() -> BTreeMap<String, String> {
    KEYS.iter()
        .filter_map(|key| {
            let text = std::fs::read_to_string(Path::new("/proc/sys").join(key.replace('.', "/"))).ok()?;
            Some((key.to_string(), text.split_whitespace().collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Runs one side once; whether it changed anything, as it says itself.
fn run_once(how: &str, profile: &str, work: &Path) -> bool {
    match how {
        "apply" => {
            let state_dir = work.join("state");
            let out = twtune()
                .args(["apply", profile, "--yes", "--persist", "--state-dir"])
                .arg(&state_dir)
                .output()
                .expect("twtune apply");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "apply {profile}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
            !stdout.contains("Nothing to apply")
        }
        "ansible" => {
            let playbook = work.join("site.yml");
            let out = twtune().args(["export", profile, "--format", "ansible", "-o"]).arg(&playbook).output();
            assert!(out.expect("twtune export").status.success());
            let out = playbook_output(&playbook, work, None, &[]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && stdout.contains("failed=0"), "playbook {profile}: {stdout}");
            !stdout.contains(" changed=0 ")
        }
        "drop-in" => {
            let dropin = work.join("from-host.conf");
            let out =
                twtune().args(["export", profile, "--format", "sysctl-d", "--from-host", "-o"]).arg(&dropin).output();
            let out = out.expect("twtune export");
            assert!(out.status.success(), "export --from-host: {}", String::from_utf8_lossy(&out.stderr));
            let text = std::fs::read_to_string(&dropin).expect("drop-in");
            let assignments = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
            if assignments > 0 {
                // Installed as apply persists it, then loaded as at boot.
                std::fs::write("/etc/sysctl.d/90-twtune.conf", &text).expect("install the drop-in");
                run("/usr/sbin/sysctl", &["--system"]);
            }
            assignments > 0
        }
        other => panic!("no side {other}"),
    }
}
