//! Tuning profiles: what a host of a given role should have, and the findings for each setting it
//! does not meet.
//!
//! [`parse`] turns one YAML file into a validated [`parse::ProfileFile`]; [`catalog`] finds
//! profiles (built in, `/etc/twtune/profiles.d`, or a path) and resolves `extends`; this module
//! holds the resolved [`Profile`] and judges an [`Inspection`] against it. Judging is pure.

pub(crate) mod catalog;
pub(crate) mod json;
pub(crate) mod parse;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::inspect::Inspection;
use crate::ports::{PortRange, PortSet};
use crate::rules::{Finding, MIN_USABLE_PORTS, Thresholds, concerning_the_host};
use crate::sysctl::keys::Settings;
use crate::sysctl::keys::spec_of;
use crate::sysctl::{KernelVersion, fold_whitespace};
use parse::{Bound, Setting, ThresholdOverrides, field_name, static_check};

/// A profile with its `extends` chain merged: a child's setting replaces its parent's for the same
/// key, threshold overrides stack, notes accumulate parent first.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Profile {
    pub name: String,
    pub description: String,
    /// `built-in` or the file it was read from.
    pub source: String,
    /// This profile's name, then its parent's, and so on.
    pub chain: Vec<String>,
    pub notes: Vec<String>,
    pub thresholds: ThresholdOverrides,
    pub settings: BTreeMap<String, Setting>,
    /// Key -> name of the profile in the chain that set it.
    pub origin: BTreeMap<String, String>,
}

/// The resolved profile as YAML shows it (`twtune profiles show`): the input format, with `extends`
/// already applied.
#[derive(Serialize)]
struct ProfileDocument<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
    #[serde(skip_serializing_if = "is_default_thresholds")]
    thresholds: &'a ThresholdOverrides,
    settings: &'a BTreeMap<String, Setting>,
}

fn is_default_thresholds(t: &&ThresholdOverrides) -> bool {
    **t == ThresholdOverrides::default()
}

impl Profile {
    /// The resolved profile as YAML, with a comment naming its sources.
    pub(crate) fn to_yaml(&self) -> String {
        let document = ProfileDocument {
            name: &self.name,
            description: &self.description,
            notes: &self.notes,
            thresholds: &self.thresholds,
            settings: &self.settings,
        };
        let body = serde_saphyr::to_string(&document).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        format!("# profile {} ({}), resolved from: {}\n{body}", self.name, self.source, self.chain.join(" <- "))
    }

    /// The rule thresholds with this profile's overrides.
    pub(crate) fn thresholds(&self) -> Thresholds {
        self.thresholds.apply(Thresholds::default())
    }

    /// The keys the profile speaks of, for the inspector to read.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.settings.keys().cloned().collect()
    }
}

/// The result of checking one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    /// Not met: what was expected, and the value to set (if one can be named).
    Unmet {
        expected: String,
        recommended: Option<String>,
    },
    /// Cannot be judged here, and why.
    Unknown(String),
}

/// Checks `current` (as the kernel prints it) against a setting. `settings` supplies what computed
/// defaults need.
pub(crate) fn check(key: &str, setting: &Setting, current: &str, settings: &Settings) -> Verdict {
    let current = fold_whitespace(current);
    let default = || spec_of(key).and_then(|s| s.computed_default(settings));
    let needs_default =
        matches!(setting.min, Some(Bound::KernelDefault)) || matches!(setting.max, Some(Bound::KernelDefault));
    let default_value = if needs_default {
        match default() {
            Some(d) => Some(d),
            None => {
                return Verdict::Unknown(
                    "its kernel default is computed from tcp_ehash_entries, which this kernel lacks (before 6.1)"
                        .into(),
                );
            }
        }
    } else {
        None
    };
    let reserved =
        settings.get("net.ipv4.ip_local_reserved_ports").and_then(|s| PortSet::parse(s).ok()).unwrap_or_default();
    let unmet_static = static_check(key, setting, &current, &reserved).err();
    let unmet_default = default_value.and_then(|d| {
        let n: i64 = current.parse().ok()?;
        match (&setting.min, &setting.max) {
            (Some(Bound::KernelDefault), _) if n < d => Some(format!("at least the kernel default {d}")),
            (_, Some(Bound::KernelDefault)) if n > d => Some(format!("at most the kernel default {d}")),
            _ => None,
        }
    });
    let Some(unmet) = unmet_static.or(unmet_default) else { return Verdict::Met };
    Verdict::Unmet { expected: unmet, recommended: recommended(setting, &current, default_value) }
}

/// The value to set when a setting is unmet: the profile's `recommend`, its exact value, the first
/// of `one_of`, or the current value moved to the violated bounds.
fn recommended(setting: &Setting, current: &str, default: Option<i64>) -> Option<String> {
    if let Some(text) = setting.recommend.as_ref().or(setting.value.as_ref()) {
        return Some(text.0.clone());
    }
    if let Some(first) = setting.one_of.as_ref().and_then(|o| o.first()) {
        return Some(first.0.clone());
    }
    if let Some(includes) = &setting.includes {
        let mut set = PortSet::parse(current).ok()?;
        set.union_with(&PortSet::parse(&includes.0).ok()?);
        return Some(set.to_string());
    }
    if let Some(avoid) = &setting.avoid {
        // Move the range off the avoided ports, keeping the side with room; the finding's message
        // names reserving them as the other way.
        let range = PortRange::parse(current).ok()?;
        let avoided = PortSet::parse(&avoid.0).ok()?;
        let (first, last) = (avoided.iter().next()?, avoided.iter().last()?);
        let moved = if range.high > last {
            PortRange { low: range.low.max(last + 1), high: range.high }
        } else if range.low < first {
            PortRange { low: range.low, high: range.high.min(first - 1) }
        } else {
            return None;
        };
        // Keep the bounds of different parity (docs/kernel-model.md, "Port settings").
        let moved = if moved.same_parity() && moved.high > moved.low {
            PortRange { high: moved.high - 1, ..moved }
        } else {
            moved
        };
        return Some(moved.to_string());
    }
    let mut fields: Vec<i64> = current.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let limit = |bound: &Option<Bound>, index: usize| match bound {
        Some(Bound::Int(n)) if index == 0 => Some(*n),
        Some(Bound::KernelDefault) if index == 0 => default,
        Some(Bound::Fields(f)) => f.get(index).copied().flatten(),
        _ => None,
    };
    for (index, field) in fields.iter_mut().enumerate() {
        if let Some(min) = limit(&setting.min, index) {
            *field = (*field).max(min);
        }
        if let Some(max) = limit(&setting.max, index) {
            *field = (*field).min(max);
        }
    }
    // Clamping may not give a value the kernel accepts (a range turned upside down): the caller
    // checks the result against the key.
    (!fields.is_empty()).then(|| fields.iter().map(i64::to_string).collect::<Vec<_>>().join(" "))
}

/// A short description of what a setting of `key` asks, for messages (`at least 4096`,
/// `one of 1, 2`, `low at least 1024, at least 50000 ports`).
pub(crate) fn describe(key: &str, setting: &Setting) -> String {
    let mut parts = Vec::new();
    if let Some(value) = &setting.value {
        parts.push(value.0.clone());
    }
    if let Some(options) = &setting.one_of {
        parts.push(format!("one of {}", options.iter().map(|o| o.0.as_str()).collect::<Vec<_>>().join(", ")));
    }
    for (words, bound) in [("at least", &setting.min), ("at most", &setting.max)] {
        match bound {
            Some(Bound::Fields(fields)) => parts.extend(
                fields.iter().enumerate().filter_map(|(i, f)| f.map(|n| format!("{} {words} {n}", field_name(key, i)))),
            ),
            Some(bound) => parts.push(format!("{words} {bound}")),
            None => {}
        }
    }
    if let Some(size) = setting.min_size {
        parts.push(format!("at least {size} ports"));
    }
    if let Some(includes) = &setting.includes {
        parts.push(format!("including {}", includes.0));
    }
    if let Some(avoid) = &setting.avoid {
        parts.push(format!("clear of {} unless reserved in ip_local_reserved_ports", avoid.0));
    }
    if setting.different_parity {
        parts.push("bounds of different parity".into());
    }
    parts.join(", ")
}

/// Whether a setting applies to a kernel of this version (its `min_kernel` / `max_kernel`).
fn applies_to(setting: &Setting, version: Option<KernelVersion>) -> bool {
    let Some(version) = version else { return true };
    let bound = |v: &Option<String>| v.as_deref().and_then(KernelVersion::from_release);
    bound(&setting.min_kernel).is_none_or(|min| version >= min)
        && bound(&setting.max_kernel).is_none_or(|max| version <= max)
}

/// One finding per setting of `profile` the inspected host does not meet, and warnings for the
/// settings that could not be checked.
pub(crate) fn evaluate(profile: &Profile, inspection: &Inspection) -> (Vec<Finding>, Vec<String>) {
    let mut findings = Vec::new();
    let mut warnings = Vec::new();
    for (key, setting) in &profile.settings {
        if !applies_to(setting, inspection.kernel_version) {
            continue;
        }
        let Some(current) = inspection.settings.get(key) else {
            // A key the kernel is known not to have is not worth a warning.
            let expected_absent = match (spec_of(key), inspection.kernel_version) {
                (Some(spec), Some(version)) => !spec.exists_in(version),
                _ => false,
            };
            if !expected_absent {
                warnings.push(format!(
                    "profile {}: {key} is absent on this kernel or in this network namespace; not checked",
                    profile.name
                ));
            }
            continue;
        };
        match check(key, setting, current, &inspection.settings) {
            Verdict::Met => {
                if let Some(finding) = not_persisted(profile, key, setting, current, inspection) {
                    findings.push(finding);
                }
            }
            Verdict::Unknown(why) => warnings.push(format!("profile {}: {key} not checked: {why}", profile.name)),
            Verdict::Unmet { expected, recommended } => {
                findings.push(unmet(profile, key, setting, current, expected, recommended));
            }
        }
    }
    keep_the_pool(&mut findings, inspection);
    (findings, warnings)
}

/// The finding for a setting of `profile` that `current` does not meet.
fn unmet(
    profile: &Profile,
    key: &str,
    setting: &Setting,
    current: &str,
    expected: String,
    recommended: Option<String>,
) -> Finding {
    let recommended = recommended.filter(|r| spec_of(key).is_none_or(|s| s.check_value(r).is_ok()));
    Finding {
        id: format!("profile.{key}"),
        severity: setting.severity,
        key: Some(key.to_string()),
        current: Some(current.to_string()),
        recommended,
        message: format!(
            "{key} is {}; profile {} expects {}: {}",
            if current.is_empty() { "empty" } else { current },
            profile.name,
            describe(key, setting),
            fold_whitespace(&setting.why)
        ),
        risk: fold_whitespace(&setting.risk),
        evidence: json!({
            "profile": profile.name,
            "defined_in": profile.origin.get(key),
            "expected": describe(key, setting),
            "unmet": expected,
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
        advice: Vec::new(),
    }
}

/// Withdraws the recommendations of port settings that together would leave fewer than
/// [`MIN_USABLE_PORTS`] ephemeral ports to hand out (say, reserving the NodePorts inside a narrow
/// range): the finding stays, and says to move the range instead.
fn keep_the_pool(findings: &mut [Finding], inspection: &Inspection) {
    const RANGE: &str = "net.ipv4.ip_local_port_range";
    const RESERVED: &str = "net.ipv4.ip_local_reserved_ports";
    let after = |key: &str| {
        findings
            .iter()
            .find(|f| f.key.as_deref() == Some(key) && f.id.starts_with("profile."))
            .and_then(|f| f.recommended.clone())
            .or_else(|| inspection.settings.get(key).map(str::to_string))
    };
    let (Some(Ok(range)), Ok(reserved)) =
        (after(RANGE).map(|r| PortRange::parse(&r)), PortSet::parse(&after(RESERVED).unwrap_or_default()))
    else {
        return;
    };
    let listeners =
        inspection.sockets.listening_ports.iter().filter(|p| range.contains(**p) && !reserved.contains(**p)).count();
    let usable = range.size() - reserved.count_in(range) - listeners as u32;
    if usable >= MIN_USABLE_PORTS {
        return;
    }
    for f in
        findings.iter_mut().filter(|f| matches!(f.key.as_deref(), Some(RANGE | RESERVED)) && f.recommended.is_some())
    {
        f.recommended = None;
        f.message.push_str(&format!(
            "; not recommended here: with it only {usable} ports of {range} would be usable (fewer than \
             {MIN_USABLE_PORTS}), so move ip_local_port_range clear of the ports instead"
        ));
    }
}

/// A finding when `key` meets the profile now but the next boot will not keep it: no file sets it
/// and the kernel default does not meet the profile. Where twtune does not know the default it says
/// nothing rather than guess. (A file that sets another value is the `persist.drift` rule's business.)
fn not_persisted(
    profile: &Profile,
    key: &str,
    setting: &Setting,
    current: &str,
    inspection: &Inspection,
) -> Option<Finding> {
    if inspection.sysctl_d.resolve(key).next_boot().is_some() {
        return None;
    }
    let boot = inspection.sysctl_d.boot_value(key, &inspection.settings).0?;
    if check(key, setting, &boot, &inspection.settings) == Verdict::Met {
        return None;
    }
    let finding = Finding {
        id: "persist.not-persisted".into(),
        severity: setting.severity,
        key: Some(key.to_string()),
        current: Some(current.to_string()),
        recommended: Some(current.to_string()),
        message: format!(
            "{key} is {current:?} now, as profile {} expects, but no sysctl.d file sets it: the next boot resets it \
             to the kernel default {boot:?}",
            profile.name
        ),
        risk: "None: persisting the running value only keeps it across reboots.".into(),
        evidence: json!({ "profile": profile.name, "runtime": current, "boot": boot })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        advice: Vec::new(),
    };
    Some(concerning_the_host(inspection, finding))
}

#[cfg(test)]
mod tests;
