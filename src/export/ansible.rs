//! The Ansible exports: a playbook, or a role, that on each host reads the current values, keeps
//! those that meet the profile, and changes the others to what `twtune apply` would set there, at
//! runtime and in one sysctl.d file; then runs `sysctl --system` once so that every file is
//! honoured, and checks that the changed values held (a later file overriding one fails the play).
//!
//! Ansible templates names, arguments and conditions: only keys and values checked plain
//! (`check_ansible_safe`) reach them, and text from a profile or a host goes into comments only.

use super::jinja;
use super::{Export, Item, Want, comment_text, folded_comment, quoted, yaml_entry, yaml_header};

/// Options of the Ansible formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AnsibleOptions {
    pub hosts: String,
    pub sysctl_file: String,
}

/// How to install what the Ansible outputs need.
const COLLECTION_NOTE: &str = "Needs the ansible.posix collection (in the `ansible` package; or \
    `ansible-galaxy collection install ansible.posix`).";

/// What the tasks do, for the headers.
const WHAT_IT_DOES: &str = "On each host it reads the current values and changes only those outside the profile, to \
    what `twtune apply` would set there; a key the host's kernel lacks is never set.";

/// A playbook running the tasks of [`tasks`] on `options.hosts`.
pub(crate) fn playbook(export: &Export, options: &AnsibleOptions) -> String {
    let mut text = yaml_header(export, "Ansible playbook");
    text.push_str(&folded_comment("", "", COLLECTION_NOTE));
    text.push_str(&folded_comment("", "", WHAT_IT_DOES));
    // Ansible templates play and task names: no text from a host or a profile goes there (the
    // source is named in the header comment), only keys and values, which are checked plain.
    text.push_str("- name: \"TIME_WAIT and ephemeral-port settings (twtune)\"\n");
    // Facts (the kernel version) are needed only for settings that exist on some kernels only.
    let facts = export.items.iter().any(Item::kernel_bounded);
    text.push_str(&format!("  hosts: {}\n  become: true\n  gather_facts: {facts}\n", quoted(&options.hosts)));
    text.push_str("  vars:\n");
    text.push_str(&yaml_entry("    ", "twtune_sysctl_file", &options.sysctl_file));
    text.push_str("  tasks:\n");
    text.push_str(&tasks(export, "    "));
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

/// Every key the tasks read: the exported ones and those their choices depend on.
fn keys_read(export: &Export) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for item in &export.items {
        let extra = match &item.want {
            Want::Judged(setting) => jinja::also_reads(&item.key, setting),
            Want::Value(_) => Vec::new(),
        };
        for key in std::iter::once(item.key.as_str()).chain(extra) {
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

/// The tasks, at `indent`: read, choose each key, set what differs, reload, read back, check.
pub(crate) fn tasks(export: &Export, indent: &str) -> String {
    let mut text = read_tasks(export, indent);
    for item in &export.items {
        text.push_str(&choose_task(item, indent));
    }
    text.push_str(&set_and_check_tasks(indent));
    text
}

/// Reads each key from /proc/sys (a key the kernel lacks reads as absent, not as a failure) and
/// keeps the values found, whitespace folded as the kernel's tabs would not compare.
fn read_tasks(export: &Export, indent: &str) -> String {
    let mut text = format!(
        "{indent}- name: \"Read the current values\"\n{indent}  ansible.builtin.slurp:\n\
         {indent}    src: \"/proc/sys/{{{{ item | replace('.', '/') }}}}\"\n{indent}  loop:"
    );
    let keys = keys_read(export);
    text.push_str(if keys.is_empty() { " []\n" } else { "\n" });
    for key in keys {
        text.push_str(&format!("{indent}    - {}\n", quoted(&key)));
    }
    let found = format!("twtune_sysctl_read.results\n{indent}      | selectattr('content', 'defined')");
    text.push_str(&format!(
        "{indent}  register: twtune_sysctl_read\n{indent}  failed_when: false\n\
         {indent}- name: \"Keep the values of the keys this kernel has\"\n{indent}  ansible.builtin.set_fact:\n\
         {indent}    twtune_sysctl_current: >-\n{indent}      {{{{ dict({found}\n{indent}      | map(attribute='item')\n\
         {indent}      | zip({found}\n{indent}      | map(attribute='content') | map('b64decode')\n\
         {indent}      | map('split') | map('join', ' '))) }}}}\n{indent}    twtune_sysctl_targets: {{}}\n"
    ));
    text
}

/// The task that adds `item`'s key to the targets where its current value is not what apply
/// would leave it at.
fn choose_task(item: &Item, indent: &str) -> String {
    let key = &item.key;
    let mut text = folded_comment(indent, "why: ", &item.why);
    text.push_str(&folded_comment(indent, "risk: ", &item.risk));
    text.push_str(&format!("{indent}- name: {}\n", quoted(&format!("Choose {key}"))));
    text.push_str(&format!("{indent}  vars:\n{indent}    twtune_sysctl_choice: >-\n"));
    let lines = match &item.want {
        Want::Judged(setting) => jinja::choice(key, setting),
        Want::Value(value) => vec![value.clone()],
    };
    for line in lines {
        text.push_str(&wrapped(&format!("{indent}      "), &line));
    }
    let deeper = format!("{indent}      ");
    text.push_str(&format!("{indent}  ansible.builtin.set_fact:\n{indent}    twtune_sysctl_targets: >-\n"));
    let combine =
        format!("{{{{ twtune_sysctl_targets | combine({{'{key}': twtune_sysctl_choice | string | trim}}) }}}}");
    text.push_str(&wrapped(&deeper, &combine));
    text.push_str(&format!("{indent}  when:\n{indent}    - >-\n"));
    text.push_str(&wrapped(&deeper, &format!("'{key}' in twtune_sysctl_current")));
    if item.kernel_bounded() {
        text.push_str(&format!("{indent}    - {}\n", quoted(&item.ansible_condition())));
    }
    text.push_str(&format!("{indent}    - >-\n"));
    text.push_str(&wrapped(
        &deeper,
        &format!("twtune_sysctl_choice | string | trim != twtune_sysctl_current['{key}']"),
    ));
    text
}

/// `line` at `indent` in a folded YAML scalar, broken at spaces into lines of at most 80 columns
/// where it can be (folding joins them again with one space, and the values hold no runs of two).
fn wrapped(indent: &str, line: &str) -> String {
    let mut out = String::new();
    let mut current = indent.to_string();
    for word in line.split(' ') {
        if current.len() > indent.len() && current.len() + 1 + word.len() > 80 {
            out.push_str(&current);
            out.push('\n');
            current = indent.to_string();
        }
        if current.len() > indent.len() {
            current.push(' ');
        }
        current.push_str(word);
    }
    out.push_str(&current);
    out.push('\n');
    out
}

/// Sets the chosen values, reloads every sysctl file, reads the values back and checks them.
fn set_and_check_tasks(indent: &str) -> String {
    let targets = "\"{{ twtune_sysctl_targets | dict2items }}\"";
    format!(
        "{indent}- name: \"Set the values outside the profile, at runtime and in the file\"\n\
         {indent}  ansible.posix.sysctl:\n{indent}    name: \"{{{{ item.key }}}}\"\n{indent}    value: \"{{{{ item.value }}}}\"\n\
         {indent}    sysctl_file: \"{{{{ twtune_sysctl_file }}}}\"\n{indent}    sysctl_set: true\n{indent}    reload: false\n\
         {indent}    state: present\n{indent}  loop: {targets}\n{indent}  loop_control:\n{indent}    label: \"{{{{ item.key }}}}\"\n\
         {indent}  notify: \"Reload sysctl\"\n\
         {indent}- name: \"Apply every sysctl file now (so later files are honoured too)\"\n\
         {indent}  ansible.builtin.meta: flush_handlers\n\
         {indent}- name: \"Read the changed values back\"\n{indent}  ansible.builtin.slurp:\n\
         {indent}    src: \"/proc/sys/{{{{ item.key | replace('.', '/') }}}}\"\n{indent}  loop: {targets}\n\
         {indent}  loop_control:\n{indent}    label: \"{{{{ item.key }}}}\"\n{indent}  register: twtune_sysctl_runtime\n\
         {indent}- name: \"Check the runtime values\"\n{indent}  when: not ansible_check_mode\n{indent}  ansible.builtin.assert:\n\
         {indent}    that:\n{indent}      - >-\n{indent}        (item.content | b64decode).split() | join(' ')\n\
         {indent}        == item.item.value | string\n{indent}    fail_msg: >-\n\
         {indent}      {{{{ item.item.key }}}} is {{{{ item.content | b64decode | trim }}}}\n\
         {indent}      at runtime, not {{{{ item.item.value }}}}; another sysctl file may\n\
         {indent}      override it\n\
         {indent}  loop: \"{{{{ twtune_sysctl_runtime.results }}}}\"\n{indent}  loop_control:\n\
         {indent}    label: \"{{{{ item.item.key }}}}\"\n"
    )
}

/// The files of an Ansible role: path relative to the role directory, and content. Its variables
/// carry the role's name, `twtune_sysctl_`, as ansible-lint wants.
pub(crate) fn role(export: &Export, options: &AnsibleOptions) -> Vec<(&'static str, String)> {
    let handlers = format!(
        "---\n# The ansible.posix.sysctl module cannot run `sysctl --system`:\n# this handler does.\n{}",
        reload_handler("")
    );
    let requirements =
        "---\n# ansible-galaxy collection install -r requirements.yml\ncollections:\n  - name: ansible.posix\n    \
                        version: \">=1.5.0\"\n"
            .to_string();
    let mut defaults = yaml_header(export, "Ansible role defaults");
    defaults.push_str("# The sysctl.d file the changed values are kept in.\n");
    defaults.push_str(&yaml_entry("", "twtune_sysctl_file", &options.sysctl_file));
    vec![
        ("defaults/main.yml", defaults),
        ("tasks/main.yml", role_tasks(export)),
        ("handlers/main.yml", handlers),
        ("meta/main.yml", role_meta()),
        ("requirements.yml", requirements),
        ("README.md", role_readme(export, options)),
    ]
}

/// The role's `tasks/main.yml`: the kernel version where a setting depends on it, then [`tasks`].
fn role_tasks(export: &Export) -> String {
    let mut text = yaml_header(export, "Ansible role tasks");
    text.push_str(&folded_comment("", "", WHAT_IT_DOES));
    if export.items.iter().any(Item::kernel_bounded) {
        text.push_str(
            "- name: \"Gather the kernel version for settings that depend on it\"\n  ansible.builtin.setup:\n    \
             gather_subset:\n      - \"min\"\n",
        );
    }
    text.push_str(&tasks(export, ""));
    text
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
        "# twtune_sysctl\n\nGenerated by twtune {} from {}. {} The changed values are kept in `twtune_sysctl_file` \
         (default `{}`); then `sysctl --system` runs so that every sysctl file is honoured, and the changed values \
         are checked.\n\n\
         Needs the `ansible.posix` collection: it is in the `ansible` package, or install it with \
         `ansible-galaxy collection install -r roles/twtune_sysctl/requirements.yml`. Keep the directory name \
         `twtune_sysctl`: the role's variables carry it as their prefix.\n\n```yaml\n- name: TIME_WAIT and ephemeral-port settings\n  hosts: all\n  become: true\n  roles:\n    - twtune_sysctl\n```\n\n\
         | key | wanted | why |\n|---|---|---|\n{}",
        env!("CARGO_PKG_VERSION"),
        comment_text(&export.source),
        WHAT_IT_DOES,
        comment_text(&options.sysctl_file),
        export
            .items
            .iter()
            .map(|i| format!(
                "| `{}` | {} | {} |\n",
                i.key,
                comment_text(&i.wanted()).replace('|', "\\|"),
                comment_text(&i.why).replace('|', "\\|")
            ))
            .collect::<String>()
    )
}
