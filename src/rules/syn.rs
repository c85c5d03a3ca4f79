//! `tcp.syn-retransmits`: connects that stall instead of failing. A SYN that gets no answer is sent
//! again when its retransmission timeout runs out (1 s at first), and connect() gives up only after
//! about two minutes of that: a NAT that drops the SYNs of new flows (a full source-NAT pool, a
//! conntrack insertion lost to a race), a server whose TIME_WAIT rejects them for their timestamps
//! (PAWS) or a full accept queue on the peer make connects slow, never an error. Judged with
//! `--sample`, from the namespace's `TCPSynRetrans` against its connects (`ActiveOpens`), and
//! pointed at the evidence twtune has of each cause (docs/kernel-model.md, "Counters").

use serde_json::{Value, json};

use crate::inspect::Inspection;
use crate::inspect::conntrack::Conntrack;
use crate::model::churn::rate;
use crate::rules::{Advice, Finding, Severity, finding};
use crate::sysctl::KernelVersion;

/// Retransmitted SYNs per connect from which connects are worth a warning, then critical. Every
/// retransmitted SYN is a connect that waited a whole retransmission timeout for it: the first
/// timeout is 1 s (`TCP_TIMEOUT_INIT`), and later ones are as long (the linear ones of Linux 6.5+)
/// or longer (doubling). So `share` seconds is the least time the mean connect waits on top of
/// its handshake. At 10 %, connects take at least 100 ms more on average, a hundred times a
/// handshake on a LAN, paid in stalls of a second or more; at 50 %, half a second on average: most
/// connects wait (or some wait again and again), and the path drops SYNs as a rule (a full NAT,
/// PAWS), no longer by chance.
const WARN_SHARE: f64 = 0.10;
const CRIT_SHARE: f64 = 0.50;
/// Fewer than one retransmitted SYN a second, or fewer than three in the whole sample, is a lost
/// packet or an unreachable peer now and then, not connects stalling.
const MIN_PER_SEC: f64 = 1.0;
const MIN_RETRANSMITS: i64 = 3;

/// The kernel from which the first SYN retransmits come 1 s apart (`tcp_syn_linear_timeouts`).
const LINEAR_SYN_TIMEOUTS: KernelVersion = KernelVersion::new(6, 5);

/// What the sample measured.
struct Measured {
    seconds: f64,
    retransmits: i64,
    connects: i64,
    accepts: i64,
}

impl Measured {
    fn share(&self) -> f64 {
        self.retransmits as f64 / self.connects as f64
    }
}

pub(crate) fn evaluate(inspection: &Inspection, out: &mut Vec<Finding>) {
    let (Some(growth), Some(seconds)) = (&inspection.counter_growth, inspection.sample_seconds) else { return };
    let grew = |name: &str| growth.get(name).copied().unwrap_or(0).max(0);
    let m = Measured {
        seconds,
        retransmits: grew("TCPSynRetrans"),
        connects: grew("ActiveOpens"),
        accepts: grew("PassiveOpens"),
    };
    // Without connects there is nothing to stall: retransmits alone are a listener's SYN-ACKs, or
    // connects older than the sample.
    if seconds <= 0.0
        || m.connects == 0
        || m.retransmits < MIN_RETRANSMITS
        || rate(m.retransmits, seconds) < MIN_PER_SEC
    {
        return;
    }
    let severity = match m.share() {
        s if s >= CRIT_SHARE => Severity::Crit,
        s if s >= WARN_SHARE => Severity::Warn,
        _ => return,
    };
    let (nat_text, nat_evidence) = nat(inspection.conntrack.as_ref());
    let causes = [nat_text, paws(&grew), accept_queue(&grew)];
    let mut f = finding(
        "tcp.syn-retransmits",
        severity,
        format!("{} What twtune sees of the causes: {}.", stalling(inspection, &m), causes.join("; ")),
        "The application and NAT fixes hold connections open or change the source addresses peers see; the \
         settings only make stalled connects fail sooner, and cure nothing.",
    )
    .evidence(json!({
        "syn_retransmits_per_sec": rate(m.retransmits, seconds),
        "active_opens_per_sec": rate(m.connects, seconds),
        "passive_opens_per_sec": rate(m.accepts, seconds),
        "share_pct": (m.share() * 1000.0).round() / 10.0,
        "interval_seconds": seconds,
        "TCPSynRetrans": m.retransmits,
        "ActiveOpens": m.connects,
        "PAWSActive": grew("PAWSActive"),
        "PAWSTimewait": grew("PAWSTimewait"),
        "ListenOverflows": grew("ListenOverflows"),
        "conntrack": nat_evidence,
    }));
    f.advice = remedies();
    out.push(f);
}

/// What the measure says: connects stalling, how long a retransmit costs, when connect() gives up.
fn stalling(inspection: &Inspection, m: &Measured) -> String {
    let schedule = match inspection.kernel_version {
        Some(v) if v >= LINEAR_SYN_TIMEOUTS => {
            "the next tcp_syn_linear_timeouts (4 by default) follow 1 s apart as well, then the wait doubles, and connect() \
             gives up after tcp_syn_retries + tcp_syn_linear_timeouts retransmits (6 + 4 by default)"
        }
        Some(_) => "each next one waits twice as long, and connect() gives up after tcp_syn_retries (6 by default)",
        None => {
            "the next ones wait as long or longer, and connect() gives up after tcp_syn_retries (6 by default) or more"
        }
    };
    let listeners = if m.accepts > 0 {
        format!(
            " (TCPSynRetrans also counts the SYN-ACKs this namespace's listeners send again, and {} connections a \
             second were accepted here)",
            rate(m.accepts, m.seconds)
        )
    } else {
        String::new()
    };
    format!(
        "{} SYNs a second were retransmitted during the sample, against {} connects a second ({:.0} %){listeners}: \
         connects are stalling, not failing. Each retransmitted SYN is a connect that waited a full second for an \
         answer that did not come (the first timeout is 1 s; {schedule}: about two minutes by default), so the \
         application sees slow connects or its own timeouts, and no error. `ss -tn state syn-sent` lists the \
         connects waiting now and their peers.",
        rate(m.retransmits, m.seconds),
        rate(m.connects, m.seconds),
        m.share() * 100.0,
    )
}

/// What connection tracking says of a NAT dropping SYNs: the fullest source-NAT bucket, and the
/// insertions lost and flows dropped during the sample.
fn nat(ct: Option<&Conntrack>) -> (String, Value) {
    let elsewhere = "a NAT in another namespace (a pod's is the node's) is audited where it runs (`twtune audit` \
                     there, or --all-netns)";
    let Some(ct) = ct else {
        return (format!("no connection tracking in this namespace, so no NAT of its own; {elsewhere}"), Value::Null);
    };
    let grew = |name: &str| ct.statistics_growth.as_ref().and_then(|g| g.get(name).copied()).unwrap_or(0);
    let (failed, drops, early) = (grew("insert_failed"), grew("drop"), grew("early_drop"));
    let fullest =
        ct.table.as_ref().and_then(|t| t.snat_buckets.iter().max_by(|a, b| a.usage_pct.total_cmp(&b.usage_pct)));
    let bucket = match (fullest, &ct.table) {
        (Some(b), _) => format!(
            "the fullest source-NAT bucket here, {} -> {} ({}), uses {:.1} % of its ports: {} free, about {} \
             more flows admitted (snat.bucket-exhaustion from 50 %)",
            b.source_ip, b.remote, b.protocol, b.usage_pct, b.free, b.available
        ),
        (None, Some(_)) => format!("this namespace's conntrack table has no source-NAT flow; {elsewhere}"),
        (None, None) => format!(
            "the conntrack table was not read ({}), so its source-NAT buckets are unknown",
            ct.table_unavailable.as_deref().unwrap_or("no dump")
        ),
    };
    let lost = if failed + drops + early > 0 {
        format!(
            "conntrack lost {failed} insertions, dropped {drops} packets of new flows and evicted {early} entries \
             during the sample (conntrack.insert-failed, conntrack.table-full)"
        )
    } else {
        "conntrack lost no insertion and dropped no new flow during the sample".to_string()
    };
    let evidence = json!({
        "insert_failed": failed,
        "drop": drops,
        "early_drop": early,
        "fullest_snat_bucket": fullest.map(|b| json!({
            "source_ip": b.source_ip, "remote": b.remote, "protocol": b.protocol,
            "usage_pct": b.usage_pct, "available": b.available,
        })),
    });
    (format!("{bucket}; {lost}"), evidence)
}

/// What the PAWS counters say: SYNs a TIME_WAIT here rejected, SYN-ACKs a connect here refused.
fn paws(grew: &dyn Fn(&str) -> i64) -> String {
    let (time_wait, active) = (grew("PAWSTimewait"), grew("PAWSActive"));
    let mut seen = Vec::new();
    if time_wait > 0 {
        seen.push(format!(
            "{time_wait} SYNs were rejected by TIME_WAIT sockets of this namespace for their timestamps (PAWSTimewait, \
             tcp.paws-timewait): it is a server of these connects too"
        ));
    }
    if active > 0 {
        seen.push(format!(
            "{active} SYN-ACKs were refused by connects here because they echoed a timestamp the connect never sent \
             (PAWSActive): a NAT or middlebox mixing up flows"
        ));
    }
    if seen.is_empty() {
        seen.push(
            "no PAWS rejection here (PAWSActive, PAWSTimewait); a server whose TIME_WAIT rejects SYNs for their \
             timestamps counts them on the server (tcp.paws-timewait there)"
                .to_string(),
        );
    }
    seen.join("; ")
}

/// What the listeners here say; a full accept queue on another host is out of sight.
fn accept_queue(grew: &dyn Fn(&str) -> i64) -> String {
    match grew("ListenOverflows") {
        0 => "a full accept queue on the peer drops SYNs out of sight of this namespace (ListenOverflows on the peer)"
            .to_string(),
        n => format!("{n} SYNs or handshakes were dropped by full accept queues of listeners here (listen.overflows)"),
    }
}

/// The remedies, the application and the NAT first, the settings last.
fn remedies() -> Vec<Advice> {
    vec![
        Advice {
            action: "Reuse connections (HTTP keep-alive, a connection pool sized for the load): a connection kept \
                     open sends no SYN, so it cannot stall on one, and takes no new NAT port or conntrack entry."
                .into(),
            risk: "Idle pooled connections hold NAT entries too (established: 5 days by default); the peer must \
                   allow keep-alive."
                .into(),
        },
        Advice {
            action: "Where a NAT's pool is full (snat.bucket-exhaustion, here or on the node): give it more source \
                     addresses (SNAT --to-source A-B) or a wider --to-ports range; where conntrack insertions fail, \
                     add --random-fully."
                .into(),
            risk: "Peers see more source addresses (allow-lists must include them); ports of a wider range must not \
                   be used by services on the NAT host; --random-fully changes the source ports a server's \
                   TIME_WAIT sees (watch tcp.paws-timewait)."
                .into(),
        },
        Advice {
            action: "Where a server rejects SYNs for PAWS (tcp.paws-timewait on the server): let the clients close \
                     first (keep-alive on the server, clients closing idle connections), or give each client its own \
                     NAT address."
                .into(),
            risk: "Idle connections held open on the server; a change of network design. Never tcp_timestamps=0, \
                   which turns off PAWS and tcp_tw_reuse everywhere."
                .into(),
        },
        Advice {
            action: "Then settings, which shorten the stall and cure nothing: a connect timeout in the application \
                     (per call, with a retry to another backend) or, for every application of the namespace, a \
                     lower net.ipv4.tcp_syn_retries makes a stalled connect fail in seconds rather than minutes; \
                     where conntrack.table-full says so, raise nf_conntrack_max on the host."
                .into(),
            risk: "A lower tcp_syn_retries fails connects one more retransmit would have saved, for every \
                   application of the namespace; retries add load to the path that drops SYNs."
                .into(),
        },
    ]
}
