//! The inspector: reads settings, counters and the socket table beneath a [`Root`] and returns one
//! [`Inspection`], the evidence the rules judge. Reading and judging are kept apart so the rules stay
//! pure and fixture trees can stand in for a live host.

pub mod counters;
pub mod netlink;
pub mod proc_tcp;
pub mod sample;
pub mod sockets;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::persisted::ConfigTree;
use crate::ports::{PortRange, PortSet};
use crate::root::Root;
use crate::sysctl::{KernelVersion, SysctlKey, fold_whitespace};
use sockets::{SocketCounter, SocketSource, SocketSummary};

/// The sysctls an audit reads. A key the kernel lacks is reported as absent (`null`).
pub const AUDITED_KEYS: &[&str] = &[
    "net.core.somaxconn",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_ehash_entries",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_tw_recycle",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_reuse_delay",
];

/// Counters kept from `/proc/net/netstat` (TcpExt) and `/proc/net/snmp` (Tcp), by their kernel names.
const TCP_EXT_COUNTERS: &[&str] = &[
    "ListenDrops",
    "ListenOverflows",
    "PAWSActive",
    "PAWSEstab",
    "SyncookiesSent",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPReqQFullDrop",
    "TCPTimeWaitOverflow",
    "TW",
    "TWKilled",
    "TWRecycled",
];
const TCP_COUNTERS: &[&str] = &["ActiveOpens", "AttemptFails", "CurrEstab", "EstabResets", "PassiveOpens"];
/// Fields of the `TCP:` line of `/proc/net/sockstat`, reported as `sockstat_<field>`.
const SOCKSTAT_FIELDS: &[&str] = &["alloc", "inuse", "orphan", "tw"];

/// Sysctl values by dotted key, whitespace folded; `None` when the kernel lacks the key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Settings(pub BTreeMap<String, Option<String>>);

impl Settings {
    /// The folded text of a key, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_deref())
    }

    /// The value of a single-integer key, if present and an integer.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }
}

/// Everything an audit knows about one host or captured tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspection {
    /// The kernel release string.
    pub kernel: String,
    pub kernel_version: Option<KernelVersion>,
    pub settings: Settings,
    /// Counter name -> value, since boot (or since the namespace was created).
    pub counters: BTreeMap<String, i64>,
    pub sockets: SocketSummary,
    /// The sysctl.d configuration the next boot applies.
    pub config: ConfigTree,
    /// Things that were read with trouble; the audit went on without them.
    pub warnings: Vec<String>,
}

/// Reads a whole inspection beneath `root`, streaming the socket table from `source` and keeping the
/// `top` fullest destination buckets. `extra_keys` are read besides [`AUDITED_KEYS`] (a profile's).
pub fn inspect(root: &Root, source: &mut dyn SocketSource, top: usize, extra_keys: &[String]) -> Result<Inspection> {
    let mut warnings = Vec::new();
    let kernel = root.kernel_release()?;
    let kernel_version = KernelVersion::from_release(&kernel);
    if kernel_version.is_none() {
        warnings.push(format!("kernel release {kernel:?} has no version number; version checks are skipped"));
    }

    let settings = read_settings(root, extra_keys, &mut warnings)?;
    let counters = read_counters(root, &mut warnings)?;

    let range = match settings.get("net.ipv4.ip_local_port_range").map(PortRange::parse) {
        Some(Ok(range)) => range,
        Some(Err(problem)) => {
            warnings.push(format!("net.ipv4.ip_local_port_range: {problem}; assuming the default 32768 60999"));
            PortRange::DEFAULT
        }
        None => {
            warnings.push("net.ipv4.ip_local_port_range is absent; assuming the default 32768 60999".into());
            PortRange::DEFAULT
        }
    };
    let reserved = match settings.get("net.ipv4.ip_local_reserved_ports").map(PortSet::parse) {
        Some(Ok(set)) => set,
        Some(Err(problem)) => {
            warnings.push(format!("net.ipv4.ip_local_reserved_ports: {problem}; assuming no reserved ports"));
            PortSet::default()
        }
        None => PortSet::default(),
    };

    let mut counter = SocketCounter::new(range, reserved);
    source.scan(&mut |socket| counter.add(socket), &mut warnings)?;
    let sockets = counter.finish(source.name(), top);
    let config = ConfigTree::read(root.path())?;

    Ok(Inspection { kernel, kernel_version, settings, counters, sockets, config, warnings })
}

fn read_settings(root: &Root, extra_keys: &[String], warnings: &mut Vec<String>) -> Result<Settings> {
    let mut settings = BTreeMap::new();
    for name in AUDITED_KEYS.iter().copied().chain(extra_keys.iter().map(String::as_str)) {
        let key = SysctlKey::parse(name)?;
        let value = match root.read_sysctl(&key) {
            Ok(value) => value.map(|text| fold_whitespace(&text)),
            Err(err) => {
                // One unreadable key must not hide the rest of the audit.
                warnings.push(format!("{err}; {key} treated as absent"));
                None
            }
        };
        settings.insert(key.to_string(), value);
    }
    Ok(Settings(settings))
}

fn read_counters(root: &Root, warnings: &mut Vec<String>) -> Result<BTreeMap<String, i64>> {
    let mut counters = BTreeMap::new();
    let note = |warnings: &mut Vec<String>, name: &str, problems: Vec<counters::LineProblem>| {
        let path = root.proc_net_path(name);
        warnings.extend(problems.into_iter().map(|p| format!("{}:{}: {}", path.display(), p.line, p.problem)));
    };

    if let Some(text) = root.read_proc_net("sockstat", true)? {
        let parsed = counters::parse_sockstat_tcp(&text);
        for field in SOCKSTAT_FIELDS {
            if let Some(value) = parsed.value.get(*field) {
                counters.insert(format!("sockstat_{field}"), *value);
            }
        }
        note(warnings, "sockstat", parsed.problems);
    }
    for (file, section, names) in [("netstat", "TcpExt", TCP_EXT_COUNTERS), ("snmp", "Tcp", TCP_COUNTERS)] {
        let Some(text) = root.read_proc_net(file, true)? else {
            continue;
        };
        let parsed = counters::parse_mib(&text);
        if let Some(table) = parsed.value.get(section) {
            for name in names {
                if let Some(value) = table.get(*name) {
                    counters.insert((*name).to_string(), *value);
                }
            }
        } else {
            warnings.push(format!("{}: no {section} section", root.proc_net_path(file).display()));
        }
        note(warnings, file, parsed.problems);
    }
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_keys_are_valid_and_sorted() {
        for key in AUDITED_KEYS {
            SysctlKey::parse(key).expect(key);
        }
        assert!(AUDITED_KEYS.windows(2).all(|w| w[0] < w[1]));
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
