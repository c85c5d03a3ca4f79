//! What `deploy/` ships for Kubernetes nodes: the DaemonSet (valid for the oldest and newest
//! schemas of the pinned kubernetes-validate, with the privileges it states and no others) and the
//! Grafana dashboard (every query names only metrics and labels twtune emits, and parses).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::export::{KUBERNETES_VERSIONS, venv_tool};
use crate::util::{Expect, Run, fixture};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs the pinned kubernetes-validate, strict, on `file` for `version`: its verdict and what it said.
fn kubernetes_validate(validate: &Path, file: &Path, version: &str) -> (bool, String) {
    let out = Command::new(validate)
        .args(["--strict", "--quiet", "-k", version])
        .arg(file)
        .output()
        .expect("kubernetes-validate");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && said.trim().is_empty(), said)
}

#[test]
fn the_daemonset_is_valid_for_the_oldest_and_newest_schemas() {
    let Some(validate) = venv_tool("TWTUNE_KUBERNETES_VALIDATE", "kubernetes-validate") else { return };
    let manifest = repo_file("deploy/daemonset.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("daemonset.yaml");
    std::fs::write(&file, &manifest).expect("write");
    for version in KUBERNETES_VERSIONS {
        let (ok, said) = kubernetes_validate(&validate, &file, version);
        assert!(ok, "deploy/daemonset.yaml against Kubernetes {version}: {said}");
    }
    // --strict bites: a misspelt field is refused.
    let misspelt = dir.path().join("misspelt.yaml");
    std::fs::write(&misspelt, manifest.replace("hostPID: true", "hostPid: true")).expect("write");
    let (ok, _) = kubernetes_validate(&validate, &misspelt, KUBERNETES_VERSIONS[0]);
    assert!(!ok, "kubernetes-validate --strict accepted an unknown field");
}

/// The manifest's fields, comments left out.
fn fields(manifest: &str) -> Vec<&str> {
    manifest.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

#[test]
fn the_daemonset_asks_for_what_twtune_needs_and_nothing_more() {
    let manifest = repo_file("deploy/daemonset.yaml");
    let fields = fields(&manifest);
    for needed in [
        "hostPID: true",
        "runAsUser: 0",
        "privileged: false",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
        "type: RuntimeDefault",
        "automountServiceAccountToken: false",
        "- operator: Exists",
        "path: /var/lib/node_exporter/textfile",
    ] {
        assert!(fields.contains(&needed), "the DaemonSet lacks {needed:?}");
    }
    for refused in ["hostNetwork:", "hostIPC:", "privileged: true", "allowPrivilegeEscalation: true", "procMount:"] {
        assert!(!fields.iter().any(|f| f.starts_with(refused)), "the DaemonSet asks for {refused:?}");
    }
    // Exactly these capabilities, each after a comment that says why.
    let lines: Vec<&str> = manifest.lines().map(str::trim).collect();
    let add = lines.iter().position(|l| *l == "add:").expect("capabilities.add");
    let mut added = BTreeSet::new();
    let mut commented = false;
    for line in &lines[add + 1..] {
        if line.starts_with('#') {
            commented = true;
        } else if let Some(cap) = line.strip_prefix("- ") {
            assert!(commented, "{cap} is not explained");
            added.insert(cap);
            commented = false;
        } else {
            break;
        }
    }
    assert_eq!(added, BTreeSet::from(["SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"]));
    // The only volume is the textfile directory, and the file is replaced atomically.
    assert_eq!(fields.iter().filter(|f| f.starts_with("hostPath:")).count(), 1);
    let script = manifest.split("args:").nth(1).expect("args");
    for piece in [
        "twtune audit --all-netns --format prometheus --fail-on never",
        "--output /textfile/twtune.prom",
        "mountPath: /textfile",
    ] {
        assert!(script.contains(piece), "the loop lacks {piece:?}");
    }
    let readme = repo_file("README.md");
    for piece in [
        "kubectl apply -f deploy/daemonset.yaml",
        "--collector.textfile.directory",
        "deploy/grafana-dashboard.json",
        "docker build -f deploy/Dockerfile",
    ] {
        assert!(readme.contains(piece), "the README does not show {piece:?}");
    }
}

/// Labels Prometheus adds to every scraped series (the target's), not twtune.
const TARGET_LABELS: &[&str] = &["instance", "job"];

/// Metric families twtune exports only from a live system: the source-NAT buckets need the
/// conntrack table (ctnetlink), the exhaustion forecast `--sample`. Their names and labels come
/// from src/report/prometheus.rs.
const LIVE_ONLY: &[&str] = &[
    "twtune_snat_bucket_available_ports",
    "twtune_snat_bucket_free_ports",
    "twtune_snat_bucket_usage_ratio",
    "twtune_bucket_exhaustion_seconds",
];

/// The metric names and label names twtune emits: those of real runs on fixture roots, the
/// live-only ones of the source, and the labels `--all-netns` adds (src/report/sweep.rs).
fn emitted() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for root in ["client-exhaustion", "conntrack-full"] {
        let text = Run::new(&["audit", "--format", "prometheus", "--fail-on", "never", "--root"])
            .arg(fixture(root))
            .stdout(Expect::contains(&["# TYPE "]))
            .run();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).expect("a sample");
            metrics.insert(line[..name_end].to_string());
            if line[name_end..].starts_with('{') {
                let inner = &line[name_end + 1..line.rfind('}').expect("labels")];
                // Values are quoted and may hold commas: a key follows the start or `",`.
                for piece in inner.split("\",") {
                    labels.insert(piece.split('=').next().expect("key").to_string());
                }
            }
        }
    }
    for name in ["twtune_conntrack_entries", "twtune_conntrack_entries_limit", "twtune_time_wait_sockets"] {
        assert!(metrics.contains(name), "the fixtures do not export {name}");
    }
    // The rest, from the source: quoted names and the keys given to labels(&[...]).
    let source = repo_file("src/report/prometheus.rs");
    let quoted: BTreeSet<&str> = source.split('"').skip(1).step_by(2).collect();
    for name in LIVE_ONLY {
        assert!(quoted.contains(name), "{name} is no longer in src/report/prometheus.rs");
        metrics.insert((*name).to_string());
    }
    for name in
        quoted.iter().filter(|q| q.starts_with("twtune_") && q.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    {
        assert!(metrics.contains(*name), "{name} is in the source but neither exported by the fixtures nor live-only");
    }
    for line in source.lines().filter(|l| l.contains("labels(&[(")) {
        for tuple in line.split("(\"").skip(1) {
            labels.insert(tuple.split('"').next().expect("key").to_string());
        }
    }
    for key in ["source_ip", "protocol"] {
        assert!(labels.contains(key), "the source-NAT label {key} not found in the source");
    }
    let sweep = repo_file("src/report/sweep.rs");
    for key in ["netns", "netns_name", "container", "pod_uid"] {
        assert!(sweep.contains(&format!("((\"{key}\",")) || sweep.contains(&format!("[(\"{key}\",")), "{key}");
        labels.insert(key.to_string());
    }
    labels.extend(TARGET_LABELS.iter().map(|l| (*l).to_string()));
    (metrics, labels)
}

/// PromQL's functions and aggregations the dashboard may call.
const FUNCTIONS: &[&str] =
    &["sum", "max", "min", "avg", "count", "topk", "bottomk", "rate", "irate", "increase", "clamp_min", "time"];
/// PromQL's keywords; after the first four a parenthesised list of labels follows.
const KEYWORDS: &[&str] =
    &["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"];

/// The metric names and label names a PromQL expression uses; panics on a function it does not
/// know.
fn promql_names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        Paren,
        LabelList,
        Braces,
    }
    let chars: Vec<char> = expr.chars().collect();
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let mut stack: Vec<Ctx> = Vec::new();
    let mut grouping_keyword = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '[' => i += chars[i..].iter().position(|&c| c == ']').expect("]") + 1,
            '(' => {
                stack.push(if grouping_keyword { Ctx::LabelList } else { Ctx::Paren });
                grouping_keyword = false;
                i += 1;
            }
            '{' => {
                stack.push(Ctx::Braces);
                i += 1;
            }
            ')' | '}' => {
                stack.pop().expect("balanced");
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                match stack.last() {
                    Some(Ctx::Braces | Ctx::LabelList) => {
                        labels.insert(word);
                    }
                    _ if KEYWORDS.contains(&word.as_str()) => {
                        grouping_keyword = KEYWORDS[..6].contains(&word.as_str()) && next == Some('(');
                    }
                    // An aggregation may have its `by (...)` before its argument.
                    _ if FUNCTIONS.contains(&word.as_str()) => {}
                    _ => {
                        assert!(next != Some('('), "unknown function {word} in {expr}");
                        metrics.insert(word);
                    }
                }
            }
            _ => i += 1,
        }
    }
    assert!(stack.is_empty(), "unbalanced: {expr}");
    (metrics, labels)
}

#[test]
fn the_query_scanner_tells_metrics_labels_and_functions_apart() {
    let (metrics, labels) = promql_names(
        r#"sum by (instance, direction) (rate(a_total{netns=~"$netns", x="}(by"}[5m])) / on(pod_uid) group_left b > 0.5"#,
    );
    assert_eq!(metrics, BTreeSet::from(["a_total".to_string(), "b".to_string()]));
    assert_eq!(labels, ["direction", "instance", "netns", "pod_uid", "x"].map(String::from).into());
}

/// Every query of the dashboard: the panels' targets, then the variables' label_values(selector,
/// label) as (selector, label).
fn dashboard_queries(dashboard: &serde_json::Value) -> (Vec<String>, Vec<(String, String)>) {
    fn walk(panels: &serde_json::Value, exprs: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(target["expr"].as_str().expect("every target has an expr").to_string());
            }
            walk(&panel["panels"], exprs);
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard["panels"], &mut exprs);
    let mut variables = Vec::new();
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if variable["type"] == "query" {
            let query = variable["query"]["query"].as_str().expect("query");
            assert_eq!(variable["definition"].as_str(), Some(query));
            let inner = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect("label_values");
            let (selector, label) = inner.rsplit_once(',').expect("selector, label");
            variables.push((selector.trim().to_string(), label.trim().to_string()));
        }
    }
    (exprs, variables)
}

/// The query as Prometheus gets it: Grafana's variables replaced (each is inside a regex matcher
/// or a range).
fn substituted(expr: &str) -> String {
    let expr = expr.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$netns", ".*");
    assert!(!expr.contains('$'), "a variable the test does not know: {expr}");
    expr
}

#[test]
fn every_dashboard_query_uses_emitted_metrics_and_labels_and_parses() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/grafana-dashboard.json")).expect("deploy/grafana-dashboard.json");
    let (metrics, labels) = emitted();
    let (exprs, variables) = dashboard_queries(&dashboard);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let mut used = BTreeSet::new();
    let mut check = |expr: &str| {
        let (m, l) = promql_names(expr);
        assert!(!m.is_empty(), "no metric in {expr}");
        for name in &m {
            assert!(metrics.contains(name), "{name} is not a metric twtune emits: {expr}");
        }
        for label in &l {
            assert!(labels.contains(label), "{label} is not a label of twtune's series: {expr}");
        }
        used.extend(m);
    };
    exprs.iter().for_each(|e| check(e));
    for (selector, label) in &variables {
        check(selector);
        assert!(labels.contains(label), "the variable's label {label} is not emitted");
    }
    // The panels the issue asks for.
    for name in [
        "twtune_time_wait_sockets",
        "twtune_bucket_available_ports",
        "twtune_findings",
        "twtune_conntrack_entries",
        "twtune_conntrack_entries_limit",
        "twtune_snat_bucket_available_ports",
    ] {
        assert!(used.contains(name), "no panel shows {name}");
    }
    // Every panel reads the data source variable, and the variables used are defined.
    let defined: BTreeSet<&str> =
        dashboard["templating"]["list"].as_array().expect("list").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(defined, BTreeSet::from(["datasource", "instance", "netns"]));
    let text = serde_json::to_string(&dashboard["panels"]).expect("json");
    assert_eq!(
        text.matches("\"datasource\":{\"type\":\"prometheus\",\"uid\":\"${datasource}\"}").count(),
        text.matches("\"datasource\":").count(),
        "a panel or target not on the data source variable"
    );

    // Each query parses: as a recording rule under `promtool check rules` (JSON is YAML).
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .chain(variables.iter().map(|(selector, _)| selector))
        .enumerate()
        .map(
            |(i, expr)| serde_json::json!({"record": format!("twtune_dashboard:query_{i}"), "expr": substituted(expr)}),
        )
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string())
        .expect("write");
    let Ok(out) = Command::new("promtool").args(["check", "rules"]).arg(&file).output() else {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true but promtool is missing");
        eprintln!("SKIPPED: promtool is not installed");
        return;
    };
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
