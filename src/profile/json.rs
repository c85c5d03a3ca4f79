//! `profiles list --format json` and `profiles show --format json`: the profiles as programs read
//! them (docs/schema/profiles-list.json, docs/schema/profiles-show.json). Unlike the YAML of
//! `profiles show`, every value here has one JSON type: sysctl values are strings as the kernel
//! prints them (an integer setting too), bounds are objects that say which kind they are.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Profile;
use super::catalog::Listed;
use super::parse::{Bound, Setting, Text};
use crate::rules::{Severity, Thresholds};

/// Version of both documents; raised whenever a field changes meaning or disappears.
pub(crate) const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct ListDocument<'a> {
    schema_version: u32,
    profiles: Vec<ListedProfile<'a>>,
}

#[derive(Serialize)]
struct ListedProfile<'a> {
    name: &'a str,
    source: &'a str,
    description: &'a str,
}

/// The listing as one JSON object, with a final line break.
pub(crate) fn list(listed: &[Listed]) -> serde_json::Result<String> {
    let profiles = listed
        .iter()
        .map(|l| ListedProfile { name: &l.name, source: &l.source, description: &l.description })
        .collect();
    document(&ListDocument { schema_version: SCHEMA_VERSION, profiles })
}

#[derive(Serialize)]
struct ShowDocument<'a> {
    schema_version: u32,
    name: &'a str,
    description: &'a str,
    source: &'a str,
    chain: &'a [String],
    notes: &'a [String],
    /// The rule thresholds in force with this profile (its overrides on the built-in ones).
    thresholds: Thresholds,
    settings: BTreeMap<&'a str, SettingJson<'a>>,
}

/// One setting: every field present, `null` where the profile does not say.
#[derive(Serialize)]
struct SettingJson<'a> {
    /// The profile of the `extends` chain that sets it.
    defined_in: Option<&'a str>,
    value: Option<&'a str>,
    one_of: Option<Vec<&'a str>>,
    min: Option<BoundJson>,
    max: Option<BoundJson>,
    min_size: Option<u32>,
    includes: Option<&'a str>,
    avoid: Option<&'a str>,
    different_parity: bool,
    recommend: Option<&'a str>,
    why: &'a str,
    risk: &'a str,
    severity: Severity,
    min_kernel: Option<&'a str>,
    max_kernel: Option<&'a str>,
}

/// A bound as an object naming its kind: `{"integer": 1024}`, `{"kernel_default": true}` or
/// `{"fields": [1024, null]}` (one bound per field of a multi-field key).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum BoundJson {
    Integer(i64),
    KernelDefault(bool),
    Fields(Vec<Option<i64>>),
}

impl From<&Bound> for BoundJson {
    fn from(bound: &Bound) -> BoundJson {
        match bound {
            Bound::Int(n) => BoundJson::Integer(*n),
            Bound::KernelDefault => BoundJson::KernelDefault(true),
            Bound::Fields(fields) => BoundJson::Fields(fields.clone()),
        }
    }
}

fn text(t: &Option<Text>) -> Option<&str> {
    t.as_ref().map(|t| t.0.as_str())
}

impl<'a> SettingJson<'a> {
    fn new(setting: &'a Setting, defined_in: Option<&'a str>) -> SettingJson<'a> {
        SettingJson {
            defined_in,
            value: text(&setting.value),
            one_of: setting.one_of.as_ref().map(|v| v.iter().map(|t| t.0.as_str()).collect()),
            min: setting.min.as_ref().map(BoundJson::from),
            max: setting.max.as_ref().map(BoundJson::from),
            min_size: setting.min_size,
            includes: text(&setting.includes),
            avoid: text(&setting.avoid),
            different_parity: setting.different_parity,
            recommend: text(&setting.recommend),
            why: setting.why.trim(),
            risk: setting.risk.trim(),
            severity: setting.severity,
            min_kernel: setting.min_kernel.as_deref(),
            max_kernel: setting.max_kernel.as_deref(),
        }
    }
}

/// The resolved profile as one JSON object, with a final line break.
pub(crate) fn show(profile: &Profile) -> serde_json::Result<String> {
    let settings = profile
        .settings
        .iter()
        .map(|(key, setting)| (key.as_str(), SettingJson::new(setting, profile.origin.get(key).map(String::as_str))))
        .collect();
    document(&ShowDocument {
        schema_version: SCHEMA_VERSION,
        name: &profile.name,
        description: &profile.description,
        source: &profile.source,
        chain: &profile.chain,
        notes: &profile.notes,
        thresholds: profile.thresholds(),
        settings,
    })
}

fn document<T: Serialize>(value: &T) -> serde_json::Result<String> {
    Ok(crate::json::to_string_pretty(value)? + "\n")
}
