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
fn profile_settings_export_as_the_value_to_set() {
    let outbound = Export::from_profile(&profile("outbound-heavy"));
    let values = outbound.values();
    assert_eq!(values.get("net.ipv4.tcp_tw_reuse"), Some(&"1"));
    assert_eq!(values.get("net.ipv4.ip_local_port_range"), Some(&"10000 65535"));
    assert_eq!(values.get("net.ipv4.tcp_timestamps"), Some(&"1"));
    assert_eq!(values.get("net.ipv4.tcp_tw_recycle"), Some(&"0"));
    assert!(!values.contains_key("net.ipv4.tcp_max_tw_buckets"), "min: default has no single value");
    assert_eq!(outbound.skipped.len(), 1);

    let k8s = Export::from_profile(&profile("kubernetes-node"))
        .values()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
    assert!(
        k8s.contains(&("net.ipv4.ip_local_port_range".into(), "32768 60999".into())),
        "the default is clear of NodePorts: {k8s:?}"
    );
}

#[test]
fn yaml_survives_any_text_in_why_and_risk() {
    let nasty = "colon: here, \"quotes\" and 'single', # not a comment\n- leading dash\n{{ template }} | pipe > gt & amp * star";
    let export = Export {
        source: "profile \"odd\": # name".into(),
        items: vec![Item::new("net.ipv4.tcp_tw_reuse".into(), "1".into(), nasty.into(), nasty.into())],
        skipped: vec![("net.x".into(), nasty.into())],
    };
    let playbook = yaml(&ansible_playbook(
        &export,
        &AnsibleOptions { hosts: "web:&prod".into(), sysctl_file: "/tmp/a: b.conf".into() },
    ));
    let play = &playbook[0];
    assert_eq!(play["hosts"], "web:&prod");
    assert_eq!(play["vars"]["twtune_sysctl_file"], "/tmp/a: b.conf");
    assert_eq!(play["tasks"][0]["ansible.posix.sysctl"]["value"], "1");
    assert_eq!(play["tasks"].as_array().map(Vec::len), Some(4), "one task, the handlers' flush and two checks");
    assert_eq!(play["handlers"][0]["changed_when"], true);
    let role = ansible_role(&export, &options());
    for (path, text) in &role {
        if path.ends_with(".yml") {
            yaml(text);
        }
    }
    let defaults = yaml(&role[0].1);
    assert_eq!(defaults["twtune_sysctl_settings"]["net.ipv4.tcp_tw_reuse"], "1");
    yaml(&kubernetes(&export));
    // The drop-in keeps one assignment per line: the comment cannot leak a line.
    let dropin = sysctl_d(&export);
    let assignments: Vec<&str> = dropin.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(assignments, vec!["net.ipv4.tcp_tw_reuse = 1"]);
}

#[test]
fn settings_for_some_kernels_only_are_conditional() {
    let export = Export::from_profile(&profile("outbound-heavy"));
    let recycle = export.items.iter().find(|i| i.key == "net.ipv4.tcp_tw_recycle").expect("baseline sets it");
    assert_eq!(recycle.max_kernel.as_deref(), Some("4.11"));
    let playbook = ansible_playbook(&export, &options());
    assert!(playbook.contains("gather_facts: true"), "{playbook}");
    assert!(playbook.contains("      when: \"ansible_facts.kernel is version('4.12', '<')\"\n"), "{playbook}");
    let play = yaml(&playbook);
    let checked = play[0]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["name"] == "Read the runtime values back")
        .expect("check");
    assert!(!checked.to_string().contains("tcp_tw_recycle"), "not checked where it may not exist");
    let dropin = sysctl_d(&export);
    assert!(
        dropin.contains("# only on kernels up to 4.11; uncomment it there:\n# net.ipv4.tcp_tw_recycle = 0\n"),
        "{dropin}"
    );
    let role = ansible_role(&export, &options());
    let defaults = yaml(&role[0].1);
    assert_eq!(defaults["twtune_sysctl_by_kernel"][0]["below_kernel"], "4.12");
    assert!(defaults["twtune_sysctl_settings"].get("net.ipv4.tcp_tw_recycle").is_none());
}

#[test]
fn values_that_ansible_would_template_are_refused() {
    let export = Export {
        source: "t".into(),
        items: vec![Item::new("net.ipv4.x".into(), "{{ lookup('pipe', 'id') }}".into(), "w".into(), "r".into())],
        skipped: vec![],
    };
    assert!(check_ansible_safe(&export).is_err());
    assert!(check_ansible_safe(&Export::from_profile(&profile("outbound-heavy"))).is_ok());
}

#[test]
fn json_is_versioned_key_to_value() {
    let text = json(&Export::from_profile(&profile("outbound-heavy")));
    let value: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["source"], "profile outbound-heavy");
    assert_eq!(value["settings"]["net.ipv4.ip_local_port_range"], "10000 65535");
    assert_eq!(value["settings"]["net.ipv4.tcp_tw_reuse"], "1");
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
    let playbook = yaml(&ansible_playbook(&export, &options()));
    assert_eq!(playbook.as_array().map(Vec::len), Some(1), "one play, no second one: {playbook}");
    for (path, text) in ansible_role(&export, &options()) {
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
    let playbook = ansible_playbook(&export, &options());
    let play = &yaml(&playbook)[0];
    assert_eq!(play["name"], "TIME_WAIT and ephemeral-port settings (twtune)");
    assert!(playbook.lines().filter(|l| l.contains("lookup")).all(|l| l.trim_start().starts_with('#')), "{playbook}");
    for (path, text) in ansible_role(&export, &options()) {
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
