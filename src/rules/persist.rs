//! Rules about the sysctl.d tree (the `persist.*` findings): what the next boot (or `sysctl --system`) will do to
//! the audited keys, keys set differently by several files, obsolete keys and malformed lines; and
//! what a finding comparing runtime values with the tree says in a network namespace that is not
//! the initial one. Pure: judges the [`Tree`](crate::sysctl_d::Tree) held by the inspection.

use serde_json::json;

use crate::inspect::Inspection;
use crate::rules::{Finding, Severity, finding};
use crate::sysctl::keys::spec_of;
use crate::sysctl_d::{Assignment, Resolution};

/// More malformed lines than this are summed up in the last finding.
const MAX_MALFORMED_FINDINGS: usize = 20;

/// Added to a finding that compares runtime values with the sysctl.d tree, in a network namespace
/// known not to be the initial one: at boot the tree sets the initial namespace only, so the
/// finding is about the host's namespace, and making the files agree with this namespace's values
/// would change the host's boot configuration.
const NOT_INITIAL_NAMESPACE: &str = "; this network namespace is not the initial one, and the sysctl.d files set the \
                                     host's initial namespace at boot, not this one: this concerns the host's namespace";

/// `finding` as it must read where the audited namespace is not the initial one (see
/// [`NOT_INITIAL_NAMESPACE`]), with the evidence field `namespace` saying so; unchanged in the
/// initial namespace and where that cannot be told.
pub(crate) fn concerning_the_host(inspection: &Inspection, mut finding: Finding) -> Finding {
    if inspection.initial_namespace == Some(false) {
        finding.message.push_str(NOT_INITIAL_NAMESPACE);
        finding.evidence.insert("namespace".into(), json!("not the initial network namespace"));
    }
    finding
}

pub(super) fn evaluate(inspection: &Inspection, out: &mut Vec<Finding>) {
    drift(inspection, out);
    conflicts(inspection, out);
    obsolete_keys(inspection, out);
    malformed(inspection, out);
}

/// `value (file:line)`, or `the kernel default` when no file sets the key.
fn describe(assignment: Option<&Assignment>) -> String {
    assignment
        .map_or("nothing (the kernel default stays)".to_string(), |a| format!("{} ({})", a.comparable(), a.place()))
}

fn assignment_json(a: Option<&Assignment>) -> serde_json::Value {
    a.map_or(serde_json::Value::Null, |a| json!({ "value": a.comparable(), "file": a.file, "line": a.line }))
}

/// The runtime value differs from what the next boot sets: the change will not survive a reboot, or
/// a file will undo it. Checked for the audited keys and any other key the inspection read.
fn drift(inspection: &Inspection, out: &mut Vec<Finding>) {
    for (key, runtime) in inspection.settings.0.iter().filter_map(|(k, v)| Some((k, v.as_deref()?))) {
        let r = inspection.sysctl_d.resolve(key);
        let Some(boot) = r.next_boot() else { continue };
        if boot.comparable() == runtime {
            continue;
        }
        let mut message =
            format!("{key} is {runtime:?} now, but the next boot sets {:?} ({})", boot.comparable(), boot.place());
        if r.orders_differ() {
            message.push_str(&format!("; `sysctl --system` would set {}", describe(r.procps.as_ref())));
        }
        let drift = finding(
            "persist.drift",
            Severity::Warn,
            message,
            "A reboot (or `sysctl --system`) changes this value back: decide which value is right, then make the \
             runtime and the file agree.",
        )
        .about(key, Some(runtime), None)
        .evidence(json!({
            "runtime": runtime,
            "systemd": assignment_json(r.systemd.as_ref()),
            "procps": assignment_json(r.procps.as_ref()),
        }));
        out.push(concerning_the_host(inspection, drift));
    }
}

/// A net key set to different values in several files; warn when the two boot orders end with
/// different values.
fn conflicts(inspection: &Inspection, out: &mut Vec<Finding>) {
    for key in inspection.sysctl_d.explicit_keys().iter().filter(|k| k.starts_with("net.")) {
        let r: Resolution = inspection.sysctl_d.resolve(key);
        let mut values: Vec<String> = r.all.iter().map(Assignment::comparable).collect();
        values.sort();
        values.dedup();
        if values.len() < 2 {
            continue;
        }
        let places: Vec<String> = r.all.iter().map(|a| format!("{} at {}", a.comparable(), a.place())).collect();
        let (severity, outcome) = if r.orders_differ() {
            (
                Severity::Warn,
                format!(
                    "systemd-sysctl ends with {} but `sysctl --system` with {}",
                    describe(r.systemd.as_ref()),
                    describe(r.procps.as_ref())
                ),
            )
        } else {
            (Severity::Info, format!("both boot orders end with {}", describe(r.next_boot())))
        };
        out.push(
            finding(
                "persist.conflict",
                severity,
                format!("{key} is set to different values in several files ({}): {outcome}", places.join(", ")),
                "Removing or aligning the losing assignments changes nothing at boot but makes the intent clear; \
                 if the two orders differ, the value depends on how sysctls are reloaded.",
            )
            .about(key, inspection.settings.get(key), None)
            .evidence(json!({
                "assignments": r.all,
                "systemd": assignment_json(r.systemd.as_ref()),
                "procps": assignment_json(r.procps.as_ref()),
            })),
        );
    }
}

/// Keys this kernel no longer has (tcp_tw_recycle since 4.12) still set in a file.
fn obsolete_keys(inspection: &Inspection, out: &mut Vec<Finding>) {
    let Some(version) = inspection.kernel_version else { return };
    for key in inspection.sysctl_d.explicit_keys() {
        let Some(spec) = spec_of(&key).filter(|s| !s.exists_in(version)) else { continue };
        let removed = spec.until.map_or(String::new(), |v| format!(" (removed after Linux {v})"));
        for a in inspection.sysctl_d.resolve(&key).all.iter().filter(|a| !a.glob) {
            // Measured with procps 4.0.2 and systemd 252 (docs/kernel-model.md, "Boot-time
            // configuration"): the boot tools go on, but `sysctl -p FILE` fails, with or without `-`.
            let systemd = if a.ignore_failure { "skips it quietly (- prefix)" } else { "logs a warning and goes on" };
            let consequence = format!(
                "at boot nothing breaks (`sysctl --system` skips it silently and exits 0, systemd-sysctl {systemd}), \
                 but `sysctl -p {}`, as configuration tools run to reload a file, exits 1 on it (cannot stat \
                 /proc/sys/{}), even with a - prefix",
                a.file,
                key.replace('.', "/")
            );
            // Dead configuration: nothing breaks at boot, so it is information, prefix or not.
            let severity = Severity::Info;
            out.push(
                finding(
                    "persist.obsolete-key",
                    severity,
                    format!(
                        "{} sets {key}, which kernel {} does not have{removed}: {consequence}",
                        a.place(),
                        inspection.kernel
                    ),
                    "None: the line has no effect on this kernel; remove it.",
                )
                .about(&key, None, None)
                .evidence(json!({ "file": a.file, "line": a.line, "ignore_failure": a.ignore_failure })),
            );
        }
    }
}

/// Lines of sysctl configuration files that neither tool can use.
fn malformed(inspection: &Inspection, out: &mut Vec<Finding>) {
    let problems = &inspection.sysctl_d.problems;
    for problem in problems.iter().take(MAX_MALFORMED_FINDINGS) {
        out.push(finding(
            "persist.malformed",
            Severity::Warn,
            format!("{problem}; the boot skips or misreads this line"),
            "None: fixing the line makes the file say what it means.",
        ));
    }
    if problems.len() > MAX_MALFORMED_FINDINGS {
        out.push(finding(
            "persist.malformed",
            Severity::Warn,
            format!("{} more malformed lines in sysctl configuration files", problems.len() - MAX_MALFORMED_FINDINGS),
            "None.",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Host, fixture};

    fn inspection(runtime: &[(&str, &str)]) -> Inspection {
        let host = Host::new().sysctl_d(&fixture("sysctl-trees/precedence"));
        runtime.iter().fold(host, |host, (key, value)| host.set(key, value)).inspection()
    }

    fn run(runtime: &[(&str, &str)]) -> Vec<Finding> {
        let mut out = Vec::new();
        evaluate(&inspection(runtime), &mut out);
        out
    }

    #[test]
    fn drift_names_the_file_that_will_undo_the_runtime_value() {
        let findings = run(&[("net.ipv4.tcp_keepalive_time", "7200"), ("net.ipv4.tcp_max_syn_backlog", "3000")]);
        let drift: Vec<&Finding> = findings.iter().filter(|f| f.id == "persist.drift").collect();
        assert_eq!(drift.len(), 1, "the key that agrees with its file is quiet");
        assert_eq!(
            drift[0].message,
            "net.ipv4.tcp_keepalive_time is \"7200\" now, but the next boot sets \"600\" (/etc/sysctl.d/10-common.conf:2)"
        );
        assert_eq!(drift[0].evidence["systemd"]["file"], "/etc/sysctl.d/10-common.conf");
    }

    #[test]
    fn drift_outside_the_initial_namespace_says_it_concerns_the_hosts() {
        let drift_in = |initial: Option<bool>| {
            let host = Host::new().sysctl_d(&fixture("sysctl-trees/precedence")).initial_namespace(initial);
            let mut out = Vec::new();
            evaluate(&host.set("net.ipv4.tcp_keepalive_time", "7200").inspection(), &mut out);
            out.into_iter().find(|f| f.id == "persist.drift").expect("drift")
        };
        let today = "net.ipv4.tcp_keepalive_time is \"7200\" now, but the next boot sets \"600\" \
                     (/etc/sysctl.d/10-common.conf:2)";
        // The initial namespace, and one that cannot be told (offline): exactly as before.
        for initial in [Some(true), None] {
            let f = drift_in(initial);
            assert_eq!(f.message, today, "{initial:?}");
            assert!(!f.evidence.contains_key("namespace"), "{initial:?}: {:?}", f.evidence);
        }
        let f = drift_in(Some(false));
        assert_eq!(
            f.message,
            format!(
                "{today}; this network namespace is not the initial one, and the sysctl.d files set the host's \
                 initial namespace at boot, not this one: this concerns the host's namespace"
            )
        );
        assert_eq!(f.evidence["namespace"], "not the initial network namespace");
        assert_eq!(f.evidence["systemd"]["file"], "/etc/sysctl.d/10-common.conf", "the rest of the evidence stays");
        assert_eq!((f.severity, f.key.as_deref()), (Severity::Warn, Some("net.ipv4.tcp_keepalive_time")));
    }

    #[test]
    fn findings_about_the_files_alone_read_the_same_in_any_namespace() {
        let in_namespace = |initial: Option<bool>| {
            let host = Host::new().sysctl_d(&fixture("sysctl-trees/precedence")).initial_namespace(initial);
            let mut out = Vec::new();
            evaluate(&host.inspection(), &mut out);
            out.into_iter().filter(|f| f.id != "persist.drift").map(|f| (f.id, f.message)).collect::<Vec<_>>()
        };
        let initial = in_namespace(Some(true));
        assert!(!initial.is_empty());
        assert_eq!(in_namespace(Some(false)), initial);
    }

    #[test]
    fn drift_mentions_procps_when_the_orders_differ() {
        let findings = run(&[("net.ipv4.tcp_fin_timeout", "60")]);
        let drift = findings.iter().find(|f| f.id == "persist.drift").expect("drift");
        assert!(drift.message.contains("next boot sets \"42\" (/etc/sysctl.d/zz-late.conf:2)"), "{}", drift.message);
        assert!(drift.message.contains("`sysctl --system` would set 41 (/etc/sysctl.conf:2)"), "{}", drift.message);
    }

    #[test]
    fn conflicting_files_are_named_with_both_outcomes() {
        let findings = run(&[]);
        let conflict = findings
            .iter()
            .find(|f| f.id == "persist.conflict" && f.key.as_deref() == Some("net.ipv4.tcp_fin_timeout"))
            .expect("conflict");
        assert_eq!(conflict.severity, Severity::Warn, "the orders end differently");
        assert!(conflict.message.contains("42 at /etc/sysctl.d/zz-late.conf:2"), "{}", conflict.message);
        assert!(conflict.message.contains("systemd-sysctl ends with 42"), "{}", conflict.message);
        assert!(
            !findings.iter().any(|f| f.id == "persist.conflict" && f.key.as_deref() == Some("net.core.somaxconn")),
            "the same value twice is no conflict"
        );
    }

    #[test]
    fn obsolete_tw_recycle_in_a_file() {
        let findings = run(&[]);
        let f = findings.iter().find(|f| f.id == "persist.obsolete-key").expect("obsolete");
        assert_eq!(f.severity, Severity::Info, "nothing breaks at boot");
        assert!(f.message.contains("`sysctl --system` skips it silently and exits 0"), "{}", f.message);
        assert!(f.message.contains("systemd-sysctl skips it quietly (- prefix)"), "{}", f.message);
        assert!(f.message.starts_with("/etc/sysctl.d/80-old.conf:2 sets net.ipv4.tcp_tw_recycle"), "{}", f.message);
    }

    #[test]
    fn malformed_lines_become_findings_naming_file_and_line() {
        let findings = run(&[]);
        let f = findings.iter().find(|f| f.id == "persist.malformed").expect("malformed");
        assert!(f.message.starts_with("/etc/sysctl.d/70-broken.conf:1: "), "{}", f.message);
    }

    #[test]
    fn boot_value_falls_back_to_the_kernel_default() {
        let i = inspection(&[]);
        let boot = |key: &str| i.sysctl_d.boot_value(key, &i.settings);
        assert_eq!(boot("net.ipv4.tcp_tw_reuse"), (Some("1".into()), "/etc/sysctl.d/70-broken.conf:2".into()));
        assert_eq!(boot("net.ipv4.tcp_timestamps"), (Some("1".into()), "the kernel default; no file sets it".into()));
        assert_eq!(boot("net.ipv4.tcp_rmem").0, None);
    }
}
