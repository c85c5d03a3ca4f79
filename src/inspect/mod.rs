//! The readers: settings, counters, the socket table, conntrack and the sysctl.d tree beneath a
//! [`Root`], gathered into one [`Inspection`], the evidence the rules judge. Readers read and hand
//! records to the model ([`crate::model`]), which does the arithmetic; they compute nothing
//! themselves. [`evidence`] chooses the socket source and namespace and reads twice for rates.
//! Reading and judging are kept apart so the rules stay pure and fixture trees can stand in for a
//! live host. May import the model and everything below it, never a rule or a report.

pub(crate) mod cgroup;
pub(crate) mod conntrack;
pub(crate) mod counters;
pub(crate) mod evidence;
pub(crate) mod gobuild;
pub(crate) mod identify;
pub(crate) mod jar;
pub(crate) mod limits;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod nftables;
pub(crate) mod nginx;
pub(crate) mod owners;
pub(crate) mod proc_tcp;
pub(crate) mod python;
pub(crate) mod runtimes;
pub(crate) mod source;
pub(crate) mod sweep;
pub(crate) mod trace;
pub(crate) mod watch;

use std::collections::BTreeMap;

use crate::error::Result;
use crate::model::bind::MAX_LOCAL_ADDRESSES;
use crate::model::reuse::Reuse;
use crate::model::table::{MAX_OWNED_SOCKETS, SocketCounter, SocketSummary, Tracking};
use crate::ports::{PortRange, PortSet};
use crate::root::Root;
use crate::sysctl::keys::Settings;
use crate::sysctl::{KernelVersion, SysctlKey, fold_whitespace};
use crate::sysctl_d::Tree;
use conntrack::Conntrack;
use source::SocketSource;

/// Counters kept from `/proc/net/netstat` (TcpExt) and `/proc/net/snmp` (Tcp), by their kernel names.
const TCP_EXT_COUNTERS: &[&str] = &[
    "ListenDrops",
    "ListenOverflows",
    "PAWSActive",
    "PAWSEstab",
    "PAWSTimewait",
    "SyncookiesSent",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPReqQFullDrop",
    "TCPSynRetrans",
    "TCPTimeWaitOverflow",
    "TW",
    "TWKilled",
    "TWRecycled",
];
const TCP_COUNTERS: &[&str] = &["ActiveOpens", "AttemptFails", "CurrEstab", "EstabResets", "PassiveOpens"];
/// Fields of the `TCP:` line of `/proc/net/sockstat`, reported as `sockstat_<field>`.
const SOCKSTAT_FIELDS: &[&str] = &["alloc", "inuse", "orphan", "tw"];

/// Everything an audit knows about one host or captured tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Inspection {
    /// The kernel release string.
    pub kernel: String,
    pub kernel_version: Option<KernelVersion>,
    pub settings: Settings,
    /// Counter name -> value, since boot (or since the namespace was created).
    pub counters: BTreeMap<String, i64>,
    pub sockets: SocketSummary,
    /// The sysctl.d configuration the next boot applies.
    pub sysctl_d: Tree,
    /// Connection tracking, where `nf_conntrack` is loaded; `None` where it is not.
    pub conntrack: Option<Conntrack>,
    /// With `--sample`: how much each counter grew over the interval (for the rules that judge a
    /// rate rather than a count since boot).
    pub counter_growth: Option<BTreeMap<String, i64>>,
    /// With `--sample`: the seconds between the two reads `counter_growth` is over (for the rules
    /// that judge a rate per second).
    pub sample_seconds: Option<f64>,
    /// Things that were read with trouble; the audit went on without them.
    pub warnings: Vec<String>,
    /// Whether the inspected network namespace is the host's initial one, which the sysctl.d tree
    /// configures at boot; `None` where that cannot be told (an offline tree, not root, another PID
    /// namespace). Set by [`evidence`], which knows the namespace it read in.
    pub initial_namespace: Option<bool>,
    /// With `--sample`: the failed connect() and bind() calls of the window, or why they were not
    /// traced.
    pub tracing: Option<crate::model::failures::Tracing>,
}

/// Reads a whole inspection beneath `root`, streaming the socket table from `source` and keeping the
/// `top` fullest destination buckets and recording what `tracking` asks for. `extra_keys` are read
/// besides the [audited keys](crate::sysctl::keys::audited_keys) (a profile's).
pub(crate) fn read(
    root: &Root,
    source: &mut dyn SocketSource,
    top: usize,
    extra_keys: &[String],
    tracking: Tracking,
) -> Result<Inspection> {
    let mut warnings = Vec::new();
    let kernel = root.kernel_release()?;
    let kernel_version = KernelVersion::from_release(&kernel);
    if kernel_version.is_none() {
        warnings.push(format!("kernel release {kernel:?} has no version number; version checks are skipped"));
    }

    let settings = read_settings(root, extra_keys, &mut warnings)?;
    let counters = read_counters(root, &mut warnings)?;

    let (range, reserved) = port_settings(&settings, &mut warnings);
    let mut counter = SocketCounter::new(range, reserved).reuse(Reuse::from_settings(&settings)).tracking(tracking);
    source.scan(&mut |socket| counter.add(socket), &mut warnings)?;
    let sockets = counter.finish(source.name(), top);
    let sysctl_d = Tree::read(root.path())?;
    if sockets.untracked_addresses > 0 {
        warnings.push(format!(
            "{} on local addresses beyond the first {}; their bind() budget is not reported",
            crate::words::count(sockets.untracked_addresses as usize, "socket"),
            MAX_LOCAL_ADDRESSES
        ));
    }
    if sockets.unowned > 0 {
        warnings.push(format!(
            "{} live sockets beyond the first {} were not looked up for their owners",
            sockets.unowned, MAX_OWNED_SOCKETS
        ));
    }
    let conntrack = read_conntrack(root, top, kernel_version, &mut warnings)?;
    Ok(Inspection {
        kernel,
        kernel_version,
        settings,
        counters,
        sockets,
        sysctl_d,
        conntrack,
        counter_growth: None,
        sample_seconds: None,
        warnings,
        initial_namespace: None,
        tracing: None,
    })
}

/// The socket table alone, counted against `settings` as read before (the reads between the two
/// of a `--sample`, which follow connections and their owners). What it could not use is left
/// out without a word: the full reads around it say it.
pub(crate) fn read_sockets(
    source: &mut dyn SocketSource,
    settings: &Settings,
    tracking: Tracking,
) -> Result<SocketSummary> {
    let mut ignored = Vec::new();
    let (range, reserved) = port_settings(settings, &mut ignored);
    let mut counter = SocketCounter::new(range, reserved).reuse(Reuse::from_settings(settings)).tracking(tracking);
    source.scan(&mut |socket| counter.add(socket), &mut ignored)?;
    Ok(counter.finish(source.name(), usize::MAX))
}

/// The ephemeral range and the reserved ports the socket table is counted against: the kernel's
/// default range, and no reserved port, where the settings are absent or unreadable (with a warning).
fn port_settings(settings: &Settings, warnings: &mut Vec<String>) -> (PortRange, PortSet) {
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

    (range, reserved)
}

/// Connection tracking of the namespace, when `nf_conntrack` is loaded (its keys exist). The table
/// itself is dumped on a live system only (ctnetlink, which needs CAP_NET_ADMIN).
fn read_conntrack(
    root: &Root,
    top: usize,
    kernel: Option<KernelVersion>,
    warnings: &mut Vec<String>,
) -> Result<Option<Conntrack>> {
    let number = |key: &str| -> Result<Option<u64>> {
        let value = root.read_sysctl(&SysctlKey::parse(&format!("net.netfilter.{key}"))?)?;
        Ok(value.and_then(|v| v.trim().parse().ok()))
    };
    let Some(count) = number("nf_conntrack_count")? else { return Ok(None) };
    let mut tcp_timeouts = BTreeMap::new();
    for name in conntrack::TIMEOUT_KEYS {
        if let Some(seconds) = number(&format!("nf_conntrack_tcp_timeout_{name}"))? {
            tcp_timeouts.insert((*name).to_string(), seconds);
        }
    }
    let statistics = match root.read_proc_net("stat/nf_conntrack", false)? {
        Some(text) => {
            let parsed = conntrack::parse_stats(&text);
            let path = root.proc_net_path("stat/nf_conntrack");
            warnings.extend(parsed.problems.iter().map(|p| format!("{}:{}: {}", path.display(), p.line, p.problem)));
            parsed.value
        }
        None => BTreeMap::new(),
    };
    let (nat_range, nat_range_source, nat_rules, table, table_unavailable) = if root.is_live() {
        let read = conntrack::nat_rules(root)?;
        let (range, source) = crate::model::nat::summarise(read.as_ref().map_err(String::as_str));
        let rules = read.map(|r| r.rules).unwrap_or_default();
        // An empty table need not be walked (the walk visits every slot of the host's hash table).
        // Without root the dump is tried all the same: its refusal says what is missing.
        let empty = count == 0 && rustix::process::geteuid().is_root();
        let counter = crate::model::nat::FlowCounter::new(rules.clone(), kernel);
        let dumped = if empty { Ok(counter.finish(top)) } else { conntrack::dump(counter, top, warnings)? };
        match dumped {
            Ok(table) => (range, source, rules, Some(table), None),
            Err(e) => (range, source, rules, None, Some(e.to_string())),
        }
    } else {
        (
            crate::model::nat::NatRange::DEFAULT,
            "the kernel's default 1024-65535 (an offline tree has no rules)".into(),
            Vec::new(),
            None,
            Some("an offline tree has no table to dump".into()),
        )
    };
    Ok(Some(Conntrack {
        count: Some(count),
        max: number("nf_conntrack_max")?,
        statistics,
        tcp_timeouts,
        nat_range,
        nat_range_source,
        nat_rules,
        statistics_growth: None,
        table,
        table_unavailable,
    }))
}

fn read_settings(root: &Root, extra_keys: &[String], warnings: &mut Vec<String>) -> Result<Settings> {
    let mut settings = BTreeMap::new();
    let mut names: Vec<&str> = crate::sysctl::keys::audited_keys().collect();
    names.extend(extra_keys.iter().map(String::as_str));
    for name in names {
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
    let note = |warnings: &mut Vec<String>, name: &str, problems: Vec<crate::problem::LineProblem>| {
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
