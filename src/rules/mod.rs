//! The built-in rules: pure functions from an [`Inspection`] to [`Finding`]s. No I/O, no printing.
//!
//! Every statement a rule makes about the kernel follows docs/kernel-model.md (the kernel source it
//! cites, and what tests observe on the real kernel). Advice puts the real cure first: a host that runs out of ephemeral ports because an
//! application closes connections it could reuse is fixed in the application, not in sysctls.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::inspect::Inspection;
use crate::model::bind::LocalPorts;
use crate::model::connect::Bucket;
use crate::model::failures::Tracing;
use crate::ports::{KUBERNETES_NODEPORT, PortRange, PortSet};
use crate::sysctl::keys::spec_of;

/// How serious a finding is. Ordered: `Info < Warn < Crit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Info,
    Warn,
    Crit,
}

impl Severity {
    /// Lower-case name as printed in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Crit => "crit",
        }
    }
}

/// One step of advice with what it can break.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Advice {
    pub action: String,
    pub risk: String,
}

/// Something the audit wants the user to know or change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Finding {
    /// Stable identifier of the rule (and, for per-destination findings, the same for every bucket).
    pub id: String,
    pub severity: Severity,
    /// The sysctl the finding is about, if any.
    pub key: Option<String>,
    /// The key's value now, as the kernel prints it.
    pub current: Option<String>,
    /// The value to set, as the kernel would print it.
    pub recommended: Option<String>,
    /// One line saying what is wrong and why it matters.
    pub message: String,
    /// What can go wrong when the advice is followed.
    pub risk: String,
    /// The numbers that triggered the finding.
    pub evidence: Map<String, Value>,
    /// Further steps, best first, each with its own risk.
    pub advice: Vec<Advice>,
}

/// Tunable limits of the rules.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Thresholds {
    /// A destination bucket at or above this share of its usable ports is a warning.
    pub port_warn_pct: f64,
    /// ... and at or above this share, critical.
    pub port_crit_pct: f64,
    /// Fewer TIME_WAIT sockets than this are not worth a remark about their direction.
    pub min_time_wait: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { port_warn_pct: 50.0, port_crit_pct: 80.0, min_time_wait: 100 }
    }
}

/// TIME_WAIT lasts `TCP_TIMEWAIT_LEN`, compiled into the kernel; no sysctl changes it.
const TIME_WAIT_SECONDS: u32 = 60;
/// `tw_sock_TCP` slab object size observed on 6.18.
const TIME_WAIT_SOCKET_BYTES: u64 = 256;
const TW_REUSE: &str = "net.ipv4.tcp_tw_reuse";
const TIMESTAMPS: &str = "net.ipv4.tcp_timestamps";
const PORT_RANGE: &str = "net.ipv4.ip_local_port_range";
const RESERVED_PORTS: &str = "net.ipv4.ip_local_reserved_ports";
const MAX_TW_BUCKETS: &str = "net.ipv4.tcp_max_tw_buckets";

const TW_REUSE_RISK: &str = "Helps outgoing connect() only, never a server; needs TCP timestamps on both \
ends (PAWS rejects old duplicates); if our last ACK was lost, the peer still in LAST_ACK answers the reused \
tuple's SYN with an ACK or RST and the connect is retried; NATs or middleboxes that strip or rewrite \
timestamps defeat the protection. The kernel docs advise changing it only on expert advice.";

/// Runs every built-in rule. Findings come most severe first, then by id.
pub(crate) fn evaluate(inspection: &Inspection, thresholds: &Thresholds) -> Vec<Finding> {
    let mut findings = Vec::new();
    bucket_exhaustion(inspection, thresholds, &mut findings);
    bind_exhaustion(inspection, thresholds, &mut findings);
    pool_too_small(inspection, &mut findings);
    exhaustion_soon(inspection, &mut findings);
    outbound_pressure(inspection, thresholds, &mut findings);
    reuse_without_timestamps(inspection, &mut findings);
    mostly_inbound(inspection, thresholds, &mut findings);
    fin_timeout_lowered(inspection, &mut findings);
    tw_recycle_enabled(inspection, &mut findings);
    tw_buckets(inspection, &mut findings);
    listeners_in_range(inspection, &mut findings);
    port_range_shape(inspection, &mut findings);
    listen_overflows(inspection, &mut findings);
    churn::no_reuse(inspection, &mut findings);
    churn::closed_at_timeout(inspection, &mut findings);
    churn::closed_by_peer(inspection, &mut findings);
    syn::evaluate(inspection, &mut findings);
    conntrack::evaluate(inspection, thresholds, &mut findings);
    persist::evaluate(inspection, &mut findings);
    sort_findings(&mut findings);
    findings
}

/// Orders findings most severe first, then by id, keeping rule order within an id.
pub(crate) fn sort_findings(findings: &mut [Finding]) {
    #[cfg(test)]
    evidence_schema::check(findings);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
}

pub(crate) fn finding(id: &str, severity: Severity, message: String, risk: &str) -> Finding {
    Finding {
        id: id.to_string(),
        severity,
        key: None,
        current: None,
        recommended: None,
        message,
        risk: risk.to_string(),
        evidence: Map::new(),
        advice: Vec::new(),
    }
}

impl Finding {
    pub(crate) fn about(mut self, key: &str, current: Option<&str>, recommended: Option<String>) -> Finding {
        self.key = Some(key.to_string());
        self.current = current.map(str::to_string);
        self.recommended = recommended;
        self
    }

    pub(crate) fn evidence(mut self, value: Value) -> Finding {
        if let Value::Object(map) = value {
            self.evidence.extend(map);
        }
        self
    }
}

/// A share of held ports at or above the warning share of the usable ones.
fn usage_severity(usage_pct: f64, t: &Thresholds) -> Option<Severity> {
    if usage_pct >= t.port_crit_pct {
        Some(Severity::Crit)
    } else if usage_pct >= t.port_warn_pct {
        Some(Severity::Warn)
    } else {
        None
    }
}

fn bucket_severity(bucket: &Bucket, t: &Thresholds) -> Option<Severity> {
    usage_severity(bucket.usage_pct, t)
}

/// The bind() budget of a bucket's local address, when its clients bind before they connect: then
/// bind(addr, 0) fails first, connect() without bind() skips the ports bound that way, and reuse
/// does not help. (For a client whose connect() chooses its ports the bind() budget does not
/// matter: only a client that binds spends it.)
fn bind_runs_out_first<'a>(inspection: &'a Inspection, bucket: &Bucket) -> Option<&'a LocalPorts> {
    if !bucket.bound_first {
        return None;
    }
    inspection.sockets.local_ports.iter().find(|l| l.local_ip == bucket.local_ip)
}

/// Said of a budget with nothing left: the failing calls are invisible to the rate counters.
const FAILING_NOW: &str = "the kernel counts no failed call (ActiveOpens and AttemptFails do not move), so \
rates and --sample cannot show these failures";

/// What the tracepoints measured of the failing calls of a budget with nothing left (`failed`
/// calls and the processes that made them), or [`FAILING_NOW`] where the window was not traced.
fn failing_now(inspection: &Inspection, failed: Option<(u64, f64, Vec<String>)>) -> String {
    match (&inspection.tracing, failed) {
        (Some(Tracing::Tracepoints(f)), Some((n, per_sec, by))) if n > 0 => {
            format!("{n} failed in the {:.1} s traced ({per_sec}/s), by {}", f.seconds, by.join(", "))
        }
        (Some(Tracing::Tracepoints(f)), _) => format!(
            "none failed in the {:.1} s traced (the kernel counts no failed call: only tracing shows them)",
            f.seconds
        ),
        _ => FAILING_NOW.to_string(),
    }
}

/// The traced connect() failures toward `bucket`: how many, per second, and by which processes.
fn failed_connects(inspection: &Inspection, bucket: &Bucket) -> Option<(u64, f64, Vec<String>)> {
    let Some(Tracing::Tracepoints(f)) = &inspection.tracing else { return None };
    let d = f.destinations.iter().find(|d| d.local_ip == bucket.local_ip && d.remote == bucket.remote)?;
    let by = d.pids.iter().map(|pid| process_name(f, *pid)).collect();
    Some((d.connect, d.per_sec, by))
}

/// The traced bind() failures on local address `ip`.
fn failed_binds(inspection: &Inspection, ip: &str) -> Option<(u64, f64, Vec<String>)> {
    let Some(Tracing::Tracepoints(f)) = &inspection.tracing else { return None };
    let on_it: Vec<_> = f.processes.iter().filter(|p| p.bind_local_ip.as_deref() == Some(ip)).collect();
    let n: u64 = on_it.iter().map(|p| p.bind).sum();
    let per_sec = (n as f64 / f.seconds.max(0.001) * 10.0).round() / 10.0;
    Some((n, per_sec, on_it.iter().map(|p| process_name(f, p.pid)).collect()))
}

/// `process 4242 (curl) in docker 0123456789ab`.
fn process_name(f: &crate::model::failures::Failures, pid: u32) -> String {
    match f.processes.iter().find(|p| p.pid == pid) {
        Some(p) => {
            let container = p.container.as_ref().map(|c| format!(" in {}", c.label())).unwrap_or_default();
            format!("process {pid} ({}){container}", p.command)
        }
        None => format!("process {pid}"),
    }
}

/// The arithmetic of a bucket, in words: sockets, reusable TIME_WAIT, held, bound, left.
fn bucket_arithmetic(inspection: &Inspection, bucket: &Bucket) -> String {
    let bound = inspection.sockets.ephemeral.bound_ports;
    let destination = format!("{} -> {}", bucket.local_ip, bucket.remote);
    if bucket.bound_first {
        return format!(
            "{destination}: its {} sockets are on ports bound before connect(); with the {bound} ports such \
             clients hold, {} of {} usable ephemeral ports are left ({:.1} % gone)",
            bucket.count, bucket.available, bucket.usable_ports, bucket.usage_pct
        );
    }
    let reuse = if bucket.reusable > 0 {
        format!(", {} of its {} TIME_WAIT reusable by connect() now", bucket.reusable, bucket.time_wait)
    } else {
        String::new()
    };
    let bound = if bound > 0 {
        format!(" and {bound} more are bound by clients that bind before they connect")
    } else {
        String::new()
    };
    format!(
        "{destination} holds {} of {} usable ephemeral ports ({}{reuse}){bound}: {} left ({:.1} % gone)",
        bucket.held,
        bucket.usable_ports,
        crate::words::count(bucket.count as usize, "socket"),
        bucket.available,
        bucket.usage_pct
    )
}

/// The remedies for a bucket running out, application first, each with its risk.
fn bucket_remedies(inspection: &Inspection, bucket: &Bucket) -> Vec<Advice> {
    let settings = &inspection.settings;
    let range = settings.get(PORT_RANGE).unwrap_or("32768 60999");
    let rate = bucket.usable_ports / TIME_WAIT_SECONDS;
    let mut advice = vec![
        Advice {
            action: "Reuse connections in the application: HTTP keep-alive, a connection pool sized for the \
                     load, idle timeouts longer than the gap between requests, and no close on a request \
                     timeout. A reused connection spends no new port and leaves no TIME_WAIT."
                .into(),
            risk: "None at the kernel level; it takes a code or configuration change, and the peer must \
                   allow keep-alive."
                .into(),
        },
        Advice {
            action: "Spread connections over more source addresses (each local IP has its own budget per \
                     destination) or more destination addresses or ports; if the application binds before \
                     connecting, set IP_BIND_ADDRESS_NO_PORT (Linux 4.2+) so the port is chosen per \
                     destination at connect() instead of once for all destinations."
                .into(),
            risk: "Extra addresses must be routed and allowed by the peers' firewalls; \
                   IP_BIND_ADDRESS_NO_PORT is a code change."
                .into(),
        },
        Advice {
            action: format!(
                "Widen {PORT_RANGE} (now \"{range}\", {} usable ports), keeping bounds of different parity, \
                 e.g. \"10000 65535\"; without reuse a bucket sustains about usable_ports / 60 s \
                 (here {rate}) new connections per second.",
                bucket.usable_ports
            ),
            risk: "Services listening on ports inside the new range can fail with EADDRINUSE at restart: \
                   list them in ip_local_reserved_ports; port-based firewall rules and NAT port plans may \
                   assume the old range; on Kubernetes nodes keep clear of NodePorts 30000-32767."
                .into(),
        },
    ];
    // For clients that bind first, letting connect() choose the port is the first cure.
    if bucket.bound_first {
        advice.swap(0, 1);
    }
    advice.extend(tw_reuse_remedy(inspection, bucket));
    advice
}

/// The advice to set tcp_tw_reuse, for a bucket where it would help connect().
fn tw_reuse_remedy(inspection: &Inspection, bucket: &Bucket) -> Option<Advice> {
    let settings = &inspection.settings;
    let tw_reuse = settings.get(TW_REUSE);
    // Reuse helps connect() only where it does not apply yet, where TIME_WAIT fills the bucket, and
    // not where bind() runs out first.
    if bucket.reuse_applies || tw_reuse == Some("1") || bind_runs_out_first(inspection, bucket).is_some() {
        return None;
    }
    let share = if bucket.time_wait * 2 >= bucket.count {
        "most of them are TIME_WAIT, which it can take over"
    } else {
        "but few of them are TIME_WAIT here, so it will help little"
    };
    let timestamps = if settings.int(TIMESTAMPS) == Some(0) { "; it cannot work while tcp_timestamps=0" } else { "" };
    Some(Advice {
        action: format!(
            "Set {TW_REUSE}=1 (now {}) so connect() may take over TIME_WAIT tuples older than about \
             1 s (tcp_tw_reuse_delay from Linux 6.14, default 1000 ms; 0-2 s on older kernels); \
             {share}{timestamps}.",
            tw_reuse.unwrap_or("absent")
        ),
        risk: TW_REUSE_RISK.into(),
    })
}

fn bucket_exhaustion(inspection: &Inspection, t: &Thresholds, out: &mut Vec<Finding>) {
    let sockets = &inspection.sockets;
    // A number in the evidence, as in every finding that names an integer sysctl.
    let tw_reuse = inspection.settings.int(TW_REUSE);
    let listed_over = sockets.buckets.iter().filter(|b| bucket_severity(b, t).is_some()).count();
    let maybe_more = listed_over == sockets.buckets.len() && sockets.bucket_count > sockets.buckets.len();

    for bucket in &sockets.buckets {
        let Some(severity) = bucket_severity(bucket, t) else {
            continue;
        };
        let mut message = bucket_arithmetic(inspection, bucket);
        if bucket.available == 0 {
            let failing = failing_now(inspection, failed_connects(inspection, bucket));
            message.push_str(&format!(": connect() to it is failing now with EADDRNOTAVAIL: {failing}"));
        } else {
            message.push_str("; when none is left, connect() to it fails with EADDRNOTAVAIL");
        }
        if let Some(local) = bind_runs_out_first(inspection, bucket) {
            message.push_str(&format!(
                "; the bind() budget of {} limits it: its clients bind before they connect, so bind() fails \
                 first with EADDRINUSE ({} ports left for bind(addr, 0), see ports.bind-exhaustion)",
                local.local_ip, local.available
            ));
        }
        if maybe_more {
            message.push_str(" (more buckets may be as full: raise --top to list them)");
        }
        let mut f = finding(
            "ports.bucket-exhaustion",
            severity,
            message,
            "The application fix carries no kernel risk; each sysctl step trades a safety margin for ports (see \
             each step).",
        )
        .evidence(json!({
            "local_ip": bucket.local_ip,
            "remote": bucket.remote,
            "count": bucket.count,
            "time_wait": bucket.time_wait,
            "reusable": bucket.reusable,
            "held": bucket.held,
            "usable_ports": bucket.usable_ports,
            "available": bucket.available,
            "usage_pct": bucket.usage_pct,
            "connections_per_sec_without_reuse": bucket.usable_ports / TIME_WAIT_SECONDS,
            "tcp_tw_reuse": tw_reuse,
        }));
        if let Some((n, per_sec, by)) = failed_connects(inspection, bucket) {
            f.evidence.insert("failed_connects".into(), json!(n));
            f.evidence.insert("failed_connects_per_sec".into(), json!(per_sec));
            f.evidence.insert("failing_processes".into(), json!(by));
        }
        f.advice = bucket_remedies(inspection, bucket);
        out.push(f);
    }
}

/// The bind() budget of each local address: bind(addr, 0), and every client that binds before it
/// connects, needs a port that no socket on the address holds. TIME_WAIT reuse does not help here.
/// Reported for addresses whose clients bind before they connect: for a client whose connect()
/// chooses its ports (TIME_WAIT that reuse takes over still fills the bind() budget), the
/// destination buckets say it all.
fn bind_exhaustion(inspection: &Inspection, t: &Thresholds, out: &mut Vec<Finding>) {
    for local in inspection.sockets.local_ports.iter().filter(|l| l.binds_first) {
        let Some(severity) = usage_severity(local.usage_pct, t) else { continue };
        let mut message = format!(
            "{} has {} of its {} ports for bind(addr, 0) in use ({:.1} %), {} left",
            local.local_ip, local.ports_in_use, local.usable_ports, local.usage_pct, local.available
        );
        if local.available == 0 {
            let failing = failing_now(inspection, failed_binds(inspection, &local.local_ip));
            message.push_str(&format!(": bind() to port 0 on it is failing now with EADDRINUSE: {failing}"));
        } else {
            message
                .push_str("; when none is left, bind() to port 0 fails with EADDRINUSE, for every destination at once");
        }
        message.push_str(
            "; its clients probably bind before they connect (most of its ports are of the parity bind(0) \
             takes first), so connect() without bind() skips these ports too, for every destination",
        );
        let advice = vec![
            Advice {
                action: "Let connect() choose the port: set IP_BIND_ADDRESS_NO_PORT (Linux 4.2+) before bind(), or \
                         do not bind() at all, so each destination has its own budget of every port instead \
                         of all destinations sharing one."
                    .into(),
                risk: "A code or configuration change in the client; none at the kernel level.".into(),
            },
            Advice {
                action: "Reuse connections in the application (keep-alive, a pool, no close on a request \
                         timeout): every connection spends a port for 60 s of TIME_WAIT after it closes."
                    .into(),
                risk: "None at the kernel level; the peer must allow keep-alive.".into(),
            },
            Advice {
                action: format!(
                    "Spread the binds over more local addresses, or widen {PORT_RANGE} (keeping bounds of \
                     different parity): each address has usable_ports ({}) for bind(0).",
                    local.usable_ports
                ),
                risk: "Extra addresses must be routed; a wider range can collide with services listening \
                       inside it (reserve their ports) and with port-based firewall rules."
                    .into(),
            },
        ];
        let mut f = finding(
            "ports.bind-exhaustion",
            severity,
            message,
            "The client fix carries no kernel risk; tcp_tw_reuse does not help bind(), which never takes over \
             a TIME_WAIT port.",
        )
        .evidence(json!({
            "local_ip": local.local_ip,
            "ports_in_use": local.ports_in_use,
            "usable_ports": local.usable_ports,
            "available": local.available,
            "usage_pct": local.usage_pct,
        }));
        f.advice = advice;
        out.push(f);
    }
}

/// Below this many usable ephemeral ports the pool itself is the problem: one destination then
/// sustains fewer than about 17 new connections per second without reuse (a port is held for the
/// 60 s of TIME_WAIT after each close), which a single client closing a connection per request
/// exceeds. No rule or profile recommends a change that leaves fewer.
pub(crate) const MIN_USABLE_PORTS: u32 = 1000;

/// Too few ports left to hand out at all.
fn pool_too_small(inspection: &Inspection, out: &mut Vec<Finding>) {
    let ephemeral = &inspection.sockets.ephemeral;
    if ephemeral.usable_ports >= MIN_USABLE_PORTS {
        return;
    }
    let consequence = if ephemeral.usable_ports == 0 {
        format!("no port is left: every connect() without bind() fails with EADDRNOTAVAIL, and {FAILING_NOW}")
    } else {
        format!(
            "below {MIN_USABLE_PORTS}, one destination sustains only about {} new connections per second \
             without reuse",
            ephemeral.usable_ports / TIME_WAIT_SECONDS
        )
    };
    let recommended = (ephemeral.size < MIN_USABLE_PORTS + ephemeral.reserved_in_range)
        .then(|| PortRange::DEFAULT.to_string())
        .filter(|default| inspection.settings.get(PORT_RANGE) != Some(default.as_str()));
    out.push(
        finding(
            "ports.pool-too-small",
            Severity::Crit,
            format!(
                "ip_local_port_range \"{}\" has {} ports - {} reserved - {} listening = {} usable ephemeral \
                 ports: {consequence}; widen or move the range (the reserved ports stay reserved)",
                ephemeral.range,
                ephemeral.size,
                ephemeral.reserved_in_range,
                ephemeral.listeners_in_range.len(),
                ephemeral.usable_ports
            ),
            "Moving the range changes which ports outgoing connections use (port-based firewall rules, NAT \
             port plans) and can collide with services listening inside the new range.",
        )
        .about(PORT_RANGE, inspection.settings.get(PORT_RANGE), recommended)
        .evidence(json!({
            "range": ephemeral.range,
            "size": ephemeral.size,
            "reserved_in_range": ephemeral.reserved_in_range,
            "listeners_in_range": ephemeral.listeners_in_range,
            "usable_ports": ephemeral.usable_ports,
            "minimum": MIN_USABLE_PORTS,
        })),
    );
}

/// A bucket that runs out within this many seconds at its measured growth is critical.
const SOON_CRIT_SECONDS: f64 = 300.0;
/// ... and within this many, a warning.
const SOON_WARN_SECONDS: f64 = crate::model::compare::SOON_SECONDS;

/// With `--sample`: buckets forecast to run out soon (`crate::model::forecast`: their TIME_WAIT
/// levels off above what they may hold, or their live sockets keep growing). Carries the remedies
/// itself: the bucket need not be full enough for ports.bucket-exhaustion.
fn exhaustion_soon(inspection: &Inspection, out: &mut Vec<Finding>) {
    for bucket in &inspection.sockets.buckets {
        let Some(seconds) = bucket.seconds_to_exhaustion else { continue };
        let severity = if seconds <= SOON_CRIT_SECONDS {
            Severity::Crit
        } else if seconds <= SOON_WARN_SECONDS {
            Severity::Warn
        } else {
            continue;
        };
        // Minutes only where they say more than the seconds: "6 s (1 min)" read as a contradiction.
        let when = if seconds >= 120.0 {
            format!("{seconds:.0} s ({:.0} min)", (seconds / 60.0).round())
        } else {
            format!("{seconds:.0} s")
        };
        let why = match &bucket.forecast {
            Some(forecast) => forecast_reason(bucket, forecast),
            // Clients that bind first share their bound ports: a line through that pool.
            None => format!(
                "the ports bound by clients that bind first grow by {} a second over the sample: at that rate, a \
                 straight line,",
                bucket.growth_per_sec.unwrap_or(0.0)
            ),
        };
        let mut f = finding(
            "ports.bucket-exhaustion-soon",
            severity,
            format!(
                "{}; {why} it runs out in about {when}, after which connect() to it fails \
                 with EADDRNOTAVAIL",
                bucket_arithmetic(inspection, bucket),
            ),
            "The application fix carries no kernel risk; a short sample can overstate a burst, so sample \
             again over a longer interval before changing settings.",
        )
        .evidence(json!({
            "local_ip": bucket.local_ip,
            "remote": bucket.remote,
            "count": bucket.count,
            "held": bucket.held,
            "available": bucket.available,
            "usable_ports": bucket.usable_ports,
            "growth_per_sec": bucket.growth_per_sec,
            "closes_per_sec": bucket.forecast.as_ref().map(|f| f.closes_per_sec),
            "live_growth_per_sec": bucket.forecast.as_ref().map(|f| f.live_growth_per_sec),
            "level": bucket.forecast.as_ref().map(|f| f.level),
            "seconds_to_exhaustion": seconds,
        }));
        if let Some((n, per_sec, by)) = failed_connects(inspection, bucket) {
            f.evidence.insert("failed_connects".into(), json!(n));
            f.evidence.insert("failed_connects_per_sec".into(), json!(per_sec));
            f.evidence.insert("failing_processes".into(), json!(by));
        }
        f.advice = bucket_remedies(inspection, bucket);
        out.push(f);
    }
}

/// Why a forecast says the bucket runs out, in words: a close rate whose level is above what the
/// bucket may hold, or live sockets that keep growing past a level below it.
fn forecast_reason(bucket: &Bucket, forecast: &crate::model::forecast::Forecast) -> String {
    let f = forecast;
    let levels = if bucket.reuse_applies {
        format!(
            "connect() takes its TIME_WAIT over after the reuse delay, so what it holds levels off at about {} of \
             the {} ports it may hold",
            f.level, f.room
        )
    } else {
        format!(
            "it closes {} connections a second (its TIME_WAIT of the last {} s), each holding its port for the 60 s \
             of TIME_WAIT, so it would level off at about {} held ports of the {} it may hold",
            f.closes_per_sec, f.window_seconds, f.level, f.room
        )
    };
    if f.level <= f.room && f.live_growth_per_sec > 0.0 {
        format!("{levels}, but it gains {} live sockets a second (a leak, if it lasts):", f.live_growth_per_sec)
    } else {
        format!("{levels}:")
    }
}

fn outbound_pressure(inspection: &Inspection, t: &Thresholds, out: &mut Vec<Finding>) {
    let sockets = &inspection.sockets;
    let tw = sockets.time_wait;
    let tw_reuse = inspection.settings.get(TW_REUSE);
    if tw_reuse.is_none() || tw_reuse == Some("1") || tw.outbound < tw.inbound {
        return;
    }
    // Reuse only helps where TIME_WAIT, not live connections, fills a bucket, where it does not
    // apply already (loopback under the default 2), and where bind() does not run out first.
    let Some(bucket) = sockets.buckets.iter().find(|b| {
        bucket_severity(b, t).is_some()
            && b.time_wait * 2 >= b.count
            && b.time_wait > 0
            && !b.reuse_applies
            && bind_runs_out_first(inspection, b).is_none()
    }) else {
        return;
    };
    let mut message = format!(
        "outbound TIME_WAIT fills {} -> {} ({} of {} usable ports are TIME_WAIT): with tcp_tw_reuse=1 connect() \
         can take over TIME_WAIT tuples; fix connection reuse in the application first",
        bucket.local_ip, bucket.remote, bucket.time_wait, bucket.usable_ports
    );
    let timestamps = inspection.settings.int(TIMESTAMPS);
    if timestamps == Some(0) {
        message.push_str("; it also needs tcp_timestamps, which is 0 here");
    }
    out.push(
        finding("tw-reuse.outbound-pressure", Severity::Warn, message, TW_REUSE_RISK)
            .about(TW_REUSE, tw_reuse, Some("1".into()))
            .evidence(json!({
                "time_wait_outbound": tw.outbound,
                "time_wait_inbound": tw.inbound,
                "bucket": format!("{} -> {}", bucket.local_ip, bucket.remote),
                "bucket_time_wait": bucket.time_wait,
                "bucket_usage_pct": bucket.usage_pct,
                "tcp_timestamps": timestamps,
            })),
    );
}

fn reuse_without_timestamps(inspection: &Inspection, out: &mut Vec<Finding>) {
    let settings = &inspection.settings;
    let (Some(reuse), Some(0)) = (settings.int(TW_REUSE), settings.int(TIMESTAMPS)) else {
        return;
    };
    let (severity, what) = match reuse {
        1 => (Severity::Warn, "tcp_tw_reuse=1"),
        2 => (Severity::Info, "tcp_tw_reuse=2 (loopback reuse, the default)"),
        _ => return,
    };
    out.push(
        finding(
            "tw-reuse.needs-timestamps",
            severity,
            format!(
                "{what} cannot work while tcp_timestamps=0: taking over a TIME_WAIT tuple needs the peer's \
                 timestamp, and so does the bind-then-connect reuse path"
            ),
            "Timestamps add 12 bytes of TCP options per segment; since Linux 4.10 value 1 gives each connection \
             a random offset, so the old advice to disable them to hide uptime no longer applies.",
        )
        .about(TIMESTAMPS, Some("0"), Some("1".into()))
        .evidence(json!({ "tcp_tw_reuse": reuse, "tcp_timestamps": 0 })),
    );
}

fn mostly_inbound(inspection: &Inspection, t: &Thresholds, out: &mut Vec<Finding>) {
    let tw = inspection.sockets.time_wait;
    if tw.inbound < t.min_time_wait || tw.inbound <= tw.outbound {
        return;
    }
    let mib = tw.inbound.saturating_mul(TIME_WAIT_SOCKET_BYTES) as f64 / (1024.0 * 1024.0);
    out.push(
        finding(
            "tw.mostly-inbound",
            Severity::Info,
            format!(
                "{} of {} TIME_WAIT sockets are server side (their local port is a listening port): they cost \
                 about {mib:.1} MiB of memory and no ephemeral ports; tcp_tw_reuse does not help a server (it \
                 only affects connect()), and a new SYN from a client may take over a TIME_WAIT tuple anyway",
                tw.inbound, tw.total
            ),
            "Nothing needs changing. Lowering tcp_max_tw_buckets or tcp_fin_timeout to get rid of them would \
             either do nothing (TIME_WAIT lasts 60 s) or drop TIME_WAIT's protection against late segments.",
        )
        .evidence(json!({ "time_wait_inbound": tw.inbound, "time_wait_outbound": tw.outbound, "memory_mib": (mib * 10.0).round() / 10.0 })),
    );
}

fn fin_timeout_lowered(inspection: &Inspection, out: &mut Vec<Finding>) {
    let key = "net.ipv4.tcp_fin_timeout";
    let Some(value) = inspection.settings.int(key) else {
        return;
    };
    if value >= 60 {
        return;
    }
    out.push(
        finding(
            "fin-timeout.not-time-wait",
            Severity::Info,
            format!(
                "tcp_fin_timeout={value} only shortens orphaned FIN_WAIT2; TIME_WAIT lasts 60 s whatever it says \
                 (TCP_TIMEWAIT_LEN is compiled into the kernel), so it does nothing for TIME_WAIT build-up"
            ),
            "Back at 60 s, orphaned FIN_WAIT2 sockets live longer (and hold memory longer); kept low, peers that \
             are slow to send their FIN get a reset and data on half-closed connections can be lost.",
        )
        .about(key, inspection.settings.get(key), Some("60".into()))
        .evidence(json!({ "tcp_fin_timeout": value, "time_wait_seconds": TIME_WAIT_SECONDS })),
    );
}

fn tw_recycle_enabled(inspection: &Inspection, out: &mut Vec<Finding>) {
    let key = "net.ipv4.tcp_tw_recycle";
    let Some(value) = inspection.settings.int(key) else {
        return;
    };
    if value == 0 {
        return;
    }
    out.push(
        finding(
            "tw-recycle.enabled",
            Severity::Crit,
            format!(
                "tcp_tw_recycle={value} silently drops SYNs from clients behind NAT (several machines behind \
                 one address do not send increasing timestamps); the option was removed in Linux 4.12 for this"
            ),
            "None known: TIME_WAIT sockets then live their full 60 s, bounded by tcp_max_tw_buckets.",
        )
        .about(key, inspection.settings.get(key), Some("0".into()))
        .evidence(json!({ "tcp_tw_recycle": value, "kernel": inspection.kernel })),
    );
}

fn tw_buckets(inspection: &Inspection, out: &mut Vec<Finding>) {
    let Some(current) = inspection.settings.int(MAX_TW_BUCKETS) else {
        return;
    };
    let overflow = inspection.counters.get("TCPTimeWaitOverflow").copied().unwrap_or(0);
    // Half the namespace's established hash (docs/kernel-model.md, "TIME_WAIT"), where the kernel tells its size
    // (tcp_ehash_entries, Linux 6.1+). Before that, tcp_max_orphans, which defaults to the same half
    // of the hash, is the best estimate; it exists only in the host's own namespace.
    let exact = spec_of(MAX_TW_BUCKETS).and_then(|spec| spec.computed_default(&inspection.settings));
    let estimated = inspection.settings.int("net.ipv4.tcp_max_orphans").filter(|v| *v > 0);
    let default = exact.or(estimated);
    let evidence = json!({
        "tcp_max_tw_buckets": current,
        "kernel_default": default,
        "kernel_default_estimated": exact.is_none() && default.is_some(),
        "TCPTimeWaitOverflow": overflow,
        "sockstat_tw": inspection.counters.get("sockstat_tw"),
    });

    if let Some(default) = default.filter(|d| current < *d) {
        out.push(tw_buckets_lowered(inspection, current, default, exact.is_some(), overflow).evidence(evidence));
    } else if overflow > 0 {
        out.push(tw_buckets_overflow(inspection, current, default, overflow).evidence(evidence));
    }
}

/// The finding for tcp_max_tw_buckets set below the kernel `default` (`exact`: computed, not
/// estimated).
fn tw_buckets_lowered(inspection: &Inspection, current: i64, default: i64, exact: bool, overflow: i64) -> Finding {
    let default_text = if exact {
        format!("the kernel default {default} (half the established hash)")
    } else {
        format!("about {default}, the kernel default estimated from tcp_max_orphans (the same half of the hash)")
    };
    let mut message = format!(
        "tcp_max_tw_buckets={current} is below {default_text}: when it is full, closing connections skip TIME_WAIT"
    );
    if overflow > 0 {
        message.push_str(&format!(", which already happened {overflow} times (TCPTimeWaitOverflow)"));
    }
    finding(
        "tw-buckets.lowered",
        Severity::Warn,
        message,
        &format!(
            "A full table at the default holds about {} of TIME_WAIT sockets. The limit exists only \
             against simple DoS; the kernel docs say not to lower it artificially.",
            tw_table_memory(default)
        ),
    )
    .about(MAX_TW_BUCKETS, inspection.settings.get(MAX_TW_BUCKETS), Some(default.to_string()))
}

/// The finding for a TIME_WAIT table that overflowed, recommending twice its size (at least the
/// kernel `default`).
fn tw_buckets_overflow(inspection: &Inspection, current: i64, default: Option<i64>, overflow: i64) -> Finding {
    let recommended = current.saturating_mul(2).max(default.unwrap_or(0));
    finding(
        "tw-buckets.overflow",
        Severity::Warn,
        format!(
            "{overflow} connections skipped TIME_WAIT because tcp_max_tw_buckets ({current}) was full \
             (TCPTimeWaitOverflow, counted since boot); modern kernels log nothing about it"
        ),
        &format!(
            "Each TIME_WAIT socket takes about 256 bytes: {recommended} of them take about {}. Too small \
             a table closes connections without TIME_WAIT's protection against late segments.",
            tw_table_memory(recommended)
        ),
    )
    .about(MAX_TW_BUCKETS, inspection.settings.get(MAX_TW_BUCKETS), Some(recommended.to_string()))
}

/// The memory a TIME_WAIT table of `n` sockets takes, in MiB.
fn tw_table_memory(n: i64) -> String {
    format!("{:.0} MiB", (n.max(0) as u64).saturating_mul(TIME_WAIT_SOCKET_BYTES) as f64 / 1048576.0)
}

fn reserved_ports(inspection: &Inspection) -> PortSet {
    inspection.settings.get(RESERVED_PORTS).and_then(|s| PortSet::parse(s).ok()).unwrap_or_default()
}

fn listeners_in_range(inspection: &Inspection, out: &mut Vec<Finding>) {
    let ports = &inspection.sockets.ephemeral.listeners_in_range;
    if ports.is_empty() {
        return;
    }
    let mut reserved = reserved_ports(inspection);
    ports.iter().for_each(|p| reserved.insert(*p));
    let names = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    out.push(
        finding(
            "ports.listener-in-range",
            Severity::Warn,
            format!(
                "listening port{} {names} lie{} inside ip_local_port_range ({}) and {} not reserved: while the \
                 service is down, connect() may take the port and the restart fails with EADDRINUSE",
                if ports.len() == 1 { "" } else { "s" },
                if ports.len() == 1 { "s" } else { "" },
                inspection.sockets.ephemeral.range,
                if ports.len() == 1 { "is" } else { "are" },
            ),
            &format!(
                "Reserved ports leave the ephemeral pool ({} fewer); an explicit bind() to them still works.",
                ports.len()
            ),
        )
        .about(RESERVED_PORTS, inspection.settings.get(RESERVED_PORTS), Some(reserved.to_string()))
        .evidence(json!({ "ports": ports, "range": inspection.sockets.ephemeral.range })),
    );
}

fn port_range_shape(inspection: &Inspection, out: &mut Vec<Finding>) {
    let Some(current) = inspection.settings.get(PORT_RANGE) else {
        return;
    };
    let Ok(range) = PortRange::parse(current) else {
        return;
    };
    same_parity(current, range, out);
    below_unprivileged(inspection, current, range, out);
    nodeport_overlap(inspection, current, range, out);
}

/// A port range whose bounds have the same parity.
fn same_parity(current: &str, range: PortRange, out: &mut Vec<Finding>) {
    if range.same_parity() && range.high > range.low {
        let better = PortRange { low: range.low, high: range.high - 1 };
        out.push(
            finding(
                "port-range.same-parity",
                Severity::Info,
                format!(
                    "ip_local_port_range \"{current}\" has bounds of the same parity: connect() prefers ports \
                     with the parity of the low bound and bind(0) the other, and the kernel logs a warning; the \
                     docs advise bounds of different parity"
                ),
                "One port fewer in the range.",
            )
            .about(PORT_RANGE, Some(current), Some(better.to_string()))
            .evidence(json!({ "low": range.low, "high": range.high })),
        );
    }
}

/// A port range that starts below ip_unprivileged_port_start.
fn below_unprivileged(inspection: &Inspection, current: &str, range: PortRange, out: &mut Vec<Finding>) {
    if let Some(start) = inspection.settings.int("net.ipv4.ip_unprivileged_port_start")
        && range.starts_below(start)
    {
        // Raising the low bound to the start, where that keeps enough ports; else the same size
        // moved up to the start (as far as 65535 allows). Nothing for a range wholly below it.
        let raised =
            u16::try_from(start).ok().filter(|s| *s <= range.high).map(|low| PortRange { low, high: range.high });
        let recommended = match raised {
            Some(raised) if raised.size() >= MIN_USABLE_PORTS => Some(raised),
            Some(raised) => Some(PortRange {
                low: raised.low,
                high: u16::try_from(i64::from(raised.low) + i64::from(range.size()) - 1).unwrap_or(u16::MAX),
            }),
            None => None,
        }
        .map(|r| r.to_string());
        out.push(
            finding(
                "port-range.below-unprivileged",
                Severity::Info,
                format!(
                    "ip_local_port_range starts at {} below ip_unprivileged_port_start ({start}): ephemeral ports \
                     fall among privileged ones, and a running kernel refuses this combination",
                    range.low
                ),
                "The range shrinks by the ports below the unprivileged start.",
            )
            .about(PORT_RANGE, Some(current), recommended)
            .evidence(json!({ "low": range.low, "ip_unprivileged_port_start": start })),
        );
    }
}

/// A port range that overlaps the Kubernetes NodePorts where they are not reserved.
fn nodeport_overlap(inspection: &Inspection, current: &str, range: PortRange, out: &mut Vec<Finding>) {
    let settings = &inspection.settings;
    let reserved = reserved_ports(inspection);
    let unreserved = range.intersection(KUBERNETES_NODEPORT).map_or(0, |shared| reserved.missing_in(shared));
    if unreserved > 0 {
        let mut wanted = reserved.clone();
        (KUBERNETES_NODEPORT.low..=KUBERNETES_NODEPORT.high).for_each(|p| wanted.insert(p));
        let listeners = inspection.sockets.ephemeral.listeners_in_range.iter().filter(|p| !wanted.contains(**p));
        let left = range.size() - wanted.count_in(range) - listeners.count() as u32;
        let overlap = format!(
            "ip_local_port_range \"{current}\" overlaps the Kubernetes NodePort range 30000-32767 ({unreserved} \
             ports not reserved): on a Kubernetes node, connect() can take a port kube-proxy needs"
        );
        let mut f = if left >= MIN_USABLE_PORTS {
            finding(
                "port-range.nodeport-overlap",
                Severity::Info,
                format!("{overlap} for a NodePort service"),
                &format!(
                    "Reserving them shrinks the ephemeral pool by {unreserved} ports to {left}; on hosts that are \
                     not Kubernetes nodes this finding can be ignored."
                ),
            )
            .about(RESERVED_PORTS, settings.get(RESERVED_PORTS), Some(wanted.to_string()))
        } else {
            // Reserving would leave (next to) nothing to hand out: move the range instead.
            let moved = clear_of_nodeports(range);
            finding(
                "port-range.nodeport-overlap",
                Severity::Info,
                format!(
                    "{overlap}; reserving them would leave only {left} usable ports (fewer than {MIN_USABLE_PORTS}), \
                     so move the range clear of them to \"{moved}\" instead"
                ),
                "Moving the range changes which ports outgoing connections use (port-based firewall rules, NAT \
                 port plans); on hosts that are not Kubernetes nodes this finding can be ignored.",
            )
            .about(PORT_RANGE, Some(current), Some(moved.to_string()))
        };
        f = f.evidence(json!({ "range": current, "unreserved_overlap": unreserved, "usable_if_reserved": left }));
        out.push(f);
    }
}

/// A range clear of the NodePorts: the part above them when that leaves enough ports (bounds of
/// different parity), else the kernel default, which starts above them.
fn clear_of_nodeports(range: PortRange) -> PortRange {
    let low = KUBERNETES_NODEPORT.high + 1;
    if range.high <= low {
        return PortRange::DEFAULT;
    }
    let high = if (PortRange { low, high: range.high }).same_parity() { range.high - 1 } else { range.high };
    let above = PortRange { low, high };
    if above.size() >= MIN_USABLE_PORTS { above } else { PortRange::DEFAULT }
}

fn listen_overflows(inspection: &Inspection, out: &mut Vec<Finding>) {
    let overflows = inspection.counters.get("ListenOverflows").copied().unwrap_or(0);
    if overflows <= 0 {
        return;
    }
    let key = "net.core.somaxconn";
    let somaxconn = inspection.settings.int(key);
    let recommended = somaxconn.filter(|v| *v < 4096).map(|_| "4096".to_string());
    out.push(
        finding(
            "listen.overflows",
            Severity::Warn,
            format!(
                "{overflows} connections were dropped since boot because an accept queue was full \
                 (ListenOverflows): the application accepts too slowly, or its listen() backlog, capped by \
                 net.core.somaxconn ({}), is too small",
                somaxconn.map_or("absent".to_string(), |v| v.to_string())
            ),
            "A longer queue holds more pending connections in memory and adds latency under overload instead of \
             failing fast; the application's own listen() backlog must be raised as well.",
        )
        .about(key, inspection.settings.get(key), recommended)
        .evidence(json!({
            "ListenOverflows": overflows,
            "ListenDrops": inspection.counters.get("ListenDrops"),
            "somaxconn": somaxconn,
        })),
    );
}

mod churn;
mod conntrack;
#[cfg(test)]
mod evidence_schema;
pub(crate) mod fixes;
mod persist;
pub(crate) use persist::concerning_the_host;
mod syn;
#[cfg(test)]
mod tests;
