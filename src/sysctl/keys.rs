//! The one table of the sysctls twtune handles ([`KEYS`]): the shape of each value, the values the
//! kernel accepts, the kernel versions that have it, its default (computed where it depends on the
//! machine, see docs/kernel-model.md, "Namespaces"), and whether every audit reads it. Also
//! [`Settings`], the values read from one system.
//!
//! Pure: used to validate profiles and plans before anything is compared or written.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ports::{PortRange, PortSet};
use crate::sysctl::KernelVersion;

/// The form of a key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One integer within bounds (inclusive).
    Int { min: i64, max: i64 },
    /// `count` integers separated by whitespace, each within bounds (`tcp_rmem`).
    Ints { count: usize, min: i64, max: i64 },
    /// Two ports, low then high (`ip_local_port_range`).
    PortRange,
    /// A list of ports and ranges (`ip_local_reserved_ports`).
    PortList,
}

/// A default the kernel computes from the size of the established hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ComputedDefault {
    /// `ehash_entries / 2` (tcp_max_tw_buckets, tcp_max_orphans).
    HalfEhash,
    /// `max(128, ehash_entries / 128)` (tcp_max_syn_backlog).
    SynBacklog,
}

/// Facts about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeySpec {
    pub name: &'static str,
    pub shape: Shape,
    /// First kernel that has the key.
    pub since: Option<KernelVersion>,
    /// Last kernel that has the key.
    pub until: Option<KernelVersion>,
    pub computed_default: Option<ComputedDefault>,
    /// The kernel's fixed default (Linux 6.18), where it does not depend on the machine.
    pub default: Option<&'static str>,
    /// The kernel refuses writes (a value only to read).
    pub read_only: bool,
    /// Read by every audit (the others only when a profile names them).
    pub audited: bool,
}

const INT_MAX: i64 = i32::MAX as i64;

const fn spec(name: &'static str, shape: Shape) -> KeySpec {
    KeySpec {
        name,
        shape,
        since: None,
        until: None,
        computed_default: None,
        default: None,
        read_only: false,
        audited: true,
    }
}

const fn int(name: &'static str, min: i64, max: i64) -> KeySpec {
    spec(name, Shape::Int { min, max })
}

const fn with_default(spec: KeySpec, default: &'static str) -> KeySpec {
    KeySpec { default: Some(default), ..spec }
}

/// Every key twtune knows, sorted by name.
pub(crate) const KEYS: &[KeySpec] = &[
    // 4096 since Linux 5.4; 128 before.
    with_default(int("net.core.somaxconn", 0, INT_MAX), "4096"),
    with_default(spec("net.ipv4.ip_local_port_range", Shape::PortRange), "32768 60999"),
    with_default(spec("net.ipv4.ip_local_reserved_ports", Shape::PortList), ""),
    with_default(int("net.ipv4.ip_unprivileged_port_start", 0, 65535), "1024"),
    KeySpec { read_only: true, ..int("net.ipv4.tcp_ehash_entries", -INT_MAX, INT_MAX) },
    with_default(int("net.ipv4.tcp_fin_timeout", 1, INT_MAX), "60"),
    with_default(int("net.ipv4.tcp_keepalive_intvl", 1, INT_MAX), "75"),
    with_default(int("net.ipv4.tcp_keepalive_probes", 1, 255), "9"),
    with_default(int("net.ipv4.tcp_keepalive_time", 1, INT_MAX), "7200"),
    KeySpec { computed_default: Some(ComputedDefault::HalfEhash), ..int("net.ipv4.tcp_max_orphans", 0, INT_MAX) },
    KeySpec { computed_default: Some(ComputedDefault::SynBacklog), ..int("net.ipv4.tcp_max_syn_backlog", 0, INT_MAX) },
    KeySpec { computed_default: Some(ComputedDefault::HalfEhash), ..int("net.ipv4.tcp_max_tw_buckets", 0, INT_MAX) },
    KeySpec { audited: false, ..with_default(int("net.ipv4.tcp_orphan_retries", 0, 255), "0") },
    KeySpec { audited: false, ..spec("net.ipv4.tcp_rmem", Shape::Ints { count: 3, min: 1, max: INT_MAX }) },
    // The kernel stores these in a u8 without a range check; only 0, 1 and 2 mean anything.
    with_default(int("net.ipv4.tcp_syncookies", 0, 2), "1"),
    with_default(int("net.ipv4.tcp_timestamps", 0, 2), "1"),
    KeySpec { until: Some(KernelVersion::new(4, 11)), ..with_default(int("net.ipv4.tcp_tw_recycle", 0, 1), "0") },
    with_default(int("net.ipv4.tcp_tw_reuse", 0, 2), "2"),
    KeySpec {
        since: Some(KernelVersion::new(6, 14)),
        ..with_default(int("net.ipv4.tcp_tw_reuse_delay", 1, 60000), "1000")
    },
    KeySpec { audited: false, ..spec("net.ipv4.tcp_wmem", Shape::Ints { count: 3, min: 1, max: INT_MAX }) },
    // Connection tracking: present where nf_conntrack is loaded, read by the conntrack section of
    // an audit. nf_conntrack_max is global (a namespace other than the host's cannot write it) and
    // its default depends on memory; the timeouts are per namespace, in seconds.
    KeySpec { audited: false, ..int("net.netfilter.nf_conntrack_max", 0, INT_MAX) },
    KeySpec {
        audited: false,
        ..with_default(int("net.netfilter.nf_conntrack_tcp_timeout_close_wait", 1, INT_MAX), "60")
    },
    KeySpec {
        audited: false,
        ..with_default(int("net.netfilter.nf_conntrack_tcp_timeout_established", 1, INT_MAX), "432000")
    },
    KeySpec {
        audited: false,
        ..with_default(int("net.netfilter.nf_conntrack_tcp_timeout_time_wait", 1, INT_MAX), "120")
    },
];

/// The facts about `name`, if twtune knows the key.
pub(crate) fn spec_of(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

/// The known key closest to `name` by edit distance, for "did you mean" (none further than a third
/// of the name's length).
pub(crate) fn closest(name: &str) -> Option<&'static str> {
    let limit = name.chars().count() / 3 + 1;
    KEYS.iter().map(|k| (edit_distance(name, k.name), k.name)).filter(|(d, _)| *d <= limit).min().map(|(_, n)| n)
}

/// Levenshtein distance between `a` and `b`, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The keys every audit reads, sorted by name. A key the kernel lacks is reported as absent (`null`).
pub(crate) fn audited_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().filter(|k| k.audited).map(|k| k.name)
}

impl KeySpec {
    /// Checks a value (whitespace folded) against what the kernel accepts for this key.
    pub(crate) fn check_value(&self, value: &str) -> Result<(), String> {
        match self.shape {
            Shape::Int { min, max } => match value.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(()),
                Ok(_) | Err(_) if max == INT_MAX => Err(format!("{value:?} is not an integer of at least {min}")),
                _ => Err(format!("{value:?} is not an integer from {min} to {max}")),
            },
            Shape::Ints { count, min, max } => {
                let fields: Vec<&str> = value.split_whitespace().collect();
                let valid = fields.len() == count
                    && fields.iter().all(|f| f.parse::<i64>().is_ok_and(|n| n >= min && n <= max));
                if valid { Ok(()) } else { Err(format!("{value:?} is not {count} integers of at least {min}")) }
            }
            Shape::PortRange => PortRange::parse(value).map(|_| ()),
            Shape::PortList => PortSet::parse(value).map(|_| ()),
        }
    }

    /// A valid value as the kernel prints it back (`04096` -> `4096`, a port list sorted and
    /// merged), so that a written value reads back equal. Unchanged when it does not parse.
    pub(crate) fn canonical(&self, value: &str) -> String {
        let canonical = match self.shape {
            Shape::Int { .. } => value.trim().parse::<i64>().ok().map(|n| n.to_string()),
            Shape::Ints { .. } => value
                .split_whitespace()
                .map(|f| f.parse::<i64>().ok().map(|n| n.to_string()))
                .collect::<Option<Vec<_>>>()
                .map(|fields| fields.join(" ")),
            Shape::PortRange => PortRange::parse(value).ok().map(|r| r.to_string()),
            Shape::PortList => PortSet::parse(value).ok().map(|p| p.to_string()),
        };
        canonical.unwrap_or_else(|| value.to_string())
    }

    /// How many whitespace-separated integer fields the value has (1 for a plain integer).
    pub(crate) fn field_count(&self) -> Option<usize> {
        match self.shape {
            Shape::Int { .. } => Some(1),
            Shape::Ints { count, .. } => Some(count),
            Shape::PortRange => Some(2),
            Shape::PortList => None,
        }
    }

    /// Names of the fields of a multi-field value, for messages.
    pub(crate) fn field_names(&self) -> &'static [&'static str] {
        match self.shape {
            Shape::PortRange => &["low", "high"],
            Shape::Ints { count: 3, .. } => &["min", "default", "max"],
            _ => &[],
        }
    }

    /// The value a namespace starts with: the fixed default, or the computed one where the hash size
    /// is known.
    pub(crate) fn boot_default(&self, settings: &Settings) -> Option<String> {
        self.default.map(str::to_string).or_else(|| self.computed_default(settings).map(|d| d.to_string()))
    }

    /// Whether a kernel of this version has the key.
    pub(crate) fn exists_in(&self, version: KernelVersion) -> bool {
        self.since.is_none_or(|v| version >= v) && self.until.is_none_or(|v| version <= v)
    }

    /// The kernel's default for this namespace, where it is computed from the hash size and the
    /// hash size is known (`tcp_ehash_entries`, Linux 6.1+; negative in a namespace sharing the
    /// host's hash).
    pub(crate) fn computed_default(&self, settings: &Settings) -> Option<i64> {
        // unsigned_abs: a captured tree may hold any number, including i64::MIN.
        let ehash = i64::try_from(settings.int("net.ipv4.tcp_ehash_entries")?.unsigned_abs()).ok()?;
        if ehash == 0 {
            return None;
        }
        Some(match self.computed_default? {
            ComputedDefault::HalfEhash => ehash / 2,
            ComputedDefault::SynBacklog => (ehash / 128).max(128),
        })
    }
}

/// Sysctl values by dotted key, whitespace folded; `None` when the kernel lacks the key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct Settings(pub BTreeMap<String, Option<String>>);

impl Settings {
    /// The folded text of a key, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_deref())
    }

    /// The value of a single-integer key, if present and an integer.
    pub(crate) fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn table_is_sorted_unique_and_valid() {
        assert!(KEYS.windows(2).all(|w| w[0].name < w[1].name));
        for key in KEYS {
            crate::sysctl::SysctlKey::parse(key.name).expect(key.name);
        }
    }

    #[test]
    fn values_the_kernel_rejects_are_rejected() {
        let check = |key: &str, value: &str| spec_of(key).expect(key).check_value(value);
        assert!(check("net.ipv4.tcp_tw_reuse", "1").is_ok());
        assert_eq!(check("net.ipv4.tcp_tw_reuse", "3"), Err("\"3\" is not an integer from 0 to 2".into()));
        assert!(check("net.ipv4.tcp_tw_reuse", "yes").is_err());
        assert!(check("net.ipv4.tcp_tw_reuse_delay", "0").is_err());
        assert!(check("net.ipv4.tcp_tw_reuse_delay", "60001").is_err());
        assert!(check("net.ipv4.tcp_keepalive_probes", "300").is_err());
        assert!(check("net.core.somaxconn", "-1").is_err());
        assert!(check("net.ipv4.ip_local_port_range", "60999 32768").is_err());
        assert!(check("net.ipv4.ip_local_port_range", "0 100").is_err());
        assert!(check("net.ipv4.ip_local_port_range", "10000 65535").is_ok());
        assert!(check("net.ipv4.ip_local_reserved_ports", "30000-32767,8080").is_ok());
        assert!(check("net.ipv4.tcp_rmem", "4096 131072 6291456").is_ok());
        assert!(check("net.ipv4.tcp_rmem", "4096 131072").is_err());
    }

    #[test]
    fn values_are_canonical_as_the_kernel_prints_them() {
        let canonical = |key: &str, value: &str| spec_of(key).expect(key).canonical(value);
        assert_eq!(canonical("net.core.somaxconn", "04096"), "4096");
        assert_eq!(canonical("net.ipv4.ip_local_port_range", "10000\t65535"), "10000 65535");
        assert_eq!(canonical("net.ipv4.ip_local_reserved_ports", "9000,8080-8081,8082"), "8080-8082,9000");
        assert_eq!(canonical("net.ipv4.tcp_rmem", "4096 0131072 6291456"), "4096 131072 6291456");
        assert_eq!(canonical("net.core.somaxconn", "lots"), "lots", "invalid values are left to validation");
    }

    #[test]
    fn versions_and_defaults() {
        let delay = spec_of("net.ipv4.tcp_tw_reuse_delay").expect("known");
        assert!(!delay.exists_in(KernelVersion::new(6, 13)) && delay.exists_in(KernelVersion::new(6, 14)));
        let recycle = spec_of("net.ipv4.tcp_tw_recycle").expect("known");
        assert!(recycle.exists_in(KernelVersion::new(4, 11)) && !recycle.exists_in(KernelVersion::new(4, 12)));

        let mut map = BTreeMap::new();
        map.insert("net.ipv4.tcp_ehash_entries".to_string(), Some("-262144".to_string()));
        let settings = Settings(map);
        let default = |key: &str| spec_of(key).expect(key).computed_default(&settings);
        assert_eq!(default("net.ipv4.tcp_max_tw_buckets"), Some(131072));
        assert_eq!(default("net.ipv4.tcp_max_syn_backlog"), Some(2048));
        assert_eq!(default("net.ipv4.tcp_tw_reuse"), None);
        assert_eq!(spec_of("net.ipv4.tcp_max_tw_buckets").expect("known").computed_default(&Settings::default()), None);
    }

    #[test]
    fn audits_read_every_key_but_the_buffer_and_orphan_retry_keys() {
        let audited: Vec<&str> = audited_keys().collect();
        assert_eq!(audited.len(), 17);
        assert!(audited.windows(2).all(|w| w[0] < w[1]));
        for unaudited in ["net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"] {
            assert!(!audited.contains(&unaudited), "{unaudited}");
        }
    }

    #[test]
    fn settings_accessors() {
        let mut map = BTreeMap::new();
        map.insert("a".to_string(), Some("2".to_string()));
        map.insert("b".to_string(), None);
        map.insert("c".to_string(), Some("32768 60999".to_string()));
        let settings = Settings(map);
        assert_eq!(settings.int("a"), Some(2));
        assert_eq!(settings.get("b"), None);
        assert_eq!(settings.int("c"), None);
        assert_eq!(settings.get("missing"), None);
    }
}
