//! Rules one layer down, on connection tracking and source NAT: a table near its limit, insertions
//! lost to races, a NAT port pool near its end or admitting new flows only by evicting TIME_WAIT entries, conntrack's TIME_WAIT outliving TCP's, and SYNs a
//! server's TIME_WAIT rejected for their timestamps (clients behind one NAT address).

use serde_json::json;

use crate::inspect::Inspection;
use crate::inspect::conntrack::Conntrack;
use crate::model::nat::{EvictionRule, SnatBucket};
use crate::rules::{Advice, Finding, Severity, Thresholds, finding, usage_severity};

const MAX_KEY: &str = "net.netfilter.nf_conntrack_max";
const TIME_WAIT_KEY: &str = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";
/// Shares of `nf_conntrack_max` from which a namespace's table is worth a warning, then critical.
const TABLE_WARN: f64 = 0.80;
const TABLE_CRIT: f64 = 0.95;

pub(crate) fn evaluate(inspection: &Inspection, t: &Thresholds, out: &mut Vec<Finding>) {
    if let Some(ct) = &inspection.conntrack {
        table_full(ct, out);
        insert_failed(ct, out);
        snat_exhaustion(ct, t, out);
        time_wait_longer(ct, out);
    }
    paws_time_wait(inspection, out);
}

/// A statistic's growth over `--sample`, or its count since boot.
fn grew(ct: &Conntrack, name: &str) -> (u64, bool) {
    match &ct.statistics_growth {
        Some(growth) => (growth.get(name).copied().unwrap_or(0), true),
        None => (ct.statistics.get(name).copied().unwrap_or(0), false),
    }
}

fn table_full(ct: &Conntrack, out: &mut Vec<Finding>) {
    // 0 means no limit: nothing to be full against.
    let (Some(count), Some(max)) = (ct.count, ct.max.filter(|m| *m > 0)) else { return };
    let share = count as f64 / max as f64;
    // A clash the kernel cannot resolve counts in `drop` and in `insert_failed` both (and is
    // insert-failed's business); what is left of `drop`, and `early_drop`, is a full table.
    let (all_drops, sampled) = grew(ct, "drop");
    let (failed, _) = grew(ct, "insert_failed");
    let drops = all_drops.saturating_sub(failed);
    let (early, _) = grew(ct, "early_drop");
    let severity = if share >= TABLE_CRIT || drops + early > 0 {
        Severity::Crit
    } else if share >= TABLE_WARN {
        Severity::Warn
    } else {
        return;
    };
    let when = if sampled { "during the sample" } else { "since boot" };
    let f = finding(
        "conntrack.table-full",
        severity,
        format!(
            "the connection-tracking table holds {count} entries of nf_conntrack_max {max} ({:.0} %){}: a full \
             table drops the first packet of every new flow (connects hang and retry). nf_conntrack_max is one \
             value for the whole host, and each namespace's count is held against it",
            share * 100.0,
            if drops + early > 0 {
                format!(", and {drops} new flows were dropped and {early} entries evicted early for want of room {when}")
            } else {
                String::new()
            },
        ),
        "A larger table costs kernel memory, about 300 bytes per entry (the nf_conntrack slab object and its extensions), and the hash (nf_conntrack_buckets) \
         should grow with it; it is global, so it is set on the host (or the node), not in a pod.",
    )
    .about(MAX_KEY, Some(&max.to_string()), Some(max.saturating_mul(2).max(262_144).to_string()))
    .evidence(json!({"count": count, "max": max, "drop": drops, "early_drop": early, "sampled": sampled}));
    out.push(Finding {
        advice: vec![
            Advice {
                action: "Find who fills it: the same short connections that exhaust ports fill the table (each \
                         closed flow stays nf_conntrack_tcp_timeout_time_wait, 120 s); reuse connections first."
                    .into(),
                risk: "None from the kernel.".into(),
            },
            Advice {
                action: format!("Raise {MAX_KEY} (and nf_conntrack_buckets) on the host."),
                risk: "Kernel memory, about 300 bytes per entry.".into(),
            },
        ],
        ..f
    });
}

fn insert_failed(ct: &Conntrack, out: &mut Vec<Finding>) {
    let (failed, sampled) = grew(ct, "insert_failed");
    if failed == 0 {
        return;
    }
    let (clashes, _) = grew(ct, "clashres");
    let mut f = finding(
        "conntrack.insert-failed",
        if sampled { Severity::Warn } else { Severity::Info },
        format!(
            "{failed} conntrack insertions failed {}: two packets of new flows raced for the same entry (typically \
             UDP DNS queries sent in parallel from one socket, or two flows given the same NAT source port), and \
             the losing packet was dropped; its sender retries after 1 s (TCP SYN) or 5 s (a DNS resolver), the \
             known cause of 1 s and 5 s delays on NATed pods. {clashes} clashes were resolved",
            if sampled { "during the sample" } else { "since boot" }
        ),
        "The advice changes the NAT's port choice or its path, not the kernel's safety.",
    )
    .evidence(json!({"insert_failed": failed, "clashres": clashes, "sampled": sampled}));
    f.advice = vec![
        Advice {
            action:
                "Add --random-fully to the MASQUERADE (or SNAT) rule, so that the NAT picks source ports at random \
                     rather than in sequence, and two flows rarely race for one."
                    .into(),
            risk: "The original source port is no longer kept where it was free, and the destination sees a \
                   client's flows from changing ports: on kernels whose TCP timestamp offset depends on the ports, \
                   a server's TIME_WAIT may then reject new SYNs (watch tcp.paws-timewait after the change)."
                .into(),
        },
        Advice {
            action: "Take hops out of the NAT: for DNS, a node-local cache (NodeLocal DNSCache) or resolv.conf \
                     `options single-request-reopen`; a kernel of 5.0 or later resolves more UDP clashes itself."
                .into(),
            risk: "A node-local cache is one more component to run.".into(),
        },
    ];
    out.push(f);
}

fn snat_exhaustion(ct: &Conntrack, t: &Thresholds, out: &mut Vec<Finding>) {
    let Some(table) = &ct.table else { return };
    for b in &table.snat_buckets {
        // Judged on what the NAT admits, evictions included: a pool whose TIME_WAIT new flows
        // evict still lets them through, and its reliance on eviction is a finding of its own.
        // Critical only once no new flow gets through: until then the pool is running out, not out.
        let Some(severity) = usage_severity(b.usage_pct, t) else { continue };
        let severity = if b.available == 0 { Severity::Crit } else { severity.min(Severity::Warn) };
        let mut f = finding(
            "snat.bucket-exhaustion",
            severity,
            exhaustion_text(b, table.eviction.evicts),
            "Reusing connections has no kernel risk; more NAT addresses or a wider range change what peers see.",
        )
        .evidence(json!({
            "source_ip": b.source_ip, "remote": b.remote, "count": b.count, "held": b.held,
            "time_wait": b.time_wait, "free": b.free, "available": b.available, "by_eviction": b.by_eviction,
            "usable_ports": b.usable_ports, "usage_pct": b.usage_pct, "nat_range": b.nat_range,
        }));
        f.advice = snat_advice(b);
        out.push(f);
    }
    for b in table.snat_buckets.iter().filter(|b| b.free == 0 && b.by_eviction > 0) {
        out.push(evicting(b, &table.eviction));
    }
}

/// What `snat.bucket-exhaustion` says of bucket `b`, on a kernel that evicts or not.
fn exhaustion_text(b: &SnatBucket, evicts: bool) -> String {
    let mut text = format!(
        "the source NAT toward {} {} from {} ({}) has {} live flows and {} entries in TIME_WAIT or CLOSE in its {} \
         ports, {} of them free; it admits about {} more flows ({:.1} % used) to a client that waits through its SYN \
         retransmissions",
        b.protocol,
        b.remote,
        b.source_ip,
        b.nat_rule,
        b.held,
        b.time_wait,
        b.usable_ports,
        b.free,
        b.available,
        b.usage_pct,
    );
    if b.by_eviction > 0 {
        text.push_str(&format!(", {} of them by evicting TIME_WAIT entries (snat.evicting-time-wait)", b.by_eviction));
    } else if b.time_wait > 0 && !evicts {
        text.push_str(": on this kernel (before 6.5) a TIME_WAIT entry holds its port until it ends");
    }
    text.push_str(". Beyond, a new flow's SYNs are dropped: its connect() times out, and no error says why");
    text
}

fn snat_advice(b: &SnatBucket) -> Vec<Advice> {
    vec![
        Advice {
            action: format!(
                "Reuse connections to {}: each flow closed through the NAT keeps its port for \
                 nf_conntrack_tcp_timeout_time_wait (120 s), twice as long as TCP's own TIME_WAIT.",
                b.remote
            ),
            risk: "Idle pooled connections hold NAT entries too (established: 5 days by default).".into(),
        },
        Advice {
            action: "Give the NAT more source addresses (SNAT --to-source A-B) or spread the traffic over more \
                     destination addresses or ports: the budget is per (source, destination, port)."
                .into(),
            risk: "Peers see more source addresses; allow-lists must include them.".into(),
        },
        Advice {
            action: "Widen the rule's --to-ports range, if it sets one.".into(),
            risk: "Ports in the range must not be used by services on the NAT host.".into(),
        },
    ]
}

/// `snat.evicting-time-wait`: no port of the pool is free, so every new flow gets one only by
/// evicting a TIME_WAIT entry, in the last probes of its search, if its sequence number has passed
/// the entry's: the first SYN of some flows is dropped, and their connect() waits for a retransmission.
fn evicting(b: &SnatBucket, rule: &EvictionRule) -> Finding {
    let dropped = b.first_syn_dropped_pct.unwrap_or(0.0);
    let mut f = finding(
        "snat.evicting-time-wait",
        Severity::Warn,
        format!(
            "no port of the source NAT toward {} {} from {} is free: its {} live flows and {} TIME_WAIT or CLOSE \
             entries hold all {} ports, and a new flow gets a port only by evicting a TIME_WAIT entry (Linux 6.5 \
             and later do so in the last probes of the port search, for an entry whose sequence numbers the new \
             flow has passed). About {} more flows get through so; the NAT drops the first SYN of about {dropped:.1} % \
             of them (and more as the TIME_WAIT entries run out), and each of those connects waits for a \
             retransmission: 1 s or more, in the tail of the latency. Counted for a client that waits {} s ({} SYNs)",
            b.protocol,
            b.remote,
            b.source_ip,
            b.held,
            b.time_wait,
            b.usable_ports,
            b.by_eviction,
            rule.patient_connect_seconds,
            rule.syns,
        ),
        "Reusing connections has no kernel risk; more NAT addresses or a wider range change what peers see.",
    )
    .evidence(json!({
        "source_ip": b.source_ip, "remote": b.remote, "held": b.held, "time_wait": b.time_wait,
        "free": b.free, "by_eviction": b.by_eviction, "first_syn_dropped_pct": b.first_syn_dropped_pct,
        "usable_ports": b.usable_ports,
    }));
    f.advice = snat_advice(b);
    f
}

fn time_wait_longer(ct: &Conntrack, out: &mut Vec<Finding>) {
    let Some(seconds) = ct.tcp_timeouts.get("time_wait").copied() else { return };
    let Some(table) = &ct.table else { return };
    let closed: u32 = table.snat_buckets.iter().map(|b| b.time_wait).sum();
    if seconds <= 60 || closed == 0 {
        return;
    }
    let f = finding(
        "conntrack.timewait-longer-than-tcp",
        Severity::Info,
        format!(
            "conntrack keeps a closed TCP flow {seconds} s ({TIME_WAIT_KEY}), while TCP's TIME_WAIT lasts 60 s: \
             through this NAT, {closed} closed flows hold their translated source port, so a pool of remapped \
             ports drains at half the rate a host's own ports do (a client whose own port the NAT kept takes its \
             old entry over with its next SYN)"
        ),
        "Shorter than TCP's 60 s, late segments of an old flow can be matched to a new flow on the same tuple; \
         60 s matches TCP.",
    )
    .about(TIME_WAIT_KEY, Some(&seconds.to_string()), Some("60".into()))
    .evidence(json!({"timeout": seconds, "natted_time_wait": closed}));
    out.push(f);
}

fn paws_time_wait(inspection: &Inspection, out: &mut Vec<Finding>) {
    let since_boot = inspection.counters.get("PAWSTimewait").copied().unwrap_or(0);
    let sampled = inspection.counter_growth.as_ref().map(|g| g.get("PAWSTimewait").copied().unwrap_or(0));
    let (rejected, severity, when) = match sampled {
        Some(0) | None if since_boot == 0 => return,
        // Sampled and nothing now: only the past; say so at info.
        Some(0) => (since_boot, Severity::Info, "since boot (none during the sample)".to_string()),
        Some(grew) => (grew, Severity::Warn, "during the sample".to_string()),
        None => (since_boot, Severity::Info, "since boot".to_string()),
    };
    let f = finding(
        "tcp.paws-timewait",
        severity,
        format!(
            "{rejected} segments, mostly SYNs, were rejected {when} by a TIME_WAIT socket of this host \
             because their TCP timestamps went backwards (PAWSTimewait): typical of several clients behind one \
             NAT address, or of a NAT that rewrites a client's ports, connecting to a server that closes first. The client retransmits its SYN after 1 s, so such connects \
             take over a second"
        ),
        "Disabling tcp_timestamps would stop the rejections but also PAWS protection and tcp_tw_reuse everywhere: \
         do not.",
    )
    .evidence(json!({"PAWSTimewait": since_boot, "during_sample": sampled}));
    out.push(Finding {
        advice: vec![
            Advice {
                action: "Let the clients close first (HTTP keep-alive on the server, the client closing idle \
                         connections), so that TIME_WAIT sits on the clients, not on this server."
                    .into(),
                risk: "Idle connections held open on the server.".into(),
            },
            Advice {
                action: "Avoid source NAT in front of this server where the clients can reach it directly, or give \
                         each client its own NAT address."
                    .into(),
                risk: "A change of network design.".into(),
            },
        ],
        ..f
    });
}
