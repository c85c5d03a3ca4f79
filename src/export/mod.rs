//! `twtune export`: the settings of a profile, or of the audit's recommendations, as an Ansible
//! playbook or role, a sysctl.d drop-in, JSON, or a Kubernetes pod `securityContext.sysctls`
//! snippet. Pure: renders text from a list of [`Item`]s; the command writes it.
//!
//! Every value and name is written as a double-quoted scalar (JSON string syntax, which YAML
//! accepts), and every comment is folded to one line, so no text in a profile's `why` or `risk`
//! (colons, quotes, `#`, newlines, a leading `-`) can change the document's structure. Output has
//! no date, so that files committed to a repository change only when the settings do.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::ports::PortSet;
use crate::profile::Profile;
use crate::profile::parse::{Bound, Setting, static_check};
use crate::sysctl::fold_whitespace;
use crate::sysctl::keys::spec_of;

/// One setting to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub key: String,
    /// As the kernel prints it (`"32768 60999"` for ranges).
    pub value: String,
    pub why: String,
    pub risk: String,
    /// Only for kernels from this version (`"6.14"`): the key does not exist before.
    pub min_kernel: Option<String>,
    /// Only for kernels up to this version (`"4.11"`): the key does not exist after.
    pub max_kernel: Option<String>,
}

impl Item {
    /// An item for every kernel.
    pub(crate) fn new(key: String, value: String, why: String, risk: String) -> Item {
        Item { key, value, why, risk, min_kernel: None, max_kernel: None }
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Options of the Ansible formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AnsibleOptions {
    pub hosts: String,
    pub sysctl_file: String,
}

/// The value a profile setting exports as: what a host without that value should be set to.
/// `None` when no single value can stand for the setting (a bound on the kernel's own default).
pub(crate) fn export_value(key: &str, setting: &Setting) -> Option<String> {
    if let Some(text) = setting.recommend.as_ref().or(setting.value.as_ref()) {
        return Some(text.0.clone());
    }
    if let Some(first) = setting.one_of.as_ref().and_then(|o| o.first()) {
        return Some(first.0.clone());
    }
    if let Some(includes) = &setting.includes {
        return PortSet::parse(&includes.0).ok().map(|set| set.to_string());
    }
    match (&setting.min, &setting.max) {
        (Some(Bound::Int(n)), _) | (None, Some(Bound::Int(n))) => return Some(n.to_string()),
        (Some(Bound::KernelDefault), _) | (_, Some(Bound::KernelDefault)) => return None,
        _ => {}
    }
    // Per-field bounds, sizes, avoided ports, parity: the kernel default, if it meets them.
    let default = spec_of(key)?.default?;
    static_check(key, setting, default, &PortSet::default()).ok().map(|()| default.to_string())
}

impl Export {
    /// The export of an audit's recommendations for `host`.
    pub(crate) fn recommendations(host: &str, items: Vec<Item>) -> Export {
        Export { source: format!("the recommendations of an audit of {host}"), items, skipped: Vec::new() }
    }

    /// Every setting of a resolved profile.
    pub(crate) fn from_profile(profile: &Profile) -> Export {
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for (key, setting) in &profile.settings {
            let spec = spec_of(key);
            match export_value(key, setting) {
                Some(value) => items.push(Item {
                    key: key.clone(),
                    value,
                    why: fold_whitespace(&setting.why),
                    risk: fold_whitespace(&setting.risk),
                    // The key's own lifetime counts even where the profile does not say it.
                    min_kernel: setting
                        .min_kernel
                        .clone()
                        .or_else(|| spec.and_then(|s| s.since).map(|v| v.to_string())),
                    max_kernel: setting
                        .max_kernel
                        .clone()
                        .or_else(|| spec.and_then(|s| s.until).map(|v| v.to_string())),
                }),
                None => skipped.push((
                    key.clone(),
                    "bounded by the kernel's own default, which depends on the host: left to the kernel".to_string(),
                )),
            }
        }
        Export { source: format!("profile {}", profile.name), items, skipped }
    }

    /// The values as dotted key -> value.
    pub(crate) fn values(&self) -> BTreeMap<&str, &str> {
        self.items.iter().map(|i| (i.key.as_str(), i.value.as_str())).collect()
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
    match export.items.iter().find(|i| !plain(&i.key) || !plain(&i.value)) {
        Some(item) => Err(Error::Export(format!(
            "{} = {:?} holds characters Ansible could evaluate (braces, quotes, backslashes); it cannot be exported \
             to Ansible",
            item.key, item.value
        ))),
        None => Ok(()),
    }
}

/// Refuses a value that is not one line of text: folded into a sysctl.d line or a YAML scalar it
/// would not mean what the profile says (a line break there could even carry a second setting).
fn check_values(export: &Export) -> Result<(), Error> {
    match export.items.iter().find(|i| i.value.chars().any(|c| c.is_control() && c != '\t')) {
        Some(item) => Err(Error::Export(format!(
            "{} = {:?} holds a line break or a control character; a sysctl value is one line of text",
            item.key, item.value
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
    if matches!(format, ExportFormat::Ansible | ExportFormat::AnsibleRole) {
        check_ansible_safe(export)?;
    }
    Ok(match format {
        ExportFormat::Ansible => Rendered::Text(ansible_playbook(export, ansible)),
        ExportFormat::AnsibleRole => Rendered::Files(ansible_role(export, ansible)),
        ExportFormat::SysctlD => Rendered::Text(sysctl_d(export)),
        ExportFormat::Json => Rendered::Text(json(export)),
        ExportFormat::K8s => Rendered::Text(kubernetes(export)),
    })
}

/// How to install what the Ansible outputs need.
const COLLECTION_NOTE: &str = "Needs the ansible.posix collection (in the `ansible` package; or \
    `ansible-galaxy collection install ansible.posix`).";

/// A playbook applying every item with ansible.posix.sysctl, running `sysctl --system` once so
/// that every sysctl file is honoured, then checking the runtime values: a file that overrides one
/// of them fails the play, as in the role.
pub(crate) fn ansible_playbook(export: &Export, options: &AnsibleOptions) -> String {
    let mut text = yaml_header(export, "Ansible playbook");
    text.push_str(&folded_comment("", "", COLLECTION_NOTE));
    // Ansible templates play and task names: no text from a host or a profile goes there (the
    // source is named in the header comment), only keys and values, which are checked plain.
    text.push_str("- name: \"TIME_WAIT and ephemeral-port settings (twtune)\"\n");
    // Facts (the kernel version) are needed only for settings that exist on some kernels only.
    let facts = export.items.iter().any(Item::kernel_bounded);
    text.push_str(&format!("  hosts: {}\n  become: true\n  gather_facts: {facts}\n", quoted(&options.hosts)));
    text.push_str("  vars:\n");
    text.push_str(&yaml_entry("    ", "twtune_sysctl_file", &options.sysctl_file));
    text.push_str("  tasks:\n");
    for item in &export.items {
        text.push_str(&folded_comment("    ", "why: ", &item.why));
        text.push_str(&folded_comment("    ", "risk: ", &item.risk));
        // The value is not in the name: a long one would not fit the line.
        text.push_str(&format!("    - name: {}\n", quoted(&format!("Set {}", item.key))));
        text.push_str("      ansible.posix.sysctl:\n");
        text.push_str(&format!("        name: {}\n", quoted(&item.key)));
        text.push_str(&yaml_entry("        ", "value", &item.value));
        text.push_str(
            "        sysctl_file: \"{{ twtune_sysctl_file }}\"\n        sysctl_set: true\n        reload: false\n        \
             state: present\n      notify: \"Reload sysctl\"\n",
        );
        if item.kernel_bounded() {
            text.push_str(&format!("      when: {}\n", quoted(&item.ansible_condition())));
        }
    }
    text.push_str("    - name: \"Apply every sysctl file now (so later files are honoured too)\"\n      ansible.builtin.meta: flush_handlers\n");
    // Settings for some kernels only are left out of the check; the tasks above report them.
    let checked: Vec<(String, String)> =
        export.items.iter().filter(|i| !i.kernel_bounded()).map(|i| (quoted(&i.key), quoted(&i.value))).collect();
    text.push_str(&verify_tasks("    ", &checked));
    text.push_str(&format!("  handlers:\n{}", reload_handler("    ")));
    text
}

/// The handler that runs `sysctl --system` (the sysctl module cannot): a reload always changes.
fn reload_handler(indent: &str) -> String {
    format!(
        "{indent}- name: \"Reload sysctl\"\n{indent}  ansible.builtin.command:\n{indent}    argv:\n\
         {indent}      - \"sysctl\"\n{indent}      - \"--system\"\n{indent}  changed_when: true\n"
    )
}

/// Tasks that read the runtime values back and fail unless they are the expected ones.
fn verify_tasks(indent: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut text = format!("{indent}- name: \"Read the runtime values back\"\n");
    text.push_str(&format!(
        "{indent}  ansible.builtin.command:\n{indent}    argv:\n{indent}      - \"sysctl\"\n{indent}      - \"-n\"\n"
    ));
    for (key, _) in pairs {
        text.push_str(&format!("{indent}      - {key}\n"));
    }
    // Reading runs in --check mode too; checking what a dry run did not set would only fail.
    text.push_str(&format!(
        "{indent}  register: twtune_sysctl_runtime\n{indent}  changed_when: false\n{indent}  check_mode: false\n"
    ));
    text.push_str(&format!(
        "{indent}- name: \"Check the runtime values\"\n{indent}  when: not ansible_check_mode\n{indent}  ansible.builtin.assert:\n{indent}    that:\n"
    ));
    // The expected value alone on its line, so that a long one is a line yamllint lets run long.
    for (index, (_, value)) in pairs.iter().enumerate() {
        text.push_str(&format!(
            "{indent}      - >-\n{indent}        (twtune_sysctl_runtime.stdout_lines[{index}].split() | join(' '))\n{indent}        ==\n{indent}        {}\n",
            value.replace('\\', "\\\\").replace('"', "'")
        ));
    }
    text.push_str(&format!(
        "{indent}    fail_msg: >-\n{indent}      a runtime value differs from what was set; another sysctl file\n{indent}      may override it\n"
    ));
    text
}

/// The files of an Ansible role: path relative to the role directory, and content. Its variables
/// carry the role's name, `twtune_sysctl_`, as ansible-lint wants.
pub(crate) fn ansible_role(export: &Export, options: &AnsibleOptions) -> Vec<(&'static str, String)> {
    let handlers = format!(
        "---\n# The ansible.posix.sysctl module cannot run `sysctl --system`:\n# this handler does.\n{}",
        reload_handler("")
    );
    let requirements =
        "---\n# ansible-galaxy collection install -r requirements.yml\ncollections:\n  - name: ansible.posix\n    \
                        version: \">=1.5.0\"\n"
            .to_string();
    vec![
        ("defaults/main.yml", role_defaults(export, options)),
        ("tasks/main.yml", role_tasks(export)),
        ("handlers/main.yml", handlers),
        ("meta/main.yml", role_meta()),
        ("requirements.yml", requirements),
        ("README.md", role_readme(export, options)),
    ]
}

/// The role's `defaults/main.yml`: the drop-in's path and the settings, those for some kernels only
/// apart.
fn role_defaults(export: &Export, options: &AnsibleOptions) -> String {
    let (bounded, everywhere): (Vec<&Item>, Vec<&Item>) = export.items.iter().partition(|i| i.kernel_bounded());
    let mut defaults = yaml_header(export, "Ansible role defaults");
    defaults.push_str(&yaml_entry("", "twtune_sysctl_file", &options.sysctl_file));
    defaults.push_str("twtune_sysctl_settings:");
    defaults.push_str(if everywhere.is_empty() { " {}\n" } else { "\n" });
    for item in &everywhere {
        defaults.push_str(&folded_comment("  ", "why: ", &item.why));
        defaults.push_str(&folded_comment("  ", "risk: ", &item.risk));
        defaults.push_str(&yaml_entry("  ", &quoted(&item.key), &item.value));
    }
    defaults.push_str(
        "# Settings for some kernel versions only (the key does not exist on the others).\ntwtune_sysctl_by_kernel:",
    );
    defaults.push_str(if bounded.is_empty() { " []\n" } else { "\n" });
    for item in &bounded {
        defaults.push_str(&folded_comment("  ", "why: ", &item.why));
        defaults.push_str(&folded_comment("  ", "risk: ", &item.risk));
        let version = |v: Option<String>| v.map_or("null".to_string(), |v| quoted(&v));
        defaults.push_str(&format!("  - name: {}\n", quoted(&item.key)));
        defaults.push_str(&yaml_entry("    ", "value", &item.value));
        defaults.push_str(&format!(
            "    min_kernel: {}\n    below_kernel: {}\n",
            version(item.min_kernel.clone()),
            version(item.max_kernel.as_deref().map(next_minor))
        ));
    }
    defaults
}

/// The role's `tasks/main.yml`: set, apply every sysctl file, read back and check.
fn role_tasks(export: &Export) -> String {
    let mut tasks = yaml_header(export, "Ansible role tasks");
    tasks.push_str(
        "- name: \"Set the sysctls in the drop-in and at runtime\"\n  ansible.posix.sysctl:\n    name: \"{{ item.key }}\"\n    \
         value: \"{{ item.value }}\"\n    sysctl_file: \"{{ twtune_sysctl_file }}\"\n    sysctl_set: true\n    reload: false\n    \
         state: present\n  loop: \"{{ twtune_sysctl_settings | dict2items }}\"\n  notify: \"Reload sysctl\"\n\
         - name: \"Gather the kernel version for settings that depend on it\"\n  ansible.builtin.setup:\n    gather_subset:\n      - \"min\"\n  \
         when: twtune_sysctl_by_kernel | length > 0\n\
         - name: \"Set the sysctls that exist on some kernels only\"\n  ansible.posix.sysctl:\n    name: \"{{ item.name }}\"\n    \
         value: \"{{ item.value }}\"\n    sysctl_file: \"{{ twtune_sysctl_file }}\"\n    sysctl_set: true\n    reload: false\n    \
         state: present\n  loop: \"{{ twtune_sysctl_by_kernel }}\"\n  loop_control:\n    label: \"{{ item.name }}\"\n  \
         when:\n    - >-\n      item.min_kernel is none\n      or ansible_facts.kernel is version(item.min_kernel, '>=')\n    \
         - >-\n      item.below_kernel is none\n      or ansible_facts.kernel is version(item.below_kernel, '<')\n  \
         notify: \"Reload sysctl\"\n\
         - name: \"Apply every sysctl file now (so later files are honoured too)\"\n  ansible.builtin.meta: flush_handlers\n\
         - name: \"Read the runtime values back\"\n  ansible.builtin.command:\n    argv:\n      - \"sysctl\"\n      - \"-n\"\n      \
         - \"{{ item.key }}\"\n  loop: \"{{ twtune_sysctl_settings | dict2items }}\"\n  register: twtune_sysctl_runtime\n  \
         changed_when: false\n  check_mode: false\n\
         - name: \"Check the runtime values\"\n  when: not ansible_check_mode\n  ansible.builtin.assert:\n    that:\n      - >-\n        \
         (item.stdout.split() | join(' ')) == (item.item.value | string)\n    fail_msg: >-\n      \
         {{ item.item.key }} is {{ item.stdout }} at runtime,\n      \
         not {{ item.item.value }}; another sysctl file may override it\n  loop: \"{{ twtune_sysctl_runtime.results }}\"\n  loop_control:\n    \
         label: \"{{ item.item.key }}\"\n",
    );
    tasks
}

/// The role's `meta/main.yml`, for Galaxy and ansible-lint.
fn role_meta() -> String {
    format!(
        "---\ngalaxy_info:\n  role_name: twtune_sysctl\n  author: twtune\n  description: {}\n  license: MIT\n  \
         min_ansible_version: \"2.15\"\n  platforms:\n    - name: Debian\n      versions:\n        - all\n    \
         - name: Ubuntu\n      versions:\n        - all\n    - name: EL\n      versions:\n        - all\n  \
         galaxy_tags:\n    - sysctl\n    - networking\ndependencies: []\n",
        quoted("TIME_WAIT and ephemeral-port sysctls (twtune)")
    )
}

/// The role's `README.md`: what it does, how to use it, and the settings.
fn role_readme(export: &Export, options: &AnsibleOptions) -> String {
    format!(
        "# twtune_sysctl\n\nGenerated by twtune {} from {}. Sets these sysctls at runtime and in `twtune_sysctl_file` \
         (default `{}`), runs `sysctl --system` so that every sysctl file is honoured, then checks the runtime values.\n\n\
         Needs the `ansible.posix` collection: it is in the `ansible` package, or install it with \
         `ansible-galaxy collection install -r roles/twtune_sysctl/requirements.yml`. Keep the directory name \
         `twtune_sysctl`: the role's variables carry it as their prefix.\n\n```yaml\n- name: TIME_WAIT and ephemeral-port settings\n  hosts: all\n  become: true\n  roles:\n    - twtune_sysctl\n```\n\n\
         | key | value | why |\n|---|---|---|\n{}",
        env!("CARGO_PKG_VERSION"),
        comment_text(&export.source),
        comment_text(&options.sysctl_file),
        export
            .items
            .iter()
            .map(|i| format!("| `{}` | `{}` | {} |\n", i.key, i.value, comment_text(&i.why).replace('|', "\\|")))
            .collect::<String>()
    )
}

/// A sysctl.d drop-in.
pub(crate) fn sysctl_d(export: &Export) -> String {
    let mut text = header(export, "sysctl.d drop-in");
    text.push_str("# Load with `sysctl -p FILE`, or place it in /etc/sysctl.d/.\n");
    for item in &export.items {
        text.push('\n');
        text.push_str(&comment("", "why: ", &item.why));
        text.push_str(&comment("", "risk: ", &item.risk));
        if item.kernel_bounded() {
            // Left commented: `sysctl -p` fails on a key the kernel lacks, even with the - prefix
            // (procps 4.0.2 exits 1 though it prints nothing), and a drop-in has no conditions.
            text.push_str(&comment("", "", &format!("{}; uncomment it there:", item.kernel_text())));
            text.push_str(&format!("# {} = {}\n", item.key, item.value));
        } else {
            text.push_str(&format!("{} = {}\n", item.key, item.value));
        }
    }
    text
}

/// Version of `export --format json`; raised whenever a field changes meaning or disappears.
pub(crate) const JSON_SCHEMA_VERSION: u32 = 1;

/// The JSON export (docs/schema/export.json): where the settings come from, and dotted key -> value.
#[derive(serde::Serialize)]
struct JsonExport<'a> {
    schema_version: u32,
    source: &'a str,
    settings: BTreeMap<&'a str, &'a str>,
}

/// The export as one JSON object.
pub(crate) fn json(export: &Export) -> String {
    let document =
        JsonExport { schema_version: JSON_SCHEMA_VERSION, source: &export.source, settings: export.values() };
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

/// Keys that exist only in the host's initial network namespace: no pod can set them.
const NODE_ONLY: &[&str] =
    &["net.ipv4.tcp_max_orphans", "net.ipv4.tcp_mem", "net.ipv4.udp_mem", "net.netfilter.nf_conntrack_max"];

/// A complete Pod manifest whose `spec.securityContext.sysctls` holds the safe sysctls (the rest
/// as comments saying what they need), valid against the Kubernetes schema as it is, so that it
/// can be applied to try or copied into a pod template.
pub(crate) fn kubernetes(export: &Export) -> String {
    let mut text = header(export, "Kubernetes Pod");
    text.push_str(
        "# Pods get their own network namespace, which starts from kernel defaults: node settings do not reach them.\n\
         # Copy spec.securityContext into your pod template (a Deployment's spec.template.spec), or apply this Pod to try it.\n",
    );
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
        text.push_str(&comment("", "", &format!("{} = {}: {need}", item.key, item.value)));
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
                text.push_str(&comment("      ", "", &format!("safe since Kubernetes {since}")));
            }
            text.push_str(&format!("      - name: {}\n        value: {}\n", quoted(&item.key), quoted(&item.value)));
        }
    }
    text.push_str("  containers:\n    - name: app\n      image: registry.k8s.io/pause:3.10\n");
    text
}

#[cfg(test)]
mod tests;
