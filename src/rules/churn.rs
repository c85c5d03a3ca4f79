//! How a client uses its connections, judged from a bucket's churn and lifetimes, measured by
//! `--sample`, and named after the processes holding the bucket's live sockets:
//! - `conn.no-reuse`: many short connections which this host closes itself, the signature of a
//!   client that does not keep connections alive (a pool too small, a client made per request);
//! - `conn.closed-at-timeout`: connections this host closes at one lifetime of a second or more,
//!   the signature of a client that closes the connection when a request times out instead of
//!   returning it to the pool (the story twtune was written for).
//!
//! Where the process was identified, the first advice is the fix for the library and version it
//! runs ([`fixes`]); the general advice and the sysctl come after.

use serde_json::json;

use crate::inspect::Inspection;
use crate::model::connect::Bucket;
use crate::rules::fixes::{self, Signature};
use crate::rules::{Advice, Finding, Severity, finding};

/// New connections per second into one destination from which a lack of reuse is worth a finding.
pub(crate) const MIN_NEW_PER_SEC: f64 = 20.0;
/// A connection living shorter than this on average was used for a request or a few at most.
pub(crate) const MAX_LIFETIME_SECONDS: f64 = 1.0;
/// Share of the connections this host closed first (its TIME_WAIT) from which the client is the
/// one closing.
pub(crate) const MIN_CLOSED_HERE: f64 = 0.5;

pub(crate) fn no_reuse(inspection: &Inspection, out: &mut Vec<Finding>) {
    for bucket in &inspection.sockets.buckets {
        let Some(churn) = &bucket.churn else { continue };
        let (Some(life), Some(share)) = (churn.mean_lifetime_seconds, churn.closed_here_share) else { continue };
        if churn.new_per_sec < MIN_NEW_PER_SEC || life >= MAX_LIFETIME_SECONDS || share < MIN_CLOSED_HERE {
            continue;
        }
        let who = owner(bucket);
        let one_request = match &bucket.lifetimes {
            Some(l) if l.timed >= MIN_TIMED && l.short_share >= MIN_SHARE => format!(
                " It closes each connection after one request: {:.0} % of the {} closes the reads timed lived \
                 under a second.",
                l.short_share * 100.0,
                l.timed
            ),
            _ => String::new(),
        };
        let mut f = finding(
            "conn.no-reuse",
            Severity::Warn,
            format!(
                "{who} opens at least {:.0} new connections per second to {} from {} and closes {:.0} % of \
                 those seen here itself, after {} on average: connections are not reused.{one_request} (A connection \
                 the peer closes, or a TIME_WAIT taken over within the sample, leaves no trace here, so \
                 the rate is a lower bound). Each close leaves a TIME_WAIT toward this \
                 destination for 60 s: about {:.0} of them at this rate ({} now), {}",
                churn.new_per_sec,
                bucket.remote,
                bucket.local_ip,
                share * 100.0,
                if life < 1.0 { format!("{:.0} ms", life * 1000.0) } else { format!("{life:.1} s") },
                churn.closed_here_per_sec * 60.0,
                bucket.time_wait,
                if bucket.reuse_applies {
                    "which connect() may take over once older than tcp_tw_reuse_delay, at the cost of a \
                     handshake per request"
                        .to_string()
                } else {
                    format!("each holding one of the {} ports connect() has for it", bucket.usable_ports)
                },
            ),
            "None from the kernel: the fix is in the client. Keeping connections open costs a socket and \
             memory per idle connection on both ends, and a pool must not outlive the server's idle timeout.",
        )
        .evidence(json!({
            "local_ip": bucket.local_ip,
            "remote": bucket.remote,
            "new_per_sec": churn.new_per_sec,
            "closed_here_per_sec": churn.closed_here_per_sec,
            "closed_here_share": share,
            "mean_lifetime_seconds": life,
            "time_wait": bucket.time_wait,
            "owners": bucket.owners,
        }));
        f.advice = library_fix(bucket, Signature::NoReuse);
        f.advice.extend(advice(bucket));
        out.push(f);
    }
}

/// Closes per second from which a close at one lifetime is worth a finding (60 TIME_WAIT a minute).
pub(crate) const MIN_CLOSES_PER_SEC: f64 = 1.0;
/// Closes the reads must have timed before their lifetimes say anything.
pub(crate) const MIN_TIMED: u32 = 5;
/// Share of the timed closes that makes a signature.
pub(crate) const MIN_SHARE: f64 = 0.7;

/// `conn.closed-at-timeout`: most connections this host closes itself live one lifetime of a
/// second or more.
pub(crate) fn closed_at_timeout(inspection: &Inspection, out: &mut Vec<Finding>) {
    for bucket in &inspection.sockets.buckets {
        let (Some(churn), Some(lifetimes)) = (&bucket.churn, &bucket.lifetimes) else { continue };
        let (Some(seconds), Some(share)) = (lifetimes.typical_seconds, lifetimes.typical_share) else { continue };
        if lifetimes.timed < MIN_TIMED || share < MIN_SHARE || churn.closed_here_per_sec < MIN_CLOSES_PER_SEC {
            continue;
        }
        let mut f = finding(
            "conn.closed-at-timeout",
            Severity::Warn,
            format!(
                "{} closes its connections to {} from {} itself after {seconds:.1} s: {:.0} % of the {} closes the \
                 reads timed lived that long, {:.1} a second. One lifetime for most connections is the \
                 signature of a request timeout that closes the connection instead of returning it to the pool \
                 (or of one slow request per connection). Each close leaves a TIME_WAIT toward this destination \
                 for 60 s: about {:.0} of them at this rate ({} now)",
                owner(bucket),
                bucket.remote,
                bucket.local_ip,
                share * 100.0,
                lifetimes.timed,
                churn.closed_here_per_sec,
                churn.closed_here_per_sec * 60.0,
                bucket.time_wait,
            ),
            "None from the kernel: the fix is in the client's timeout handling.",
        )
        .evidence(json!({
            "local_ip": bucket.local_ip,
            "remote": bucket.remote,
            "lifetime_seconds": seconds,
            "lifetime_share": share,
            "closes_timed": lifetimes.timed,
            "closed_here_per_sec": churn.closed_here_per_sec,
            "time_wait": bucket.time_wait,
            "owners": bucket.owners,
        }));
        f.advice = library_fix(bucket, Signature::ClosedAtTimeout);
        f.advice.extend(timeout_advice(bucket, seconds));
        f.advice.extend(advice(bucket));
        out.push(f);
    }
}

/// The fix for what the bucket's first owner runs, when it was identified.
fn library_fix(bucket: &Bucket, signature: Signature) -> Vec<Advice> {
    bucket.owners.as_deref().and_then(<[_]>::first).map(|o| fixes::advice_for(o, signature)).unwrap_or_default()
}

/// The process holding most of a bucket's live sockets, in words (with what it runs, when that
/// was identified), or why none is named.
fn owner(bucket: &Bucket) -> String {
    let owners = bucket.owners.as_deref().unwrap_or_default();
    match (&bucket.owners, owners.first()) {
        (_, Some(o)) => {
            let container = o.container.as_ref().map(|c| format!(" in {}", c.label())).unwrap_or_default();
            let runs =
                o.identity.as_ref().and_then(fixes::describe).map(|d| format!(", running {d},")).unwrap_or_default();
            format!("process {} ({}){container}{runs}", o.pid, o.command)
        }
        (Some(_), None) => "a process whose socket was not live at any read (find it with `ss -tnp`)".into(),
        (None, None) => "a process twtune could not look up (run as root to see it)".into(),
    }
}

/// The first step for a client that closes on a timeout.
fn timeout_advice(bucket: &Bucket, seconds: f64) -> Vec<Advice> {
    vec![Advice {
        action: format!(
            "Find what times out after {seconds:.1} s in the client of {}: on a request timeout, abandon or \
             drain the request and return the connection to the pool instead of closing it (or raise the \
             timeout above the server's response time); a client library that changed this in an upgrade is \
             the usual cause.",
            bucket.remote
        ),
        risk: "Keeping a connection whose request timed out needs the response drained or the request \
               cancelled at the protocol level (HTTP/2 stream reset); HTTP/1.1 connections with a pending \
               response cannot be reused until it arrives."
            .into(),
    }]
}

fn advice(bucket: &Bucket) -> Vec<Advice> {
    let remote = &bucket.remote;
    let mut advice = vec![
        Advice {
            action: format!(
                "Reuse connections to {remote}: one long-lived client (or connection pool) per process with \
                 HTTP keep-alive, sized for the concurrency you need. A client (Go http.Client, Python \
                 requests.Session, a Java HttpClient) created per request opens a new connection every time."
            ),
            risk: "A larger pool keeps more idle sockets open on both ends; set a bound.".into(),
        },
        Advice {
            action: "Keep the pool's idle limits above the request rate: Go's http.Transport keeps only \
                     MaxIdleConnsPerHost = 2 idle connections per host by default, so a burst of concurrent \
                     requests closes all but two when they finish; raise it to the concurrency to this host."
                .into(),
            risk: "More idle connections held between bursts.".into(),
        },
        Advice {
            action: "Check idle and request timeouts: the idle timeout must be longer than the interval \
                     between requests and shorter than the server's; a timeout given as a bare number where \
                     the unit is nanoseconds (a Go time.Duration of 30 is 30 ns) closes every idle connection \
                     at once. A client that closes the connection on a request timeout, instead of draining \
                     or abandoning just the request, turns every slow response into a new connection."
                .into(),
            risk: "A longer idle timeout than the server's meets connections the server already closed (a \
                   reset on the next request); keep it below the server's."
                .into(),
        },
        Advice {
            action: "If a proxy makes these connections: nginx needs `keepalive N;` in the upstream block plus \
                     `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";`; haproxy needs \
                     `http-reuse safe` (the default since 2.0) and no `option httpclose`."
                .into(),
            risk: "Upstream keep-alive holds idle connections to each backend; size it per worker.".into(),
        },
    ];
    // Reuse already applies to this destination: the kernel has nothing more to give.
    if !bucket.reuse_applies {
        advice.push(Advice {
            action: "Only if the client cannot change: on a kernel with TCP timestamps, net.ipv4.tcp_tw_reuse=1 \
                     lets connect() take over this destination's TIME_WAIT ports after tcp_tw_reuse_delay \
                     (1 s by default)."
                .into(),
            risk: "Relies on the peer's timestamps to reject old segments; it treats the symptom (ports), \
                   not the cost of a handshake per request."
                .into(),
        });
    }
    advice
}
