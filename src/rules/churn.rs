//! How a client uses its connections, judged from a bucket's churn and lifetimes, measured by
//! `--sample`, and named after the processes holding the bucket's live sockets:
//! - `conn.no-reuse`: many short connections which this host closes itself, the signature of a
//!   client that does not keep connections alive (a pool too small, a client made per request);
//! - `conn.closed-at-timeout`: connections this host closes at one lifetime of a second or more,
//!   the signature of a client that closes the connection when a request times out instead of
//!   returning it to the pool (the story twtune was written for);
//! - `conn.closed-by-peer` (traced only): many short connections which the peer closes first, the
//!   signature of a server that does not keep them alive (or closes them before the client's
//!   pool does).
//!
//! Where the process was identified, the first advice is the fix for the library and version it
//! runs ([`fixes`]); the general advice and the sysctl come after.

use serde_json::json;

use crate::inspect::Inspection;
use crate::model::churn::LifetimesMethod;
use crate::model::connect::Bucket;
use crate::model::failures::Tracing;
use crate::model::histogram::Closer;
use crate::model::records::Container;
use crate::rules::fixes::{self, Signature};
use crate::rules::{Advice, Finding, Severity, finding};

/// New connections per second into one destination from which a lack of reuse is worth a finding.
pub(crate) const MIN_NEW_PER_SEC: f64 = 20.0;
/// A connection living shorter than this on average was used for a request or a few at most.
pub(crate) const MAX_LIFETIME_SECONDS: f64 = 1.0;
/// Share of the connections this host closed first (its TIME_WAIT) from which the client is the
/// one closing.
pub(crate) const MIN_CLOSED_HERE: f64 = 0.5;

/// A bucket's connections as `conn.no-reuse` reads them: new (or ended) per second, closed here
/// per second, the share closed here, their mean lifetime, and how that was measured.
struct Use {
    new_per_sec: f64,
    closed_here_per_sec: f64,
    share: f64,
    life: f64,
    method: LifetimesMethod,
}

/// What `conn.no-reuse` says of a bucket's lifetimes (` It closes each connection after one
/// request...`, or nothing), and of how far its rate can be trusted.
fn one_request_and_bound(bucket: &Bucket, method: LifetimesMethod) -> (String, &'static str) {
    let one_request = match &bucket.lifetimes {
        Some(l) if l.timed >= MIN_TIMED && l.short_share >= MIN_SHARE => format!(
            " It closes each connection after one request: {:.0} % of the {} closes {} lived under a second.",
            l.short_share * 100.0,
            l.timed,
            timed_by(l.method),
        ),
        _ => String::new(),
    };
    let bound = match method {
        LifetimesMethod::Tracepoints => "(traced: every connection its processes opened and closed in the window)",
        LifetimesMethod::Reads => {
            "(A connection the peer closes, or a TIME_WAIT taken over within the sample, leaves no trace \
             here, so the rate is a lower bound)"
        }
    };
    (one_request, bound)
}

/// What the tracepoints followed of `bucket`'s connections, where they followed any it closed;
/// else what the reads' churn says.
fn usage(bucket: &Bucket) -> Option<Use> {
    if let Some(c) = bucket.closes.as_ref().filter(|c| c.closed_here > 0) {
        let ended = c.closed_here + c.closed_by_peer + c.reset;
        return Some(Use {
            new_per_sec: (c.closed_here_per_sec * f64::from(ended) / f64::from(c.closed_here) * 10.0).round() / 10.0,
            closed_here_per_sec: c.closed_here_per_sec,
            share: (f64::from(c.closed_here) / f64::from(ended) * 100.0).round() / 100.0,
            life: c.closed_here_mean_seconds?,
            method: LifetimesMethod::Tracepoints,
        });
    }
    let churn = bucket.churn.as_ref()?;
    Some(Use {
        new_per_sec: churn.new_per_sec,
        closed_here_per_sec: churn.closed_here_per_sec,
        share: churn.closed_here_share?,
        life: churn.mean_lifetime_seconds?,
        method: LifetimesMethod::Reads,
    })
}

/// How the lifetimes were measured, in words, after "of the N closes".
fn timed_by(method: LifetimesMethod) -> &'static str {
    match method {
        LifetimesMethod::Tracepoints => "the kernel's tracepoints followed from connect() to close",
        LifetimesMethod::Reads => "the reads timed",
    }
}

pub(crate) fn no_reuse(inspection: &Inspection, out: &mut Vec<Finding>) {
    for bucket in &inspection.sockets.buckets {
        let Some(Use { new_per_sec, closed_here_per_sec, share, life, method }) = usage(bucket) else { continue };
        if new_per_sec < MIN_NEW_PER_SEC || life >= MAX_LIFETIME_SECONDS || share < MIN_CLOSED_HERE {
            continue;
        }
        let who = owner(bucket);
        let (one_request, bound) = one_request_and_bound(bucket, method);
        let mut f = finding(
            "conn.no-reuse",
            Severity::Warn,
            format!(
                "{who} opens at least {:.0} new connections per second to {} from {} and closes {:.0} % of \
                 those seen here itself, after {} on average: connections are not reused.{one_request} {bound}. \
                 Each close leaves a TIME_WAIT toward this \
                 destination for 60 s: about {:.0} of them at this rate ({} now), {}",
                new_per_sec,
                bucket.remote,
                bucket.local_ip,
                share * 100.0,
                crate::words::duration(life),
                closed_here_per_sec * 60.0,
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
            "new_per_sec": new_per_sec,
            "closed_here_per_sec": closed_here_per_sec,
            "closed_here_share": share,
            "mean_lifetime_seconds": life,
            "time_wait": bucket.time_wait,
            "owners": bucket.owners,
            "method": method,
            "closers": bucket.closes.as_ref().map(|c| &c.processes),
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
        let (Some(closed_here_per_sec), Some(lifetimes)) = (closes_per_sec(bucket), &bucket.lifetimes) else {
            continue;
        };
        let (Some(seconds), Some(share)) = (lifetimes.typical_seconds, lifetimes.typical_share) else { continue };
        if lifetimes.timed < MIN_TIMED || share < MIN_SHARE || closed_here_per_sec < MIN_CLOSES_PER_SEC {
            continue;
        }
        let mut f = finding(
            "conn.closed-at-timeout",
            Severity::Warn,
            format!(
                "{} closes its connections to {} from {} itself after {}: {:.0} % of the {} closes {} lived \
                 that long, {:.1} a second. One lifetime for most connections is the \
                 signature of a request timeout that closes the connection instead of returning it to the pool \
                 (or of one slow request per connection). Each close leaves a TIME_WAIT toward this destination \
                 for 60 s: about {:.0} of them at this rate ({} now)",
                owner(bucket),
                bucket.remote,
                bucket.local_ip,
                crate::words::duration(seconds),
                share * 100.0,
                lifetimes.timed,
                timed_by(lifetimes.method),
                closed_here_per_sec,
                closed_here_per_sec * 60.0,
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
            "closed_here_per_sec": closed_here_per_sec,
            "time_wait": bucket.time_wait,
            "owners": bucket.owners,
            "method": lifetimes.method,
            "closers": bucket.closes.as_ref().map(|c| &c.processes),
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

/// `conn.closed-by-peer`: a process opens many connections a second to one destination and the
/// peer closes most of them first. Only the tracepoints see it: a connection the peer closes
/// leaves no TIME_WAIT here.
pub(crate) fn closed_by_peer(inspection: &Inspection, out: &mut Vec<Finding>) {
    let Some(Tracing::Tracepoints(traced)) = &inspection.tracing else { return };
    for bucket in &inspection.sockets.buckets {
        let Some(c) = &bucket.closes else { continue };
        let ended = c.closed_here + c.closed_by_peer + c.reset;
        let per_sec = (f64::from(ended) / traced.seconds.max(0.001) * 10.0).round() / 10.0;
        let share = (f64::from(c.closed_by_peer) / f64::from(ended.max(1)) * 100.0).round() / 100.0;
        if per_sec < MIN_NEW_PER_SEC || share < MIN_CLOSED_HERE {
            continue;
        }
        let typical = c.peer_typical().filter(|(_, s)| *s >= MIN_SHARE);
        let when = match (typical, c.closed_by_peer_mean_seconds) {
            (Some((at, s)), _) => format!(
                ", {:.0} % of them after {}: a keep-alive or idle timeout of the server",
                s * 100.0,
                crate::words::duration(at)
            ),
            (None, Some(mean)) => format!(", after {} on average", crate::words::duration(mean)),
            (None, None) => String::new(),
        };
        let mut f = finding(
            "conn.closed-by-peer",
            Severity::Info,
            format!(
                "{} opens {per_sec:.0} connections per second to {} from {} and the peer closes {:.0} % of \
                 them first{when}. The server does not keep them open for more requests (HTTP/1.0 or \
                 `Connection: close`, a limit of one request per connection, or an idle timeout shorter than \
                 the client's pause between requests): each request pays a handshake. The TIME_WAIT is the \
                 server's, so this host's ports are not held (traced: every connection its processes opened \
                 and that ended in the window)",
                owner_of(bucket, |p| p.closed_by_peer > 0),
                bucket.remote,
                bucket.local_ip,
                share * 100.0,
            ),
            "None from the kernel: the fix is in how the client and the server keep connections.",
        )
        .evidence(json!({
            "local_ip": bucket.local_ip,
            "remote": bucket.remote,
            "new_per_sec": per_sec,
            "closed_by_peer_share": share,
            "closed_by_peer_mean_seconds": c.closed_by_peer_mean_seconds,
            "lifetime_seconds": typical.map(|(at, _)| at),
            "method": LifetimesMethod::Tracepoints,
            "closers": c.processes,
        }));
        f.advice = peer_advice(bucket);
        out.push(f);
    }
}

/// What to do when the peer closes first.
fn peer_advice(bucket: &Bucket) -> Vec<Advice> {
    vec![Advice {
        action: format!(
            "Keep connections to {} open: send requests that allow it (HTTP/1.1 without `Connection: \
             close`), let the server keep them alive (nginx `keepalive_timeout` and `keepalive_requests`, \
             Apache `KeepAlive On` and `MaxKeepAliveRequests`), and keep the client pool's idle timeout \
             below the server's keep-alive timeout, so that the client retires idle connections before the \
             server closes them under a request.",
            bucket.remote
        ),
        risk: "A server keeping connections alive holds more idle connections (memory, descriptors); when the \
               client closes first, the TIME_WAIT moves to this host."
            .into(),
    }]
}

/// The connections a bucket closed per second: traced, else as the reads' churn counts them.
fn closes_per_sec(bucket: &Bucket) -> Option<f64> {
    match (&bucket.closes, &bucket.churn, &bucket.lifetimes) {
        (Some(c), _, Some(l)) if l.method == LifetimesMethod::Tracepoints => Some(c.closed_here_per_sec),
        (_, Some(churn), _) => Some(churn.closed_here_per_sec),
        _ => None,
    }
}

/// The process that opened most of the connections the tracepoints saw this host close, or else
/// the one holding most of the bucket's live sockets (with what it runs, when that was
/// identified), in words, or why none is named. A
/// connection that lives under a millisecond is never live at a read: only tracing names its
/// process.
fn owner(bucket: &Bucket) -> String {
    owner_of(bucket, |p| p.closed_here > 0)
}

/// [`owner`], naming from the traced processes the first that `counts` (those that opened most
/// connections come first).
fn owner_of(bucket: &Bucket, counts: impl Fn(&Closer) -> bool) -> String {
    let owners = bucket.owners.as_deref().unwrap_or_default();
    // What a process runs, where the owners' lookup identified it.
    let runs = |pid: u32| {
        let identity = owners.iter().find(|o| o.pid == pid).and_then(|o| o.identity.as_ref());
        identity.and_then(fixes::describe).map(|d| format!(", running {d},")).unwrap_or_default()
    };
    let named = |pid: u32, command: &str, container: &Option<Container>| {
        let container = container.as_ref().map(|c| format!(" in {}", c.label())).unwrap_or_default();
        format!("process {pid} ({command}){container}{}", runs(pid))
    };
    let traced = bucket.closes.as_ref().and_then(|c| c.processes.iter().find(|p| counts(p)));
    if let Some(p) = traced {
        return named(p.pid, &p.command, &p.container);
    }
    match (&bucket.owners, owners.first()) {
        (_, Some(o)) => named(o.pid, &o.command, &o.container),
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
