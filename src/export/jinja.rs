//! A profile setting as a Jinja template that makes, on each host, the choice `twtune apply` makes
//! there: rendered with `twtune_sysctl_current` (dotted key -> the value as the kernel prints it,
//! whitespace folded), it gives the current value when that meets the setting, else the value
//! apply would set (lists merged, a range moved off avoided ports, fields clamped to their bounds),
//! or the current value again where apply would set nothing.
//!
//! It mirrors `crate::profile::check` and `recommended` constraint by constraint; the differential
//! test in tests/integration/export.rs runs both on the real kernel and compares what they leave.
//! What apply also weighs and a playbook cannot see (the listening sockets that decide whether a
//! narrow range may still lose reserved ports) is left out; docs/profiles.md says so.
//!
//! Every literal put into a template is checked plain before (`check_ansible_safe`): digits,
//! letters, spaces and `.,-_:/+`, so none can end a string or open a tag.

use crate::ports::PortSet;
use crate::profile::parse::{Bound, Setting};
use crate::sysctl::keys::{ComputedDefault, Shape, spec_of};

/// Keys whose current value a template of `setting` reads besides its own.
pub(crate) fn also_reads(key: &str, setting: &Setting) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if setting.avoid.is_some() {
        keys.push(RESERVED);
    }
    if needs_default(setting) && spec_of(key).and_then(|s| s.computed_default).is_some() {
        keys.push(EHASH);
    }
    keys
}

const RESERVED: &str = "net.ipv4.ip_local_reserved_ports";
const EHASH: &str = "net.ipv4.tcp_ehash_entries";

fn needs_default(setting: &Setting) -> bool {
    matches!(setting.min, Some(Bound::KernelDefault)) || matches!(setting.max, Some(Bound::KernelDefault))
}

/// The template choosing `key`'s value on a host, one statement per line (for a folded YAML
/// scalar: every tag trims the white space around it).
pub(crate) fn choice(key: &str, setting: &Setting) -> Vec<String> {
    let mut lines = vec![
        format!("{{%- set cur = twtune_sysctl_current['{key}'] | default('') -%}}"),
        "{%- set f = cur.split() | map('int') | list -%}".to_string(),
    ];
    let mut met = Vec::new();
    if let Some(value) = &setting.value {
        met.push(format!("cur == '{}'", value.0));
    }
    if let Some(options) = &setting.one_of {
        let list: Vec<String> = options.iter().map(|o| format!("'{}'", o.0)).collect();
        met.push(format!("cur in [{}]", list.join(", ")));
    }
    met.extend(bound_checks(setting));
    if let Some(size) = setting.min_size {
        met.push(format!("(f | length != 2 or f[1] - f[0] + 1 >= {size})"));
    }
    if setting.different_parity {
        met.push("(f | length != 2 or f[0] % 2 != f[1] % 2)".into());
    }
    if let Some(includes) = &setting.includes {
        lines.extend(union_statements(&includes.0));
        met.push("union == cur".into());
    }
    if let Some(avoid) = &setting.avoid {
        lines.extend(clash_statements(&avoid.0));
        met.push("clash == 0".into());
    }
    if needs_default(setting) {
        lines.extend(default_statements(key));
        // Where the default cannot be computed, apply judges nothing and changes nothing.
        met = vec![format!("dflt is none or ({})", if met.is_empty() { "true".into() } else { met.join(" and ") })];
    }
    if met.is_empty() {
        met.push("true".into());
    }
    if needs_default(setting) {
        // Clamping to an unknown default would fail to render; apply sets nothing then.
        lines.push("{%- set rec = none -%}{%- if dflt is not none -%}".into());
        lines.extend(recommendation(key, setting));
        lines.push("{%- endif -%}".into());
    } else {
        lines.extend(recommendation(key, setting));
    }
    // One line: a line break after `}}` would fold into a space that ansible-lint asks to drop.
    lines.push(format!(
        "{{%- if {} -%}}{{{{ cur }}}}{{%- elif rec is not none -%}}{{{{ rec }}}}{{%- else -%}}{{{{ cur }}}}{{%- endif -%}}",
        met.join(" and ")
    ));
    lines
}

/// `min` and `max` as conditions on the fields `f` (a bound on a field the value lacks is met, as
/// in `static_check`); a bound on the kernel default uses `dflt`.
fn bound_checks(setting: &Setting) -> Vec<String> {
    let mut checks = Vec::new();
    for (op, bound) in [(">=", &setting.min), ("<=", &setting.max)] {
        let limits: Vec<(usize, String)> = match bound {
            Some(Bound::Int(n)) => vec![(0, n.to_string())],
            Some(Bound::Fields(fields)) => {
                fields.iter().enumerate().filter_map(|(i, f)| f.map(|n| (i, n.to_string()))).collect()
            }
            Some(Bound::KernelDefault) => vec![(0, "dflt".to_string())],
            None => Vec::new(),
        };
        for (index, limit) in limits {
            checks.push(format!("(f | length <= {index} or f[{index}] {op} {limit})"));
        }
    }
    checks
}

/// Sets `dflt` to the kernel's computed default of `key` (half the established hash, or the SYN
/// backlog's share of it), `none` where the hash size is unknown (before Linux 6.1, or 0).
fn default_statements(key: &str) -> Vec<String> {
    let computed = match spec_of(key).and_then(|s| s.computed_default) {
        Some(ComputedDefault::HalfEhash) => "eh // 2",
        Some(ComputedDefault::SynBacklog) => "[eh // 128, 128] | max",
        None => "none",
    };
    vec![
        format!("{{%- set eh = twtune_sysctl_current['{EHASH}'] | default('0') | int | abs -%}}"),
        format!("{{%- set dflt = none if eh == 0 else ({computed}) -%}}"),
    ]
}

/// Parses the port list in the Jinja expression `text` into sorted, merged intervals in `NS.out`,
/// and their text as the kernel prints it (`9100,30000-32767`) in `NS.text`.
fn intervals(ns: &str, text: &str) -> Vec<String> {
    vec![
        format!("{{%- set {ns} = namespace(iv=[], out=[], parts=[]) -%}}"),
        format!("{{%- for part in ({text}).split(',') if part | trim -%}}"),
        "{%- set b = part.split('-') -%}".into(),
        format!("{{%- set {ns}.iv = {ns}.iv + [[b[0] | int, b[-1] | int]] -%}}"),
        "{%- endfor -%}".into(),
        format!("{{%- for r in {ns}.iv | sort -%}}"),
        format!("{{%- if {ns}.out and r[0] <= {ns}.out[-1][1] + 1 -%}}"),
        format!("{{%- set {ns}.out = {ns}.out[:-1] + [[{ns}.out[-1][0], [{ns}.out[-1][1], r[1]] | max]] -%}}"),
        format!("{{%- else -%}}{{%- set {ns}.out = {ns}.out + [r] -%}}{{%- endif -%}}"),
        "{%- endfor -%}".into(),
        format!("{{%- for r in {ns}.out -%}}"),
        format!("{{%- set {ns}.parts = {ns}.parts + [r[0] | string if r[0] == r[1] else r[0] ~ '-' ~ r[1]] -%}}"),
        "{%- endfor -%}".into(),
    ]
}

/// Sets `union` to the current list with `includes` added, as the kernel would print it.
fn union_statements(includes: &str) -> Vec<String> {
    let mut lines = intervals("u", &format!("cur ~ ',' ~ '{includes}'"));
    lines.push("{%- set union = u.parts | join(',') -%}".into());
    lines
}

/// Sets `clash` to the number of ports of the current range that are in `avoid` and not reserved
/// (reserved lists as the kernel prints them hold disjoint intervals), by interval arithmetic.
fn clash_statements(avoid: &str) -> Vec<String> {
    let mut lines = intervals("rs", &format!("twtune_sysctl_current['{RESERVED}'] | default('')"));
    lines.push("{%- set c = namespace(n=0) -%}".into());
    for (low, high) in runs(avoid) {
        lines.push(format!("{{%- set lo = [f[0], {low}] | max -%}}{{%- set hi = [f[1], {high}] | min -%}}"));
        lines.push("{%- if f | length == 2 and lo <= hi -%}{%- set c.n = c.n + hi - lo + 1 -%}".into());
        lines.push("{%- for r in rs.out -%}".into());
        lines.push("{%- set o = ([hi, r[1]] | min) - ([lo, r[0]] | max) + 1 -%}".into());
        lines.push("{%- set c.n = c.n - ([o, 0] | max) -%}".into());
        lines.push("{%- endfor -%}{%- endif -%}".into());
    }
    lines.push("{%- set clash = c.n -%}".into());
    lines
}

/// The intervals of a port list known when the template is made.
fn runs(text: &str) -> Vec<(u16, u16)> {
    let Ok(set) = PortSet::parse(text) else { return Vec::new() };
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for port in set.iter() {
        match runs.last_mut() {
            Some((_, high)) if u32::from(*high) + 1 == u32::from(port) => *high = port,
            _ => runs.push((port, port)),
        }
    }
    runs
}

/// Sets `rec` to the value apply would set where the setting is unmet, or `none`: the profile's
/// own value, the first allowed one, the list with the missing ports, the range moved off the
/// avoided ports, or the fields clamped to their bounds (as `crate::profile::recommended`).
fn recommendation(key: &str, setting: &Setting) -> Vec<String> {
    if let Some(text) = setting.recommend.as_ref().or(setting.value.as_ref()) {
        return vec![format!("{{%- set rec = '{}' -%}}", text.0)];
    }
    if let Some(first) = setting.one_of.as_ref().and_then(|o| o.first()) {
        return vec![format!("{{%- set rec = '{}' -%}}", first.0)];
    }
    if setting.includes.is_some() {
        return vec!["{%- set rec = union -%}".into()];
    }
    if let Some(avoid) = &setting.avoid {
        return moved_range(avoid);
    }
    clamped(key, setting)
}

/// The range moved off the avoided ports, keeping the side with room and bounds of different
/// parity; `none` when the avoided ports sit at both ends.
fn moved_range(avoid: &crate::profile::parse::Text) -> Vec<String> {
    let runs = runs(&avoid.0);
    let (Some(first), Some(last)) = (runs.first().map(|r| r.0), runs.last().map(|r| r.1)) else {
        return vec!["{%- set rec = none -%}".into()];
    };
    vec![
        "{%- set m = none -%}".into(),
        format!("{{%- if f | length == 2 and f[1] > {last} -%}}{{%- set m = [[f[0], {}] | max, f[1]] -%}}", last + 1),
        format!(
            "{{%- elif f | length == 2 and f[0] < {first} -%}}{{%- set m = [f[0], [f[1], {}] | min] -%}}{{%- endif -%}}",
            first.saturating_sub(1)
        ),
        "{%- if m is not none and m[0] % 2 == m[1] % 2 and m[1] > m[0] -%}{%- set m = [m[0], m[1] - 1] -%}{%- endif -%}"
            .into(),
        "{%- set rec = none if m is none else m[0] ~ ' ' ~ m[1] -%}".into(),
    ]
}

/// The current fields clamped to the setting's bounds; a range turned upside down is no value to
/// set (the kernel would refuse it), as apply leaves it.
fn clamped(key: &str, setting: &Setting) -> Vec<String> {
    let spec = spec_of(key);
    let count = match spec.map(|s| s.shape) {
        Some(Shape::Int { .. }) => 1,
        Some(Shape::Ints { count, .. }) => count,
        Some(Shape::PortRange) => 2,
        Some(Shape::PortList) | None => return vec!["{%- set rec = none -%}".into()],
    };
    let limit = |bound: &Option<Bound>, index: usize| match bound {
        Some(Bound::Int(n)) if index == 0 => Some(n.to_string()),
        Some(Bound::KernelDefault) if index == 0 => Some("dflt".to_string()),
        Some(Bound::Fields(f)) => f.get(index).copied().flatten().map(|n| n.to_string()),
        _ => None,
    };
    let fields: Vec<String> = (0..count)
        .map(|index| {
            let mut field = format!("f[{index}]");
            if let Some(min) = limit(&setting.min, index) {
                field = format!("[{field}, {min}] | max");
            }
            if let Some(max) = limit(&setting.max, index) {
                field = format!("[{field}, {max}] | min");
            }
            field
        })
        .collect();
    let valid = if count == 2 && matches!(spec.map(|s| s.shape), Some(Shape::PortRange)) {
        "k | length == 2 and k[0] <= k[1]".to_string()
    } else {
        format!("k | length == {count}")
    };
    vec![
        format!("{{%- set k = [] if f | length != {count} else [{}] -%}}", fields.join(", ")),
        format!("{{%- set rec = (k | map('string') | join(' ')) if {valid} else none -%}}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_the_intervals_of_a_port_list() {
        assert_eq!(runs("30000-32767,9100,9101"), vec![(9100, 9101), (30000, 32767)]);
        assert_eq!(runs(""), Vec::new());
    }
}
