//! Rendering of each format, values of profile settings, and YAML that survives any text.

use serde_json::Value;

use super::*;
use crate::profile::catalog::Catalog;

fn profile(name: &str) -> Profile {
    Catalog::new(std::path::Path::new("/nonexistent-root")).load(name).expect(name)
}

fn options() -> AnsibleOptions {
    AnsibleOptions { hosts: "all".into(), sysctl_file: "/etc/sysctl.d/90-twtune.conf".into() }
}

/// Parses YAML into a generic value (serde-saphyr has none of its own).
fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

#[test]
fn each_format_carries_a_profile_as_far_as_it_can() {
    let outbound = profile("outbound-heavy");
    // Ansible judges every setting on each host; a setting that is one value is that value.
    let ansible = Export::from_profile(&outbound, ExportFormat::Ansible);
    assert_eq!(ansible.items.len(), outbound.settings.len());
    assert!(ansible.skipped.is_empty());
    let want = |e: &Export, key: &str| e.items.iter().find(|i| i.key == key).map(|i| i.want.clone());
    assert_eq!(want(&ansible, "net.ipv4.tcp_tw_reuse"), Some(Want::Value("1".into())));
    assert!(matches!(want(&ansible, "net.ipv4.ip_local_port_range"), Some(Want::Judged(_))));
    // A drop-in holds the values only, and says why each bound is left out.
    let dropin = Export::from_profile(&outbound, ExportFormat::SysctlD);
    let keys: Vec<&str> = dropin.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, vec!["net.ipv4.tcp_tw_recycle", "net.ipv4.tcp_tw_reuse"]);
    let why = dropin.skipped.iter().find(|(k, _)| k == "net.ipv4.ip_local_reserved_ports").expect("left out");
    assert!(why.1.starts_with("a bound (including 30000-32767), not one value"), "{why:?}");
    assert!(why.1.contains("--from-host"), "{why:?}");
    // JSON has no conditions: a key of old kernels only is left out.
    let json = Export::from_profile(&outbound, ExportFormat::Json);
    assert_eq!(json.values().into_iter().collect::<Vec<_>>(), vec![("net.ipv4.tcp_tw_reuse", "1")]);
    assert!(json.skipped.iter().any(|(k, why)| k == "net.ipv4.tcp_tw_recycle" && why.contains("up to 4.11")));
}

#[test]
fn a_pod_is_judged_against_the_defaults_it_starts_from() {
    let pod = Export::from_profile(&profile("outbound-heavy"), ExportFormat::K8s);
    let values = pod.values();
    assert_eq!(values.get("net.ipv4.ip_local_port_range"), Some(&"10000 65535"), "28232 ports are fewer than 50000");
    assert_eq!(values.get("net.ipv4.ip_local_reserved_ports"), Some(&"30000-32767"));
    assert_eq!(values.get("net.ipv4.tcp_tw_reuse"), Some(&"1"));
    assert!(!values.contains_key("net.ipv4.tcp_timestamps"), "the default 1 meets one of 1, 2");
    let node = Export::from_profile(&profile("kubernetes-node"), ExportFormat::K8s);
    let skipped = |key: &str| node.skipped.iter().find(|(k, _)| k == key).map(|(_, why)| why.clone());
    assert!(skipped("net.ipv4.ip_local_port_range").is_some_and(|w| w.contains("which meets it")), "{node:?}");
    assert!(skipped("net.netfilter.nf_conntrack_max").is_some_and(|w| w.starts_with("global to the node")));
    assert!(skipped("net.ipv4.tcp_max_tw_buckets").is_some_and(|w| w.contains("nothing to set")), "{node:?}");
    assert!(skipped("net.ipv4.tcp_tw_recycle").is_some_and(|w| w.contains("only up to Linux 4.11")));
}

#[test]
fn yaml_survives_any_text_in_why_and_risk() {
    let nasty = "colon: here, \"quotes\" and 'single', # not a comment\n- leading dash\n{{ template }} | pipe > gt & amp * star";
    let export = Export {
        source: "profile \"odd\": # name".into(),
        items: vec![Item::new("net.ipv4.tcp_tw_reuse".into(), "1".into(), nasty.into(), nasty.into())],
        skipped: vec![("net.x".into(), nasty.into())],
    };
    let playbook = yaml(&ansible::playbook(
        &export,
        &AnsibleOptions { hosts: "web:&prod".into(), sysctl_file: "/tmp/a: b.conf".into() },
    ));
    let play = &playbook[0];
    assert_eq!(play["hosts"], "web:&prod");
    assert_eq!(play["vars"]["twtune_sysctl_file"], "/tmp/a: b.conf");
    let tasks = play["tasks"].as_array().expect("tasks");
    let names: Vec<&str> = tasks.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        vec![
            "Read the current values",
            "Keep the values of the keys this kernel has",
            "Choose net.ipv4.tcp_tw_reuse",
            "Set the values outside the profile, at runtime and in the file",
            "Apply every sysctl file now (so later files are honoured too)",
            "Read the changed values back",
            "Check the runtime values"
        ]
    );
    assert_eq!(tasks[2]["vars"]["twtune_sysctl_choice"], "1");
    assert_eq!(play["handlers"][0]["changed_when"], true);
    let role = ansible::role(&export, &options());
    for (path, text) in &role {
        if path.ends_with(".yml") {
            yaml(text);
        }
    }
    assert_eq!(yaml(&role[0].1)["twtune_sysctl_file"], "/etc/sysctl.d/90-twtune.conf");
    yaml(&kubernetes(&export));
    // The drop-in keeps one assignment per line: the comment cannot leak a line.
    let dropin = sysctl_d(&export);
    let assignments: Vec<&str> = dropin.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(assignments, vec!["net.ipv4.tcp_tw_reuse = 1"]);
}

#[test]
fn settings_for_some_kernels_only_are_conditional() {
    let export = Export::from_profile(&profile("outbound-heavy"), ExportFormat::Ansible);
    let recycle = export.items.iter().find(|i| i.key == "net.ipv4.tcp_tw_recycle").expect("baseline sets it");
    assert_eq!(recycle.max_kernel.as_deref(), Some("4.11"));
    let playbook = ansible::playbook(&export, &options());
    assert!(playbook.contains("gather_facts: true"), "{playbook}");
    let play = yaml(&playbook);
    let choose = play[0]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["name"] == "Choose net.ipv4.tcp_tw_recycle")
        .expect("a choice");
    assert_eq!(choose["when"][1], "ansible_facts.kernel is version('4.12', '<')");
    let dropin = sysctl_d(&Export::from_profile(&profile("outbound-heavy"), ExportFormat::SysctlD));
    assert!(
        dropin.contains("# only on kernels up to 4.11; uncomment it there:\n# net.ipv4.tcp_tw_recycle = 0\n"),
        "{dropin}"
    );
    let tasks = yaml(&ansible::role(&export, &options())[1].1);
    assert_eq!(tasks[0]["name"], "Gather the kernel version for settings that depend on it");
}

#[test]
fn values_that_ansible_would_template_are_refused() {
    let export = Export {
        source: "t".into(),
        items: vec![Item::new("net.ipv4.x".into(), "{{ lookup('pipe', 'id') }}".into(), "w".into(), "r".into())],
        skipped: vec![],
    };
    assert!(check_ansible_safe(&export).is_err());
    for name in ["baseline", "inbound-heavy", "outbound-heavy", "kubernetes-node"] {
        assert!(check_ansible_safe(&Export::from_profile(&profile(name), ExportFormat::Ansible)).is_ok());
    }
    // A judged setting's own texts are checked too.
    let mut setting = profile("outbound-heavy").settings["net.ipv4.ip_local_reserved_ports"].clone();
    setting.includes = Some(crate::profile::parse::Text("1'}}{{ x".into()));
    let item = Item::of_setting("net.ipv4.ip_local_reserved_ports", &setting, Want::Judged(Box::new(setting.clone())));
    assert!(check_ansible_safe(&Export { source: "t".into(), items: vec![item], skipped: vec![] }).is_err());
}

#[test]
fn json_is_versioned_key_to_value_and_says_what_it_left_out() {
    let text = json(&Export::from_profile(&profile("outbound-heavy"), ExportFormat::Json));
    let value: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["source"], "profile outbound-heavy");
    assert_eq!(value["settings"]["net.ipv4.tcp_tw_reuse"], "1");
    assert!(value["settings"].get("net.ipv4.ip_local_port_range").is_none(), "a bound");
    assert!(value["left_out"]["net.ipv4.ip_local_port_range"].as_str().is_some_and(|w| w.starts_with("a bound")));
}

#[test]
fn kubernetes_keeps_only_safe_sysctls_as_entries() {
    let export = Export {
        source: "t".into(),
        items: vec![
            Item::new("net.ipv4.ip_local_port_range".into(), "10000 65535".into(), "w".into(), "r".into()),
            Item::new("net.ipv4.tcp_tw_reuse".into(), "1".into(), "w".into(), "r".into()),
            Item::new("net.ipv4.tcp_keepalive_time".into(), "600".into(), "w".into(), "r".into()),
            Item::new("net.ipv4.tcp_max_orphans".into(), "65536".into(), "w".into(), "r".into()),
            Item {
                max_kernel: Some("4.11".into()),
                ..Item::new("net.ipv4.tcp_tw_recycle".into(), "0".into(), "w".into(), "r".into())
            },
        ],
        skipped: Vec::new(),
    };
    let text = kubernetes(&export);
    let doc = yaml(&text);
    let names: Vec<&str> = doc["spec"]["securityContext"]["sysctls"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["net.ipv4.ip_local_port_range", "net.ipv4.tcp_keepalive_time"]);
    assert!(text.contains("# net.ipv4.tcp_tw_reuse = 1: not in Kubernetes' safe set"), "{text}");
    assert!(text.contains("--allowed-unsafe-sysctls"), "{text}");
    assert!(text.contains("# net.ipv4.tcp_max_orphans = 65536: global to the node"), "{text}");
    assert!(text.contains("# safe since Kubernetes 1.29"), "{text}");
    assert!(text.contains("# net.ipv4.tcp_tw_recycle = 0: the key exists only up to Linux 4.11"), "{text}");
    assert!(
        !text.contains("tcp_tw_recycle = 0: not in Kubernetes"),
        "no --allowed-unsafe-sysctls advice for a key that is gone"
    );
    let none = kubernetes(&Export { source: "t".into(), items: vec![], skipped: vec![] });
    assert_eq!(yaml(&none)["spec"]["securityContext"]["sysctls"], Value::Array(vec![]));
    assert_eq!((&doc["apiVersion"], &doc["kind"]), (&Value::String("v1".into()), &Value::String("Pod".into())));
}

#[test]
fn a_hostile_host_name_stays_inside_its_comment() {
    // sethostname(2) takes any bytes: a line break and a second play, or a second setting.
    let host = "web1\n- hosts: all\n  tasks:\n    - ansible.builtin.shell: id\r\nkernel.core_pattern = |/tmp/x\u{2028}\u{1b}[2J";
    let items = vec![Item::new("net.ipv4.tcp_tw_reuse".into(), "1".into(), "w".into(), "r".into())];
    let export = Export::recommendations(host, items);
    let playbook = yaml(&ansible::playbook(&export, &options()));
    assert_eq!(playbook.as_array().map(Vec::len), Some(1), "one play, no second one: {playbook}");
    for (path, text) in ansible::role(&export, &options()) {
        if path.ends_with(".yml") {
            yaml(&text);
        }
        assert!(!text.contains('\u{1b}') && !text.contains("\nkernel.core_pattern"), "{path}");
    }
    let dropin = sysctl_d(&export);
    let assignments: Vec<&str> = dropin.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(assignments, vec!["net.ipv4.tcp_tw_reuse = 1"], "{dropin}");
    yaml(&kubernetes(&export));
}

#[test]
fn a_value_with_a_line_break_is_refused_for_every_format() {
    let items = vec![Item::new(
        "net.ipv4.conf.all.rp_filter".into(),
        "1\nkernel.core_pattern = |/tmp/x".into(),
        "w".into(),
        "r".into(),
    )];
    let export = Export { source: "profile evil".into(), items, skipped: Vec::new() };
    for format in
        [ExportFormat::Ansible, ExportFormat::AnsibleRole, ExportFormat::SysctlD, ExportFormat::Json, ExportFormat::K8s]
    {
        let err = render(&export, format, &options()).err().expect("refused");
        assert!(err.to_string().contains("holds a line break or a control character"), "{format:?}: {err}");
    }
}

#[test]
fn nothing_from_a_host_or_profile_reaches_a_field_ansible_evaluates() {
    // A host name that is a template: it stays out of the play's name (templated by Ansible).
    let host = "{{ lookup('pipe','touch /tmp/pwned') }}";
    let items = vec![Item::new("net.ipv4.tcp_tw_reuse".into(), "1".into(), "w".into(), "r".into())];
    let export = Export::recommendations(host, items);
    let playbook = ansible::playbook(&export, &options());
    let play = &yaml(&playbook)[0];
    assert_eq!(play["name"], "TIME_WAIT and ephemeral-port settings (twtune)");
    assert!(playbook.lines().filter(|l| l.contains("lookup")).all(|l| l.trim_start().starts_with('#')), "{playbook}");
    for (path, text) in ansible::role(&export, &options()) {
        if path.ends_with(".yml") {
            assert!(text.lines().filter(|l| l.contains("lookup")).all(|l| l.trim_start().starts_with('#')), "{path}");
        }
    }
    // A value that would break out of the read-back expression without braces.
    let quote = "a' ~ lookup('pipe','id') ~ 'b";
    let items = vec![Item::new("net.ipv4.tcp_congestion_control".into(), quote.into(), "w".into(), "r".into())];
    let export = Export { source: "profile evil".into(), items, skipped: Vec::new() };
    let err = check_ansible_safe(&export).expect_err("refused");
    assert!(err.to_string().contains("characters Ansible could evaluate"), "{err}");
    // What sysctl values are made of passes.
    let items =
        vec![Item::new("net.ipv4.ip_local_reserved_ports".into(), "8080,30000-32767".into(), "w".into(), "r".into())];
    check_ansible_safe(&Export { source: "p".into(), items, skipped: Vec::new() }).expect("plain values pass");
}

/// A small deterministic generator (xorshift), so that a failure names a case that recurs.
struct Cases(u64);

impl Cases {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }

    /// A value of `key` as the kernel would print it: often near the profiles' bounds.
    fn value(&mut self, key: &str) -> String {
        let port = |c: &mut Cases| {
            [1024, 9999, 10000, 29999, 30000, 30500, 32767, 32768, 60999, 65535][c.next(10) as usize] + c.next(3) - 1
        };
        match key {
            "net.ipv4.ip_local_port_range" => {
                let (a, b) = (port(self).min(65535), port(self).min(65535));
                format!("{} {}", a.min(b), a.max(b))
            }
            "net.ipv4.ip_local_reserved_ports" => {
                let mut set = crate::ports::PortSet::default();
                for _ in 0..self.next(4) {
                    let low = port(self).min(65535) as u16;
                    for p in low..=low.saturating_add(self.next(4000) as u16) {
                        set.insert(p);
                    }
                }
                set.to_string()
            }
            _ => [0, 1, 2, 128, 1000, 4096, 65536, 86400, 131072, 432000][self.next(10) as usize].to_string(),
        }
    }
}

const RENDER: &str = r#"
import json, sys, jinja2
env = jinja2.Environment()
for case in json.load(sys.stdin):
    got = env.from_string(case["template"]).render(twtune_sysctl_current=case["current"]).strip()
    if got != case["expected"]:
        print(json.dumps({"case": case, "got": got}))
        sys.exit(1)
"#;

#[test]
fn each_playbook_choice_is_the_one_apply_makes() {
    // The Python of the test venv (scripts/test installs Ansible, and with it Jinja).
    let Some(python) = std::env::var_os("TWTUNE_PYTHON") else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but TWTUNE_PYTHON is not set");
        eprintln!("SKIPPED: TWTUNE_PYTHON is not set (scripts/test sets it)");
        return;
    };
    let mut cases = Vec::new();
    let mut changing = 0;
    let mut draw = Cases(0x9e37_79b9_7f4a_7c15);
    for name in ["baseline", "inbound-heavy", "outbound-heavy", "kubernetes-node"] {
        for (key, setting) in &profile(name).settings {
            for _ in 0..60 {
                let mut current = crate::sysctl::keys::Settings::default();
                for k in [key.as_str(), "net.ipv4.ip_local_reserved_ports"] {
                    current.0.insert(k.to_string(), Some(draw.value(k)));
                }
                let ehash = ["0", "-262144", "65536"][draw.next(3) as usize];
                current.0.insert("net.ipv4.tcp_ehash_entries".into(), Some(ehash.into()));
                let now = current.get(key).unwrap_or_default().to_string();
                // What apply sets: the unmet setting's recommendation, where the kernel takes it.
                let expected = match crate::profile::check(key, setting, &now, &current) {
                    crate::profile::Verdict::Unmet { recommended: Some(r), .. }
                        if spec_of(key).is_none_or(|s| s.check_value(&r).is_ok()) =>
                    {
                        r
                    }
                    _ => now.clone(),
                };
                changing += usize::from(expected != now);
                let template = jinja::choice(key, setting).join(" ");
                cases.push(serde_json::json!({ "template": template, "current": current, "expected": expected }));
            }
        }
    }
    // Both kinds are drawn often: hosts that meet a setting and hosts that do not.
    assert!(changing > cases.len() / 5 && changing < cases.len() * 4 / 5, "{changing} of {}", cases.len());
    let mut child = std::process::Command::new(python)
        .args(["-c", RENDER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python");
    let input = serde_json::to_vec(&cases).expect("json");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write cases");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "{} cases; a choice differs from apply's: {}{}",
        cases.len(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
