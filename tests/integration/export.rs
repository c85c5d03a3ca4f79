//! `twtune export`: golden files for every format, and real runs: the playbook and the role by
//! `ansible-playbook -c local`, the drop-in by `sysctl -p`, each in private network and mount
//! namespaces whose runtime values must then equal the exported ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::{enter, sysctl};
use crate::util::{Expect, Run, fixture};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/export")
}

/// Compares with a golden file; `TWTUNE_BLESS=1` rewrites it.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("TWTUNE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("bless");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs; run TWTUNE_BLESS=1 cargo test export and review the diff\n{actual}",
        path.display()
    );
}

/// The `settings` of a JSON export (key -> value).
fn settings(json: &str) -> BTreeMap<String, String> {
    let document: serde_json::Value = serde_json::from_str(json).expect("json");
    serde_json::from_value(document["settings"].clone()).expect("settings: key -> value")
}

/// `twtune export ARGS` to stdout: exit 0, something on stdout, and on stderr nothing or the one
/// note on settings left out.
fn export(args: &[&str]) -> String {
    Run::new(&["export"])
        .args(args)
        .stdout(Expect::satisfies("an export", |s| !s.is_empty()))
        .stderr(Expect::satisfies("nothing, or the note", |s| s.is_empty() || is_note(s)))
        .run()
}

/// The line saying which settings a file or Pod export left out.
fn is_note(stderr: &str) -> bool {
    stderr.starts_with("twtune: note: ") && stderr.lines().count() == 1 && stderr.contains("left out")
}

#[test]
fn every_format_matches_its_golden_file() {
    for (format, file) in [
        ("ansible", "outbound-heavy.ansible.yml"),
        ("sysctl-d", "outbound-heavy.sysctl.conf"),
        ("json", "outbound-heavy.json"),
        ("k8s", "outbound-heavy.k8s.yaml"),
    ] {
        assert_golden(file, &export(&["outbound-heavy", "--format", format]));
    }
    assert_golden("kubernetes-node.k8s.yaml", &export(&["kubernetes-node", "--format", "k8s"]));
    let dir = tempfile::tempdir().expect("temp dir");
    let role = dir.path().join("twtune_sysctl");
    Run::new(&["export", "outbound-heavy", "--format", "ansible-role", "--output"]).arg(&role).run();
    for file in
        ["defaults/main.yml", "tasks/main.yml", "handlers/main.yml", "meta/main.yml", "requirements.yml", "README.md"]
    {
        assert_golden(&format!("role/{file}"), &std::fs::read_to_string(role.join(file)).expect(file));
    }
}

#[test]
fn options_reach_the_playbook_and_output_goes_to_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("site.yml");
    Run::new(&["export", "outbound-heavy", "--hosts", "web:&prod", "--sysctl-file", "/etc/sysctl.d/50-net.conf", "-o"])
        .arg(&out)
        .run();
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(
        text.contains("  hosts: \"web:&prod\"\n") && text.contains("twtune_sysctl_file: \"/etc/sysctl.d/50-net.conf\""),
        "{text}"
    );
}

#[test]
fn output_to_a_bare_file_name_in_the_current_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    Run::new(&["export", "inbound-heavy", "--format", "json", "-o", "inbound.json"])
        .current_dir(dir.path())
        .stderr(Expect::satisfies("the note", is_note))
        .run();
    let text = std::fs::read_to_string(dir.path().join("inbound.json")).expect("written");
    crate::util::valid_json("export", text.as_bytes());
    let json = settings(&text);
    assert_eq!(json.get("net.ipv4.tcp_syncookies").map(String::as_str), Some("1"));
    assert!(!json.contains_key("net.core.somaxconn"), "a bound is no value to write: {json:?}");
}

#[test]
fn the_role_needs_a_new_or_empty_directory() {
    Run::new(&["export", "baseline", "--format", "ansible-role"])
        .status(2)
        .stderr("twtune: --format ansible-role writes a directory: give it with --output DIR\n")
        .run();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
    Run::new(&["export", "baseline", "--format", "ansible-role", "--output"])
        .arg(dir.path())
        .status(2)
        .stderr(format!("twtune: {} is not empty: give a new or empty directory for the role\n", dir.path().display()))
        .run();
    assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).expect("kept"), "mine");
}

#[test]
fn recommended_exports_the_audit_recommendations() {
    let text = export(&[
        "--recommended",
        "--format",
        "sysctl-d",
        "--root",
        fixture("client-exhaustion").to_str().expect("utf-8"),
    ]);
    assert!(text.contains("from the recommendations of an audit of"), "{text}");
    assert!(text.contains("\nnet.ipv4.tcp_tw_reuse = 1\n"), "{text}");
    let json = settings(&export(&[
        "--recommended",
        "--format",
        "json",
        "--root",
        fixture("misconfigured").to_str().expect("utf-8"),
    ]));
    assert_eq!(json.get("net.ipv4.tcp_fin_timeout").map(String::as_str), Some("60"));
    assert_eq!(json.get("net.ipv4.tcp_timestamps").map(String::as_str), Some("1"));
    assert_eq!(
        json.get("net.ipv4.ip_local_reserved_ports").map(String::as_str),
        Some("40080"),
        "the first finding per key wins"
    );
}

// --- real tools ---------------------------------------------------------------------------------

/// `ansible-playbook`: from TWTUNE_ANSIBLE_PLAYBOOK (set by scripts/test), else the PATH. Under
/// CI=true a missing Ansible is a failure; elsewhere the test is skipped with a message.
pub(crate) fn ansible_playbook() -> Option<PathBuf> {
    let found = std::env::var_os("TWTUNE_ANSIBLE_PLAYBOOK").map(PathBuf::from).filter(|p| p.exists()).or_else(|| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join("ansible-playbook"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but ansible-playbook is missing: scripts/test installs it"
        );
        eprintln!("SKIPPED: ansible-playbook not found; run scripts/test, which installs it");
    }
    found
}

/// Runs a playbook on localhost with a private Ansible home and the Python beside ansible-playbook.
fn run_playbook(playbook: &Path, work: &Path, roles: Option<&Path>) -> String {
    run_playbook_with(playbook, work, roles, &[])
}

fn run_playbook_with(playbook: &Path, work: &Path, roles: Option<&Path>, extra: &[&str]) -> String {
    let output = playbook_output(playbook, work, roles, extra);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "ansible-playbook failed\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("failed=0"), "{stdout}");
    stdout
}

pub(crate) fn playbook_output(
    playbook: &Path,
    work: &Path,
    roles: Option<&Path>,
    extra: &[&str],
) -> std::process::Output {
    let binary = ansible_playbook().expect("ansible-playbook");
    let python = binary.with_file_name("python");
    let mut command = Command::new(&binary);
    command
        .args(["-c", "local", "-i", "localhost,"])
        .args(extra)
        .arg(playbook)
        .env("ANSIBLE_HOME", work.join("ansible"))
        .env("ANSIBLE_LOCAL_TEMP", work.join("ansible/tmp"))
        .env("ANSIBLE_REMOTE_TEMP", work.join("ansible/tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_BECOME", "false");
    if python.exists() {
        command.env("ANSIBLE_PYTHON_INTERPRETER", &python);
    }
    if let Some(roles) = roles {
        command.env("ANSIBLE_ROLES_PATH", roles);
    }
    command.output().expect("run ansible-playbook")
}

/// What outbound-heavy changes in a fresh namespace, whose values are the kernel's defaults: the
/// range is too narrow (28232 ports, not 50000), the NodePorts are not reserved, and tcp_tw_reuse
/// is 2 (loopback only); timestamps (1) and tcp_max_tw_buckets (the default) already meet it.
fn outbound_heavy_in_a_fresh_namespace() -> BTreeMap<String, String> {
    [
        ("net.ipv4.ip_local_port_range", "10000 65535"),
        ("net.ipv4.ip_local_reserved_ports", "30000-32767"),
        ("net.ipv4.tcp_tw_reuse", "1"),
        ("net.ipv4.tcp_timestamps", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn assert_runtime(values: &BTreeMap<String, String>) {
    for (key, value) in values {
        assert_eq!(&sysctl(key), value, "{key}");
    }
}

#[test]
fn the_playbook_sets_the_profile_values() {
    if !enter("export::the_playbook_sets_the_profile_values") {
        return;
    }
    if ansible_playbook().is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("sysctl.d/90-twtune.conf");
    let playbook = work.path().join("site.yml");
    Run::new(&[
        "export",
        "outbound-heavy",
        "--format",
        "ansible",
        "--sysctl-file",
        file.to_str().expect("utf-8"),
        "-o",
    ])
    .arg(&playbook)
    .run();
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2", "a fresh namespace");
    // A dry run first: it succeeds and changes nothing.
    run_playbook_with(&playbook, work.path(), None, &["--check"]);
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2", "--check changed nothing");
    assert!(!file.exists());
    run_playbook(&playbook, work.path(), None);
    assert_runtime(&outbound_heavy_in_a_fresh_namespace());
    let persisted = std::fs::read_to_string(&file).expect("sysctl file");
    assert!(persisted.contains("net.ipv4.tcp_tw_reuse=1"), "{persisted}");
    // Idempotent: a second run changes nothing (and runs no handler).
    let again = run_playbook(&playbook, work.path(), None);
    assert!(again.contains("changed=0"), "{again}");
    // A later sysctl file that overrides a value fails the play, as in the role: the next boot
    // would revert it.
    std::fs::write("/etc/sysctl.d/99-override.conf", "net.ipv4.tcp_tw_reuse = 0\n").expect("override");
    crate::netns::set_sysctl("net.ipv4.tcp_tw_reuse", "2");
    let overridden = playbook_output(&playbook, work.path(), None, &[]);
    let stdout = String::from_utf8_lossy(&overridden.stdout);
    assert!(!overridden.status.success(), "{stdout}");
    assert!(stdout.contains("another sysctl file") && stdout.contains("may override it"), "{stdout}");
    std::fs::remove_file("/etc/sysctl.d/99-override.conf").expect("remove");
}

#[test]
fn the_role_sets_the_profile_values_and_its_handler_reloads() {
    if !enter("export::the_role_sets_the_profile_values_and_its_handler_reloads") {
        return;
    }
    if ansible_playbook().is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let roles = work.path().join("roles");
    Run::new(&["export", "outbound-heavy", "--format", "ansible-role", "-o"]).arg(roles.join("twtune_sysctl")).run();
    let site = work.path().join("site.yml");
    std::fs::write(&site, "- hosts: all\n  roles:\n    - twtune_sysctl\n").expect("site");
    run_playbook_with(&site, work.path(), Some(&roles), &["--check"]);
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "2", "--check changed nothing");
    run_playbook(&site, work.path(), Some(&roles));
    assert_runtime(&outbound_heavy_in_a_fresh_namespace());
    let again = run_playbook(&site, work.path(), Some(&roles));
    assert!(again.contains("changed=0"), "a second run changes nothing: {again}");
    // The role's default file lives in the namespace's tmpfs over /etc/sysctl.d.
    let persisted = std::fs::read_to_string("/etc/sysctl.d/90-twtune.conf").expect("role's sysctl file");
    assert!(persisted.contains("net.ipv4.ip_local_port_range=10000 65535"), "{persisted}");
}

#[test]
fn the_drop_in_loads_with_sysctl_p() {
    if !enter("export::the_drop_in_loads_with_sysctl_p") {
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("twtune.conf");
    Run::new(&["export", "outbound-heavy", "--format", "sysctl-d", "-o"])
        .arg(&file)
        .stderr(Expect::satisfies("the note", is_note))
        .run();
    let output = Command::new("sysctl").arg("-p").arg(&file).output().expect("sysctl -p");
    assert!(output.status.success(), "sysctl -p failed: {}", String::from_utf8_lossy(&output.stderr));
    // The one value of the profile is set; its bounds are left to `--from-host` or Ansible.
    assert_eq!(sysctl("net.ipv4.tcp_tw_reuse"), "1");
    assert_eq!(sysctl("net.ipv4.ip_local_port_range"), "32768 60999");
    // Made from this host, it holds what apply would set here, and loads as well.
    Run::new(&["export", "outbound-heavy", "--format", "sysctl-d", "--from-host", "-o"]).arg(&file).run();
    let output = Command::new("sysctl").arg("-p").arg(&file).output().expect("sysctl -p");
    assert!(output.status.success(), "sysctl -p failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_runtime(&outbound_heavy_in_a_fresh_namespace());
}

#[test]
fn a_hostile_host_name_cannot_add_a_setting_to_the_drop_in() {
    if !enter("export::a_hostile_host_name_cannot_add_a_setting_to_the_drop_in") {
        return;
    }
    // A captured tree whose host name carries a line break and a setting of its own (a net key,
    // so that even a failure would stay in this test's namespace).
    let tree = tempfile::tempdir().expect("temp dir");
    crate::util::copy_tree(&crate::util::fixture("misconfigured"), tree.path());
    std::fs::write(tree.path().join("proc/sys/kernel/hostname"), "web1\nnet.ipv4.tcp_fin_timeout = 7\n")
        .expect("write hostname");
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("twtune.conf");
    Run::new(&["export", "--recommended", "--format", "sysctl-d", "--root"])
        .arg(tree.path())
        .arg("-o")
        .arg(&file)
        .run();
    let text = std::fs::read_to_string(&file).expect("drop-in");
    assert!(text.contains("audit of web1 net.ipv4.tcp_fin_timeout = 7."), "folded into the comment: {text}");
    let before = crate::netns::sysctl("net.ipv4.tcp_fin_timeout");
    let output = Command::new("sysctl").arg("-p").arg(&file).output().expect("sysctl -p");
    assert!(output.status.success(), "sysctl -p failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_ne!(crate::netns::sysctl("net.ipv4.tcp_fin_timeout"), "7", "the host name set nothing (was {before})");
}

#[test]
fn output_to_a_device_is_refused_and_the_device_stays() {
    // As root, renaming over /dev/null would replace the device with a file.
    let dev_null = std::fs::symlink_metadata("/dev/null").expect("stat /dev/null");
    Run::new(&["export", "outbound-heavy", "--format", "sysctl-d", "-o", "/dev/null"])
        .status(2)
        .stderr(Expect::one_line(&["/dev/null", "not a regular file"]))
        .run();
    let after = std::fs::symlink_metadata("/dev/null").expect("stat /dev/null");
    use std::os::unix::fs::FileTypeExt;
    assert!(after.file_type().is_char_device() && dev_null.file_type().is_char_device());
    // A link planted where the output goes is refused too, and its target is left alone.
    let dir = tempfile::tempdir().expect("temp dir");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    std::os::unix::fs::symlink(&victim, dir.path().join("out.conf")).expect("symlink");
    Run::new(&["export", "outbound-heavy", "--format", "sysctl-d", "-o"])
        .arg(dir.path().join("out.conf"))
        .status(2)
        .stderr(Expect::one_line(&["out.conf", "it is a link"]))
        .run();
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious\n");
}

/// The oldest and newest Kubernetes versions the pinned kubernetes-validate has schemas for.
pub(crate) const KUBERNETES_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];

#[test]
fn the_kubernetes_export_is_a_valid_pod_for_the_oldest_and_newest_schemas_and_passes_yamllint_strict() {
    let validate = std::env::var_os("TWTUNE_KUBERNETES_VALIDATE").map(PathBuf::from);
    let Some(validate) = validate.filter(|p| p.exists()) else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but kubernetes-validate is missing: scripts/test installs it"
        );
        eprintln!("SKIPPED: kubernetes-validate is not installed (scripts/test installs it)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for profile in ["baseline", "inbound-heavy", "outbound-heavy", "kubernetes-node"] {
        let file = dir.path().join(format!("{profile}.yaml"));
        std::fs::write(&file, export(&[profile, "--format", "k8s"])).expect("write");
        for version in KUBERNETES_VERSIONS {
            let out = std::process::Command::new(&validate)
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file)
                .output()
                .expect("kubernetes-validate");
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && said.trim().is_empty(), "{profile} against Kubernetes {version}: {said}");
        }
        // As the Ansible exports: a document start, no line over 80 columns, nothing else to fix.
        if let Some(yamllint) = venv_tool("TWTUNE_YAMLLINT", "yamllint") {
            let out = Command::new(yamllint).arg("--strict").arg(&file).output().expect("yamllint");
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && said.trim().is_empty(), "yamllint --strict {profile}: {said}");
        }
    }
}

/// A tool of the test venv (scripts/test installs it, pinned), from its environment variable.
pub(crate) fn venv_tool(variable: &str, name: &str) -> Option<PathBuf> {
    let tool = std::env::var_os(variable).map(PathBuf::from).filter(|p| p.exists());
    if tool.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but {name} is missing: scripts/test installs it"
        );
        eprintln!("SKIPPED: {name} is not installed (scripts/test installs it)");
    }
    tool
}

#[test]
fn every_profile_s_playbook_and_role_pass_ansible_lint_production_and_yamllint() {
    let (Some(lint), Some(yamllint)) =
        (venv_tool("TWTUNE_ANSIBLE_LINT", "ansible-lint"), venv_tool("TWTUNE_YAMLLINT", "yamllint"))
    else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let project = work.path().join("project");
    let mut targets = Vec::new();
    for profile in ["baseline", "inbound-heavy", "outbound-heavy", "kubernetes-node"] {
        let playbook = project.join(format!("{profile}.yml"));
        let role = project.join(profile).join("twtune_sysctl");
        std::fs::create_dir_all(playbook.parent().expect("dir")).expect("mkdir");
        Run::new(&["export", profile, "--format", "ansible", "-o"]).arg(&playbook).run();
        Run::new(&["export", profile, "--format", "ansible-role", "-o"]).arg(&role).run();
        targets.push(playbook);
        targets.push(role);
    }
    // A long value (a reserved-port list) and a long file name must not make long lines either.
    let ports: Vec<String> = (0..40).map(|i| (40001 + 2 * i).to_string()).collect();
    let long = project.join("long-profile.yaml");
    std::fs::write(
        &long,
        format!(
            "name: long\ndescription: d\nsettings:\n  net.ipv4.ip_local_reserved_ports:\n    includes: \"{}\"\n    why: w\n    risk: r\n",
            ports.join(",")
        ),
    )
    .expect("profile");
    let file = "/etc/sysctl.d/90-a-rather-long-name-for-the-persisted-sysctl-settings-file.conf";
    let playbook = project.join("long.yml");
    Run::new(&["export", "--sysctl-file", file, "--format", "ansible", "-o"]).arg(&playbook).arg(&long).run();
    let role = project.join("long").join("twtune_sysctl");
    Run::new(&["export", "--sysctl-file", file, "--format", "ansible-role", "-o"]).arg(&role).arg(&long).run();
    assert!(std::fs::read_to_string(&playbook).expect("playbook").contains(&ports.join(",")));
    targets.push(playbook);
    targets.push(role);
    // No configuration file: the linters' own defaults, no rule disabled.
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let out = Command::new(&yamllint).arg("--strict").args(&targets).current_dir(&project).output().expect("yamllint");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "yamllint:\n{said}");
    let out = Command::new(&lint)
        .args(["--profile", "production", "--nocolor", "--offline"])
        .args(&targets)
        .current_dir(&project)
        .env("HOME", &home)
        .env("ANSIBLE_HOME", home.join("ansible"))
        .output()
        .expect("ansible-lint");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ansible-lint --profile production:\n{said}");
    assert!(said.contains("0 failure(s), 0 warning(s)"), "{said}");
}

#[test]
fn from_host_exports_what_apply_would_change_on_each_captured_tree() {
    let mut compared = 0;
    for root in ["client-exhaustion", "misconfigured", "old-kernel", "server-time-wait", "idle"] {
        let root = fixture(root);
        for profile in ["baseline", "inbound-heavy", "outbound-heavy", "kubernetes-node"] {
            let out = crate::util::twtune()
                .args(["apply", profile, "--dry-run", "--root"])
                .arg(&root)
                .output()
                .expect("apply --dry-run");
            let plan = String::from_utf8_lossy(&out.stdout);
            // `  KEY   CURRENT -> NEW` lines of the plan.
            let planned: BTreeMap<String, String> = plan
                .lines()
                .filter(|l| l.starts_with("  net.") && l.contains(" -> "))
                .filter_map(|l| {
                    let (before, new) = l.trim().rsplit_once(" -> ")?;
                    Some((before.split_whitespace().next()?.to_string(), new.to_string()))
                })
                .collect();
            let json = Run::new(&["export", profile, "--format", "json", "--from-host", "--root"])
                .arg(&root)
                .stdout(Expect::satisfies("JSON", |s| s.starts_with('{')))
                .run();
            let exported = settings(&json);
            assert_eq!(exported, planned, "{profile} on {}:\n{plan}", root.display());
            compared += planned.len();
        }
    }
    assert!(compared > 10, "the trees need changes to compare: {compared}");
}
