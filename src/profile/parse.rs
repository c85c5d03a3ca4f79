//! Profile files: YAML text to a validated [`ProfileFile`], with errors that name the file, the line
//! and the key. Pure over text: the caller reads the file.
//!
//! The YAML is parsed by serde-saphyr with a small budget (profiles are tiny), duplicate keys
//! rejected and YAML 1.1 booleans (`yes`, `on`) kept as strings, so `value: yes` is reported as
//! not a valid value instead of silently becoming `true`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::Spanned;

use crate::error::Error;
use crate::ports::{PortRange, PortSet};
use crate::rules::{Severity, Thresholds};
use crate::sysctl::keys::{KeySpec, Shape, spec_of};
use crate::sysctl::{KernelVersion, SysctlKey, fold_whitespace};

/// A value as the kernel prints it, whitespace folded. YAML integers and strings are both accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string such as \"32768 60999\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(fold_whitespace(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
                Err(E::custom("a boolean is not a sysctl value; write 0 or 1"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

impl Serialize for Text {
    /// Integers are written as YAML integers, everything else as strings.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.parse::<i64>() {
            Ok(n) => serializer.serialize_i64(n),
            Err(_) => serializer.serialize_str(&self.0),
        }
    }
}

/// A `min` or `max`: an integer, `default` (the kernel's computed default), or one bound per field
/// (`[1024, null]`) for multi-field keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Int(i64),
    KernelDefault,
    Fields(Vec<Option<i64>>),
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bound, D::Error> {
        struct BoundVisitor;
        impl<'de> Visitor<'de> for BoundVisitor {
            type Value = Bound;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, `default`, or a list with one integer or null per field")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bound, E> {
                Ok(Bound::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bound, E> {
                i64::try_from(v).map(Bound::Int).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bound, E> {
                match v.trim() {
                    "default" => Ok(Bound::KernelDefault),
                    other => other.parse().map(Bound::Int).map_err(|_| {
                        E::custom(format!("{v:?} is not a bound: use an integer, `default` or a list per field"))
                    }),
                }
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Bound, E> {
                Err(E::custom("a boolean is not a bound"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bound, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = seq.next_element::<Option<i64>>()? {
                    fields.push(field);
                }
                Ok(Bound::Fields(fields))
            }
        }
        deserializer.deserialize_any(BoundVisitor)
    }
}

impl Serialize for Bound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Bound::Int(n) => serializer.serialize_i64(*n),
            Bound::KernelDefault => serializer.serialize_str("default"),
            Bound::Fields(fields) => fields.serialize(serializer),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Int(n) => write!(f, "{n}"),
            Bound::KernelDefault => f.write_str("the kernel default"),
            Bound::Fields(fields) => {
                let parts: Vec<String> = fields.iter().map(|b| b.map_or("-".into(), |n| n.to_string())).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

/// One setting of a profile, as written in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Setting {
    /// Exactly this value. Excludes every other constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Text>,
    /// One of these values. Excludes bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Text>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Bound>,
    /// Range keys: at least this many ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u32>,
    /// Port-list keys: these ports must be in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Text>,
    /// Range keys: the range must not reach these ports, unless they are reserved
    /// (`ip_local_reserved_ports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avoid: Option<Text>,
    /// Range keys: the bounds must have different parity (so connect() and bind(0) draw apart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub different_parity: bool,
    /// The value to set when the expectation is not met (required with `min_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommend: Option<Text>,
    /// Why this value: shown in findings.
    pub why: String,
    /// What can go wrong: shown before apply.
    pub risk: String,
    /// Severity of the finding when the setting is not met (default warn).
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// The setting applies only on kernels from this version (`"6.14"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
    /// The setting applies only on kernels up to this version (`"4.11"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_kernel: Option<String>,
}

fn default_severity() -> Severity {
    Severity::Warn
}

/// Rule thresholds a profile may change; unset fields keep the parent's or the built-in value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThresholdOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_warn_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_crit_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_time_wait: Option<u64>,
}

impl ThresholdOverrides {
    /// `base` with these overrides applied.
    pub(crate) fn apply(&self, base: Thresholds) -> Thresholds {
        Thresholds {
            port_warn_pct: self.port_warn_pct.unwrap_or(base.port_warn_pct),
            port_crit_pct: self.port_crit_pct.unwrap_or(base.port_crit_pct),
            min_time_wait: self.min_time_wait.unwrap_or(base.min_time_wait),
        }
    }

    /// `self` over `parent`.
    pub(crate) fn over(&self, parent: &ThresholdOverrides) -> ThresholdOverrides {
        ThresholdOverrides {
            port_warn_pct: self.port_warn_pct.or(parent.port_warn_pct),
            port_crit_pct: self.port_crit_pct.or(parent.port_crit_pct),
            min_time_wait: self.min_time_wait.or(parent.min_time_wait),
        }
    }
}

/// A sysctl key in a profile, with where it was written.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct KeyName(Spanned<String>);

impl PartialEq for KeyName {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}
impl Eq for KeyName {}
impl PartialOrd for KeyName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KeyName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.value.cmp(&other.0.value)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Spanned<String>,
    description: String,
    #[serde(default)]
    extends: Option<Spanned<String>>,
    #[serde(default)]
    notes: Vec<String>,
    #[serde(default)]
    thresholds: Option<Spanned<ThresholdOverrides>>,
    #[serde(default)]
    settings: BTreeMap<KeyName, Setting>,
}

/// A profile file after validation, before `extends` is resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProfileFile {
    pub name: String,
    pub description: String,
    /// The parent's name and the line that names it.
    pub extends: Option<(String, u64)>,
    pub notes: Vec<String>,
    pub thresholds: ThresholdOverrides,
    pub settings: BTreeMap<String, Setting>,
}

/// Whether `name` can name a profile (and so a file in profiles.d): no path can hide in it.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Where an error is: `file`, `file:line` or `file:line:column`.
fn location(file: &str, line: u64, column: u64) -> String {
    match (line, column) {
        (0, _) => file.to_string(),
        (line, 0) => format!("{file}:{line}"),
        (line, column) => format!("{file}:{line}:{column}"),
    }
}

/// Parses and validates one profile. `file` names it in errors; `expected_name` is the file stem
/// when the name must equal it (shipped profiles and profiles.d).
pub(crate) fn parse_profile(text: &str, file: &str, expected_name: Option<&str>) -> Result<ProfileFile, Error> {
    let raw = parse_yaml(text, file)?;
    let at = |line: u64, message: String| Error::Profile { location: location(file, line, 0), message };

    let name = raw.name.value.trim().to_string();
    let name_line = raw.name.referenced.line();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err(at(name_line, format!("name {name:?} must be lower-case letters, digits, - and _")));
    }
    if let Some(stem) = expected_name
        && stem != name
    {
        return Err(at(name_line, format!("name {name:?} must equal the file name {stem:?}")));
    }
    if raw.description.trim().is_empty() {
        return Err(at(0, "description is empty".into()));
    }
    let thresholds = match raw.thresholds {
        Some(spanned) => {
            check_thresholds(&spanned.value).map_err(|m| at(spanned.referenced.line(), format!("thresholds: {m}")))?;
            spanned.value
        }
        None => ThresholdOverrides::default(),
    };
    let mut settings = BTreeMap::new();
    for (key, mut setting) in raw.settings {
        let line = key.0.referenced.line();
        let name = key.0.value;
        check_setting(&name, &setting).map_err(|m| at(line, format!("{name}: {m}")))?;
        canonicalize(&name, &mut setting);
        settings.insert(name, setting);
    }
    check_cross_keys(&settings).map_err(|m| at(0, m))?;
    let extends = raw.extends.map(|e| (e.value.trim().to_string(), e.referenced.line()));
    if let Some((parent, line)) = &extends
        && !valid_name(parent)
    {
        return Err(at(*line, format!("extends {parent:?}: a profile name is lower-case letters, digits, - and _")));
    }
    Ok(ProfileFile {
        name,
        description: raw.description.trim().to_string(),
        extends,
        notes: raw.notes,
        thresholds,
        settings,
    })
}

fn parse_yaml(text: &str, file: &str) -> Result<RawProfile, Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 16;
    budget.max_nodes = 20_000;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = 1 << 20;
    let options = serde_saphyr::options! { budget: Some(budget), strict_booleans: true, };
    serde_saphyr::from_str_with_options::<RawProfile>(text, options).map_err(|err| {
        let plain = err.without_snippet().to_string();
        let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = plain
            .strip_suffix(&format!(" at line {line}, column {column}"))
            .unwrap_or(&plain)
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        Error::Profile { location: location(file, line, column), message: yaml_message(&message) }
    })
}

/// Rewords the parser's messages where they speak to developers rather than to profile authors, and
/// keeps the file's own text out of them where it is not a plausible field name: `--profile` may
/// be given any file, and root's error must not print a line of /etc/shadow.
fn yaml_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let plausible =
            field.len() <= 64 && field.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plausible {
            return format!("not a profile: a top-level key is not a profile field{expected}");
        }
    }
    if message.starts_with("duplicate mapping key") {
        return message.replacen("duplicate mapping key", "duplicate key", 1);
    }
    if message.starts_with("budget breached: Documents") {
        return "a profile file holds one YAML document".into();
    }
    if message.starts_with("budget breached") {
        return format!("profile too large or too deeply nested ({message})");
    }
    message.to_string()
}

/// Puts the values of a known key in the form the kernel prints, so that what twtune writes reads
/// back equal.
fn canonicalize(key: &str, setting: &mut Setting) {
    let Some(spec) = spec_of(key) else { return };
    let fix = |text: &mut Text| text.0 = spec.canonical(&text.0);
    setting.value.iter_mut().chain(setting.recommend.iter_mut()).chain(setting.includes.iter_mut()).for_each(fix);
    setting.one_of.iter_mut().flatten().for_each(fix);
}

fn check_thresholds(t: &ThresholdOverrides) -> Result<(), String> {
    for (name, pct) in [("port_warn_pct", t.port_warn_pct), ("port_crit_pct", t.port_crit_pct)] {
        if let Some(pct) = pct
            && !(pct > 0.0 && pct <= 100.0)
        {
            return Err(format!("{name} {pct} must be above 0 and at most 100"));
        }
    }
    if let (Some(warn), Some(crit)) = (t.port_warn_pct, t.port_crit_pct)
        && warn > crit
    {
        return Err(format!("port_warn_pct {warn} is above port_crit_pct {crit}"));
    }
    Ok(())
}

fn check_setting(name: &str, setting: &Setting) -> Result<(), String> {
    let spec = check_key(name)?;
    check_combination(setting)?;
    if let Some(value) = &setting.value {
        check_text("value", value, spec)?;
    }
    if let Some(options) = &setting.one_of {
        if options.is_empty() {
            return Err("one_of is empty".into());
        }
        options.iter().try_for_each(|o| check_text("one_of", o, spec))?;
    }
    check_min_max(setting, spec)?;
    check_port_constraints(setting, spec)?;
    if let Some(recommend) = &setting.recommend {
        check_text("recommend", recommend, spec)?;
        if let Err(unmet) = static_check(name, setting, &recommend.0, &PortSet::default()) {
            return Err(format!("recommend {:?} does not meet the setting itself ({unmet})", recommend.0));
        }
    }
    if setting.why.trim().is_empty() {
        return Err("why is empty: say why this value".into());
    }
    if setting.risk.trim().is_empty() {
        return Err("risk is empty: say what can go wrong".into());
    }
    check_kernel_range(setting)
}

/// Checks that `name` is a sysctl name twtune may write, and returns what it knows of the key.
fn check_key(name: &str) -> Result<Option<&'static KeySpec>, String> {
    SysctlKey::parse(name).map_err(|e| match e {
        Error::InvalidKey { problem, .. } => format!("not a valid sysctl name: {problem}"),
        other => other.to_string(),
    })?;
    let spec = spec_of(name);
    if spec.is_some_and(|s| s.read_only) {
        return Err("the kernel does not allow writing this key".into());
    }
    Ok(spec)
}

/// Checks that a setting says something, and that `value`, `one_of` and the bounds are not mixed.
fn check_combination(e: &Setting) -> Result<(), String> {
    let bounds = e.min.is_some()
        || e.max.is_some()
        || e.min_size.is_some()
        || e.includes.is_some()
        || e.avoid.is_some()
        || e.different_parity;
    match (&e.value, &e.one_of, bounds) {
        (None, None, false) => {
            Err("says nothing: give value, one_of, min, max, min_size, includes, avoid or different_parity".into())
        }
        (Some(_), Some(_), _) | (Some(_), _, true) => Err("value cannot be combined with other constraints".into()),
        (_, Some(_), true) => Err("one_of cannot be combined with bounds".into()),
        _ => Ok(()),
    }
}

/// Checks one value of a setting (`what` names it in the message) against the key, if known.
fn check_text(what: &str, text: &Text, spec: Option<&KeySpec>) -> Result<(), String> {
    match spec {
        Some(spec) => spec.check_value(&text.0).map_err(|m| format!("{what}: {m}")),
        None if text.0.is_empty() => Err(format!("{what} is empty")),
        None => Ok(()),
    }
}

/// Checks `min` and `max` each, and that `min` is not above `max`.
fn check_min_max(e: &Setting, spec: Option<&KeySpec>) -> Result<(), String> {
    for (what, bound) in [("min", &e.min), ("max", &e.max)] {
        if let Some(bound) = bound {
            check_bound(what, bound, spec)?;
        }
    }
    if let (Some(Bound::Int(min)), Some(Bound::Int(max))) = (&e.min, &e.max)
        && min > max
    {
        return Err(format!("min {min} is above max {max}"));
    }
    if let (Some(Bound::Fields(min)), Some(Bound::Fields(max))) = (&e.min, &e.max)
        && min.iter().zip(max).any(|(a, b)| matches!((a, b), (Some(a), Some(b)) if a > b))
    {
        return Err("a field's min is above its max".into());
    }
    Ok(())
}

/// Checks the constraints only port keys take: `min_size`, `includes`, `avoid`, `different_parity`.
fn check_port_constraints(e: &Setting, spec: Option<&KeySpec>) -> Result<(), String> {
    let shape = spec.map(|s| s.shape);
    if let Some(size) = e.min_size {
        if shape != Some(Shape::PortRange) {
            return Err("min_size applies to port ranges only".into());
        }
        if !(1..=65535).contains(&size) {
            return Err(format!("min_size {size} is not between 1 and 65535"));
        }
        if e.recommend.is_none() {
            return Err("min_size needs a recommend value to set when the range is too small".into());
        }
    }
    if let Some(includes) = &e.includes {
        if shape != Some(Shape::PortList) {
            return Err("includes applies to port lists only".into());
        }
        PortSet::parse(&includes.0).map_err(|m| format!("includes: {m}"))?;
    }
    if let Some(avoid) = &e.avoid {
        if shape != Some(Shape::PortRange) {
            return Err("avoid applies to port ranges only".into());
        }
        PortSet::parse(&avoid.0).map_err(|m| format!("avoid: {m}"))?;
    }
    if e.different_parity && shape != Some(Shape::PortRange) {
        return Err("different_parity applies to port ranges only".into());
    }
    Ok(())
}

/// Checks that `min_kernel` and `max_kernel` are versions, the first not above the second.
fn check_kernel_range(setting: &Setting) -> Result<(), String> {
    let version = |what: &str, v: &Option<String>| -> Result<Option<KernelVersion>, String> {
        v.as_deref()
            .map(|text| {
                KernelVersion::from_release(text)
                    .ok_or_else(|| format!("{what} {text:?} is not a version like \"6.14\""))
            })
            .transpose()
    };
    if let (Some(low), Some(high)) =
        (version("min_kernel", &setting.min_kernel)?, version("max_kernel", &setting.max_kernel)?)
        && low > high
    {
        return Err(format!("min_kernel {low} is above max_kernel {high}"));
    }
    Ok(())
}

fn check_bound(what: &str, bound: &Bound, spec: Option<&KeySpec>) -> Result<(), String> {
    match (bound, spec) {
        (Bound::KernelDefault, Some(spec)) if spec.computed_default.is_some() => Ok(()),
        (Bound::KernelDefault, _) => Err(format!("{what}: twtune cannot compute the kernel default of this key")),
        (Bound::Int(n), Some(spec)) => match spec.shape {
            Shape::Int { .. } => spec.check_value(&n.to_string()).map_err(|m| format!("{what}: {m}")),
            _ => Err(format!("{what}: this key has several fields; give one bound per field, like [1024, null]")),
        },
        (Bound::Int(_), None) => Ok(()),
        (Bound::Fields(fields), Some(spec)) => match spec.field_count() {
            Some(count) if count > 1 && fields.len() == count => {
                let (low, high) = match spec.shape {
                    Shape::Ints { min, max, .. } => (min, max),
                    _ => (1, 65535),
                };
                match fields.iter().flatten().find(|n| !(low..=high).contains(*n)) {
                    Some(n) => Err(format!("{what}: {n} is outside {low}..{high}")),
                    None => Ok(()),
                }
            }
            Some(count) if count > 1 => {
                Err(format!("{what}: this key has {count} fields, the bound lists {}", fields.len()))
            }
            _ => Err(format!("{what}: this key has a single value; give a single bound")),
        },
        (Bound::Fields(_), None) => Err(format!("{what}: twtune does not know the fields of this key")),
    }
}

/// Whether `value` of `key` meets the constraints that need no running kernel (everything but
/// `default` bounds), given the ports reserved on the host (for `avoid`). `Err` says what is unmet.
pub(crate) fn static_check(key: &str, e: &Setting, value: &str, reserved: &PortSet) -> Result<(), String> {
    let value = fold_whitespace(value);
    if let Some(want) = &e.value
        && want.0 != value
    {
        return Err(format!("expected {}", want.0));
    }
    if let Some(options) = &e.one_of
        && !options.iter().any(|o| o.0 == value)
    {
        return Err(format!("expected one of {}", options.iter().map(|o| o.0.as_str()).collect::<Vec<_>>().join(", ")));
    }
    let fields: Vec<Option<i64>> = value.split_whitespace().map(|f| f.parse().ok()).collect();
    for (is_min, bound) in [(true, &e.min), (false, &e.max)] {
        let limits: Vec<Option<i64>> = match bound {
            Some(Bound::Int(n)) => vec![Some(*n)],
            Some(Bound::Fields(f)) => f.clone(),
            _ => continue,
        };
        for (index, (limit, field)) in limits.iter().zip(&fields).enumerate() {
            let (Some(limit), Some(field)) = (limit, field) else { continue };
            let unmet = if is_min { field < limit } else { field > limit };
            if unmet {
                let which = if limits.len() > 1 { format!("{} ", field_name(key, index)) } else { String::new() };
                return Err(format!("{which}{} {limit}", if is_min { "at least" } else { "at most" }));
            }
        }
    }
    if let Some(size) = e.min_size
        && PortRange::parse(&value).is_ok_and(|r| r.size() < size)
    {
        return Err(format!("at least {size} ports"));
    }
    if let Some(includes) = &e.includes
        && let (Ok(have), Ok(need)) = (PortSet::parse(&value), PortSet::parse(&includes.0))
        && need.iter().any(|p| !have.contains(p))
    {
        return Err(format!("including {}", includes.0));
    }
    if let Some(avoid) = &e.avoid
        && let (Ok(range), Ok(avoided)) = (PortRange::parse(&value), PortSet::parse(&avoid.0))
    {
        let clashing = (range.low..=range.high).filter(|p| avoided.contains(*p) && !reserved.contains(*p)).count();
        if clashing > 0 {
            return Err(format!("clear of {} ({clashing} ports of the range are neither clear nor reserved)", avoid.0));
        }
    }
    if e.different_parity && PortRange::parse(&value).is_ok_and(PortRange::same_parity) {
        return Err("bounds of different parity".into());
    }
    Ok(())
}

/// The name of field `index` of `key`'s value (`low`, `high`), or `field N`.
pub(crate) fn field_name(key: &str, index: usize) -> String {
    spec_of(key)
        .and_then(|spec| spec.field_names().get(index))
        .map_or_else(|| format!("field {}", index + 1), |name| (*name).to_string())
}

/// Rules between keys that the kernel enforces: the port range may not start below the
/// unprivileged port start.
pub(crate) fn check_cross_keys(settings: &BTreeMap<String, Setting>) -> Result<(), String> {
    let exact =
        |key: &str| settings.get(key).and_then(|s| s.value.as_ref().or(s.recommend.as_ref())).map(|t| t.0.clone());
    if let (Some(range), Some(start)) =
        (exact("net.ipv4.ip_local_port_range"), exact("net.ipv4.ip_unprivileged_port_start"))
        && let (Ok(range), Ok(start)) = (PortRange::parse(&range), start.parse::<i64>())
        && range.starts_below(start)
    {
        return Err(format!(
            "net.ipv4.ip_local_port_range starts at {} below net.ipv4.ip_unprivileged_port_start {start}; the kernel \
             refuses that",
            range.low
        ));
    }
    Ok(())
}
