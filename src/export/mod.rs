//! `twtune export`: the settings of a profile, or of the audit's recommendations, as an Ansible
//! playbook or role, a sysctl.d drop-in, JSON, or a Kubernetes Pod's `securityContext.sysctls`.
//! Pure: renders text from a list of [`Item`]s; the command writes it.
//!
//! An export means what `twtune apply` means. A profile's settings are mostly bounds ("at least
//! 16384 ports"), which a host may already meet in its own way. The Ansible exports judge each
//! host as apply does ([`jinja`]); a sysctl.d drop-in or JSON cannot read the host it lands on, so
//! they hold only the settings that are one value, and leave each bound out with a one-line reason,
//! unless made `--from-host` (what apply would change on the host read); a Kubernetes Pod starts
//! from the kernel's defaults, so its values are judged against those.
//!
//! Every value and name is written as a double-quoted scalar (JSON string syntax, which YAML
//! accepts), and every comment is folded to one line, so no text in a profile's `why` or `risk`
//! (colons, quotes, `#`, newlines, a leading `-`) can change the document's structure. Output has
//! no date, so that files committed to a repository change only when the settings do.

mod ansible;
mod jinja;

use std::collections::BTreeMap;

pub(crate) use ansible::AnsibleOptions;

use crate::error::Error;
use crate::profile::parse::{Bound, Setting};
use crate::profile::{Profile, Verdict, check, describe};
use crate::sysctl::fold_whitespace;
use crate::sysctl::keys::{KEYS, Settings, spec_of};

/// One setting to export.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub key: String,
    pub want: Want,
    pub why: String,
    pub risk: String,
    /// Only for kernels from this version (`"6.14"`): the key does not exist before.
    pub min_kernel: Option<String>,
    /// Only for kernels up to this version (`"4.11"`): the key does not exist after.
    pub max_kernel: Option<String>,
}

/// What an item asks of a host.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Want {
    /// This value (as the kernel prints it) wherever the key exists.
    Value(String),
    /// A profile's setting, judged on each host as apply judges it (the Ansible exports).
    Judged(Box<Setting>),
}

impl Item {
    /// An item setting `value` on every kernel.
    pub(crate) fn new(key: String, value: String, why: String, risk: String) -> Item {
        Item { key, want: Want::Value(value), why, risk, min_kernel: None, max_kernel: None }
    }

    /// An item of a profile's setting: the setting's kernel bounds, or the key's own lifetime where
    /// the profile does not say it.
    fn of_setting(key: &str, setting: &Setting, want: Want) -> Item {
        let spec = spec_of(key);
        Item {
            key: key.to_string(),
            want,
            why: fold_whitespace(&setting.why),
            risk: fold_whitespace(&setting.risk),
            min_kernel: setting.min_kernel.clone().or_else(|| spec.and_then(|s| s.since).map(|v| v.to_string())),
            max_kernel: setting.max_kernel.clone().or_else(|| spec.and_then(|s| s.until).map(|v| v.to_string())),
        }
    }

    /// The one value, where the item is one.
    pub(crate) fn value(&self) -> Option<&str> {
        match &self.want {
            Want::Value(value) => Some(value),
            Want::Judged(_) => None,
        }
    }

    /// What the item asks, in words: the value, or the setting described.
    fn wanted(&self) -> String {
        match &self.want {
            Want::Value(value) => value.clone(),
            Want::Judged(setting) => describe(&self.key, setting),
        }
    }

    /// Every text of the item that reaches a template: the key, the value or the setting's values.
    fn texts(&self) -> Vec<&str> {
        let mut texts = vec![self.key.as_str()];
        match &self.want {
            Want::Value(value) => texts.push(value),
            Want::Judged(s) => {
                let one_of = s.one_of.iter().flatten();
                let single = [&s.value, &s.recommend, &s.includes, &s.avoid].into_iter().flatten();
                texts.extend(one_of.chain(single).map(|t| t.0.as_str()));
            }
        }
        texts
    }

    fn kernel_bounded(&self) -> bool {
        self.min_kernel.is_some() || self.max_kernel.is_some()
    }

    /// An Ansible condition on the gathered kernel version, e.g.
    /// `ansible_facts.kernel is version('4.12', '<')`.
    fn ansible_condition(&self) -> String {
        let mut parts = Vec::new();
        if let Some(min) = &self.min_kernel {
            parts.push(format!("ansible_facts.kernel is version({}, '>=')", single_quoted(min)));
        }
        if let Some(max) = &self.max_kernel {
            // "4.11" must include 4.11.9: compare below the next minor version.
            parts.push(format!("ansible_facts.kernel is version({}, '<')", single_quoted(&next_minor(max))));
        }
        parts.join(" and ")
    }

    fn kernel_text(&self) -> String {
        match (&self.min_kernel, &self.max_kernel) {
            (Some(min), Some(max)) => format!("only on kernels {min} to {max}"),
            (Some(min), None) => format!("only on kernels from {min}"),
            (None, Some(max)) => format!("only on kernels up to {max}"),
            (None, None) => String::new(),
        }
    }
}

/// `"4.11"` -> `"4.12"`.
fn next_minor(version: &str) -> String {
    match crate::sysctl::KernelVersion::from_release(version) {
        Some(v) => format!("{}.{}", v.major, v.minor + 1),
        None => version.to_string(),
    }
}

/// A single-quoted YAML/Jinja string (versions hold no quotes; doubled if they ever do).
fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What is exported, and what could not be.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Export {
    /// `profile NAME` or `recommendations of the audit of HOST`.
    pub source: String,
    pub items: Vec<Item>,
    /// Keys left out, with why (shown as comments).
    pub skipped: Vec<(String, String)>,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// An Ansible playbook using ansible.posix.sysctl.
    Ansible,
    /// An Ansible role in a directory.
    AnsibleRole,
    /// A sysctl.d drop-in, loadable with `sysctl -p FILE`.
    SysctlD,
    /// An object from dotted key to value.
    Json,
    /// A pod securityContext.sysctls snippet with the sysctls Kubernetes treats as safe.
    K8s,
}

impl ExportFormat {
    /// Whether the format can read each host it is used on (and so judge a bound there).
    pub(crate) fn judges_each_host(self) -> bool {
        matches!(self, ExportFormat::Ansible | ExportFormat::AnsibleRole)
    }
}

impl Export {
    /// The export of an audit's recommendations for `host`.
    pub(crate) fn recommendations(host: &str, items: Vec<Item>) -> Export {
        Export { source: format!("the recommendations of an audit of {host}"), items, skipped: Vec::new() }
    }

    /// What `twtune apply` would change on `host` to meet `profile` (`--from-host`): `items` are
    /// the changes of the plan made from that host's current values.
    pub(crate) fn for_host(profile: &Profile, host: &str, items: Vec<Item>) -> Export {
        let outcome = if items.is_empty() { ", where it changes nothing: the host meets it" } else { "" };
        let source = format!("profile {} as apply would apply it on {host}{outcome}", profile.name);
        Export { source, items, skipped: Vec::new() }
    }

    /// Every setting of a resolved profile, as `format` can carry it.
    pub(crate) fn from_profile(profile: &Profile, format: ExportFormat) -> Export {
        let mut export = Export { source: format!("profile {}", profile.name), items: Vec::new(), skipped: Vec::new() };
        for (key, setting) in &profile.settings {
            let chosen = match format {
                ExportFormat::Ansible | ExportFormat::AnsibleRole => Ok(for_each_host(key, setting)),
                ExportFormat::SysctlD => for_a_file(key, setting),
                ExportFormat::Json => for_a_file(key, setting).and_then(unconditional),
                ExportFormat::K8s => for_a_new_pod(key, setting),
            };
            match chosen {
                Ok(item) => export.items.push(item),
                Err(why) => export.skipped.push((key.clone(), why)),
            }
        }
        export
    }

    /// The values as dotted key -> value (items that are one value).
    pub(crate) fn values(&self) -> BTreeMap<&str, &str> {
        self.items.iter().filter_map(|i| Some((i.key.as_str(), i.value()?))).collect()
    }
}

/// A setting that is exactly one value exports as that value; any other is judged on each host.
fn for_each_host(key: &str, setting: &Setting) -> Item {
    let want = match (&setting.value, needs_nothing_else(setting)) {
        (Some(value), true) => Want::Value(value.0.clone()),
        _ => Want::Judged(Box::new(setting.clone())),
    };
    Item::of_setting(key, setting, want)
}

/// Whether a setting with `value` has no other constraint (the parser allows none, but a profile
/// made in code might).
fn needs_nothing_else(setting: &Setting) -> bool {
    setting.one_of.is_none()
        && setting.min.is_none()
        && setting.max.is_none()
        && setting.min_size.is_none()
        && setting.includes.is_none()
        && setting.avoid.is_none()
        && !setting.different_parity
}

/// For a file that lands on hosts it cannot read: the setting's one value, or why it is left out.
fn for_a_file(key: &str, setting: &Setting) -> Result<Item, String> {
    match &setting.value {
        Some(value) if needs_nothing_else(setting) => Ok(Item::of_setting(key, setting, Want::Value(value.0.clone()))),
        _ => Err(format!(
            "a bound ({}), not one value, and a file cannot read the host it lands on: `--from-host` writes what \
             apply would set on this host; the Ansible exports judge each host",
            describe(key, setting)
        )),
    }
}

/// Refuses an item for some kernels only, in a format that carries no condition.
fn unconditional(item: Item) -> Result<Item, String> {
    if item.kernel_bounded() {
        return Err(format!("the key exists {}, and JSON carries no condition", item.kernel_text()));
    }
    Ok(item)
}

/// Keys that exist only in the host's initial network namespace: no pod can set them.
const NODE_ONLY: &[&str] =
    &["net.ipv4.tcp_max_orphans", "net.ipv4.tcp_mem", "net.ipv4.udp_mem", "net.netfilter.nf_conntrack_max"];

/// What a new pod needs: a pod's network namespace starts from the kernel's defaults, so the
/// setting is judged against the default, as apply would judge it in that namespace.
fn for_a_new_pod(key: &str, setting: &Setting) -> Result<Item, String> {
    if NODE_ONLY.contains(&key) {
        return Err("global to the node: set it on the node (it is not per network namespace), not in a pod".into());
    }
    if let Some(last) = setting.max_kernel.clone().or_else(|| spec_of(key).and_then(|s| s.until).map(|v| v.to_string()))
    {
        return Err(format!(
            "the key exists only up to Linux {last}, older than any kernel current Kubernetes runs on: a pod asking for \
             it would fail to start"
        ));
    }
    let defaults = Settings(KEYS.iter().map(|s| (s.name.to_string(), s.default.map(str::to_string))).collect());
    let Some(default) = spec_of(key).and_then(|s| s.default) else {
        let relative =
            matches!(setting.min, Some(Bound::KernelDefault)) || matches!(setting.max, Some(Bound::KernelDefault));
        return Err(if relative {
            "a bound on the kernel's default, which a new pod starts from: nothing to set".into()
        } else {
            "twtune does not know the default a new pod starts from, so it cannot judge the bound there".into()
        });
    };
    match check(key, setting, default, &defaults) {
        Verdict::Met => Err(format!("a new pod starts at {default:?}, which meets it ({})", describe(key, setting))),
        Verdict::Unknown(why) => Err(why),
        Verdict::Unmet { recommended: Some(value), .. }
            if spec_of(key).is_none_or(|s| s.check_value(&value).is_ok()) =>
        {
            Ok(Item::of_setting(key, setting, Want::Value(value)))
        }
        Verdict::Unmet { .. } => Err(format!(
            "a new pod's default {default:?} does not meet {}, and no one value to set follows from it",
            describe(key, setting)
        )),
    }
}

/// A double-quoted YAML scalar (JSON string syntax).
fn quoted(text: &str) -> String {
    crate::json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// `# text` on one line.
/// Text from the host or a profile made safe for a comment line: every run of white space
/// (line breaks of every kind included) folded to one space, and every other control character
/// shown as `?`, so that it can never end the comment and become code or a setting.
fn comment_text(text: &str) -> String {
    fold_whitespace(text).chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn comment(indent: &str, label: &str, text: &str) -> String {
    format!("{indent}# {label}{}\n", comment_text(text))
}

/// [`comment`] folded to lines of at most 80 columns, as yamllint wants them; later lines are
/// indented under the text after the label.
fn folded_comment(indent: &str, label: &str, text: &str) -> String {
    const WIDTH: usize = 80;
    let first = format!("{indent}# {label}");
    let rest = format!("{indent}#{}", " ".repeat(label.len() + 1));
    let mut out = String::new();
    let mut line = first.clone();
    let mut empty = true;
    for word in comment_text(text).split(' ').filter(|w| !w.is_empty()) {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.clone();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// `KEY: "value"` at `indent`, or, where that line would pass 80 columns, the value alone on the
/// next line of a folded block scalar: a line without a space is one yamllint lets run long (a
/// long port list). Values are checked plain before they get here (no leading space, no quote).
fn yaml_entry(indent: &str, key: &str, value: &str) -> String {
    let line = format!("{indent}{key}: {}", quoted(value));
    if line.chars().count() <= 80 || value.contains(' ') {
        format!("{line}\n")
    } else {
        format!("{indent}{key}: >-\n{indent}  {value}\n")
    }
}

/// The header of a YAML file: the document start, then the header comments, folded.
fn yaml_header(export: &Export, format: &str) -> String {
    let mut text = String::from("---\n");
    text.push_str(&folded_comment(
        "",
        "",
        &format!("{format} generated by twtune {} from {}.", env!("CARGO_PKG_VERSION"), comment_text(&export.source)),
    ));
    text.push_str("# Regenerate with `twtune export`; edits here are lost then.\n");
    for (key, why) in &export.skipped {
        text.push_str(&folded_comment("", "not exported: ", &format!("{key}: {why}")));
    }
    text
}

fn header(export: &Export, format: &str) -> String {
    let mut text = format!(
        "# {format} generated by twtune {} from {}.\n# Regenerate with `twtune export`; edits here are lost then.\n",
        env!("CARGO_PKG_VERSION"),
        comment_text(&export.source)
    );
    for (key, why) in &export.skipped {
        text.push_str(&comment("", "not exported: ", &format!("{key}: {why}")));
    }
    text
}

/// Refuses keys and values Ansible could evaluate: keys and values reach task names (templated)
/// and the read-back check (a Jinja expression), so only the characters a sysctl key or value is
/// made of are let through: letters, digits, space, tab and `. , - _ : / +`. A brace, a quote or a
/// backslash (`{{ lookup(...) }}`, `' ~ lookup(...) ~ '`) is refused.
pub(crate) fn check_ansible_safe(export: &Export) -> Result<(), Error> {
    let plain = |text: &str| text.chars().all(|c| c.is_ascii_alphanumeric() || " \t.,-_:/+".contains(c));
    let unsafe_text = export.items.iter().find_map(|i| i.texts().into_iter().find(|t| !plain(t)).map(|t| (i, t)));
    match unsafe_text {
        Some((item, text)) => Err(Error::Export(format!(
            "{}: {text:?} holds characters Ansible could evaluate (braces, quotes, backslashes); it cannot be exported \
             to Ansible",
            item.key
        ))),
        None => Ok(()),
    }
}

/// Refuses a value that is not one line of text: folded into a sysctl.d line or a YAML scalar it
/// would not mean what the profile says (a line break there could even carry a second setting).
fn check_values(export: &Export) -> Result<(), Error> {
    let broken = |t: &str| t.chars().any(|c| c.is_control() && c != '\t');
    match export.items.iter().find_map(|i| i.texts().into_iter().find(|t| broken(t)).map(|t| (i, t))) {
        Some((item, text)) => Err(Error::Export(format!(
            "{}: {text:?} holds a line break or a control character; a sysctl value is one line of text",
            item.key
        ))),
        None => Ok(()),
    }
}

/// What an export renders to: one text, or the files of a role (relative path, content).
pub(crate) enum Rendered {
    Text(String),
    Files(Vec<(&'static str, String)>),
}

/// Renders `export` in `format`, refusing what Ansible would run as a template.
pub(crate) fn render(export: &Export, format: ExportFormat, ansible: &AnsibleOptions) -> Result<Rendered, Error> {
    check_values(export)?;
    if format.judges_each_host() {
        check_ansible_safe(export)?;
    }
    Ok(match format {
        ExportFormat::Ansible => Rendered::Text(ansible::playbook(export, ansible)),
        ExportFormat::AnsibleRole => Rendered::Files(ansible::role(export, ansible)),
        ExportFormat::SysctlD => Rendered::Text(sysctl_d(export)),
        ExportFormat::Json => Rendered::Text(json(export)),
        ExportFormat::K8s => Rendered::Text(kubernetes(export)),
    })
}

/// A sysctl.d drop-in.
pub(crate) fn sysctl_d(export: &Export) -> String {
    let mut text = header(export, "sysctl.d drop-in");
    text.push_str("# Load with `sysctl -p FILE`, or place it in /etc/sysctl.d/.\n");
    // Only the Ansible formats carry judged items (`Export::from_profile`).
    for (item, value) in export.items.iter().filter_map(|i| Some((i, i.value()?))) {
        text.push('\n');
        text.push_str(&comment("", "why: ", &item.why));
        text.push_str(&comment("", "risk: ", &item.risk));
        if item.kernel_bounded() {
            // Left commented: `sysctl -p` fails on a key the kernel lacks, even with the - prefix
            // (procps 4.0.2 exits 1 though it prints nothing), and a drop-in has no conditions.
            text.push_str(&comment("", "", &format!("{}; uncomment it there:", item.kernel_text())));
            text.push_str(&format!("# {} = {value}\n", item.key));
        } else {
            text.push_str(&format!("{} = {value}\n", item.key));
        }
    }
    text
}

/// Version of `export --format json`; raised whenever a field changes meaning or disappears.
pub(crate) const JSON_SCHEMA_VERSION: u32 = 1;

/// The JSON export (docs/schema/export.json): where the settings come from, dotted key -> value,
/// and key -> why for each setting left out.
#[derive(serde::Serialize)]
struct JsonExport<'a> {
    schema_version: u32,
    source: &'a str,
    settings: BTreeMap<&'a str, &'a str>,
    left_out: BTreeMap<&'a str, &'a str>,
}

/// The export as one JSON object.
pub(crate) fn json(export: &Export) -> String {
    let document = JsonExport {
        schema_version: JSON_SCHEMA_VERSION,
        source: &export.source,
        settings: export.values(),
        left_out: export.skipped.iter().map(|(k, why)| (k.as_str(), why.as_str())).collect(),
    };
    crate::json::to_string_pretty(&document).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// Sysctls the kubelet allows in `securityContext.sysctls` by default, with the first Kubernetes
/// version that does (docs/kernel-model.md, "Namespaces").
const KUBERNETES_SAFE: &[(&str, &str)] = &[
    ("net.ipv4.ip_local_port_range", "all"),
    ("net.ipv4.ip_local_reserved_ports", "1.27"),
    ("net.ipv4.ip_unprivileged_port_start", "1.22"),
    ("net.ipv4.ping_group_range", "1.18"),
    ("net.ipv4.tcp_fin_timeout", "1.29"),
    ("net.ipv4.tcp_keepalive_intvl", "1.29"),
    ("net.ipv4.tcp_keepalive_probes", "1.29"),
    ("net.ipv4.tcp_keepalive_time", "1.29"),
    ("net.ipv4.tcp_rmem", "1.32"),
    ("net.ipv4.tcp_syncookies", "all"),
    ("net.ipv4.tcp_wmem", "1.32"),
];

/// A complete Pod manifest whose `spec.securityContext.sysctls` holds the safe sysctls (the rest
/// as comments saying what they need), valid against the Kubernetes schema as it is, so that it
/// can be applied to try or copied into a pod template.
pub(crate) fn kubernetes(export: &Export) -> String {
    // A YAML document as yamllint --strict wants it: a document start, lines of at most 80 columns.
    let mut text = yaml_header(export, "Kubernetes Pod");
    text.push_str(&folded_comment(
        "",
        "",
        "Pods get their own network namespace, which starts from kernel defaults: node settings do not reach \
         them. Copy spec.securityContext into your pod template (a Deployment's spec.template.spec), or apply this \
         Pod to try it.",
    ));
    let (safe, other): (Vec<&Item>, Vec<&Item>) =
        export.items.iter().partition(|i| KUBERNETES_SAFE.iter().any(|(k, _)| *k == i.key));
    for item in &other {
        let need = if let Some(last) = &item.max_kernel {
            format!(
                "the key exists only up to Linux {last}, older than any kernel current Kubernetes runs on: a pod asking \
                 for it would fail to start, so leave it out"
            )
        } else if NODE_ONLY.contains(&item.key.as_str()) {
            "global to the node: set it on the node (it is not per network namespace), not in a pod".into()
        } else {
            "not in Kubernetes' safe set: allowed in pods only where the kubelet runs with --allowed-unsafe-sysctls, or set on the node for hostNetwork pods".into()
        };
        text.push_str(&folded_comment("", "", &format!("{} = {}: {need}", item.key, item.wanted())));
    }
    text.push_str(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: twtune-sysctls\nspec:\n  securityContext:\n    sysctls:",
    );
    if safe.is_empty() {
        text.push_str(" []\n");
    } else {
        text.push('\n');
        for item in safe {
            let since = KUBERNETES_SAFE.iter().find(|(k, _)| *k == item.key).map_or("all", |(_, v)| v);
            if since != "all" {
                text.push_str(&folded_comment("      ", "", &format!("safe since Kubernetes {since}")));
            }
            text.push_str(&format!("      - name: {}\n        value: {}\n", quoted(&item.key), quoted(&item.wanted())));
        }
    }
    text.push_str("  containers:\n    - name: app\n      image: registry.k8s.io/pause:3.10\n");
    text
}

#[cfg(test)]
mod tests;
