//! The evidence of an audit: which socket source to read, in which network namespace, once or
//! twice (`--sample`), as a [`Request`] says. Everything here happens before the rules run.
//!
//! Another namespace is entered on a dedicated thread with setns(2): that thread's `/proc/sys`
//! and netlink sockets then belong to the target namespace, and `/proc/thread-self/net` holds its
//! tables (`/proc/net` keeps showing the process's own namespace).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::inspect::netlink::NetlinkSocketSource;
use crate::inspect::netns::{self, Namespaces};
use crate::inspect::owners;
use crate::inspect::proc_tcp::ProcSocketSource;
use crate::inspect::source::SocketSource;
use crate::inspect::trace;
use crate::inspect::{self, Inspection};
use crate::model::churn::{self, Rates};
use crate::model::failures::Tracing;
use crate::model::records::Owner;
use crate::model::table::Tracking;
use crate::model::{compare, nat};
use crate::root::Root;

/// Which network namespace to audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NetnsTarget {
    /// The caller's own.
    Own,
    /// A namespace file: `/run/netns/NAME` or `/proc/PID/ns/net`.
    File(PathBuf),
    /// A `--netns` value that is not a name.
    Invalid(String),
    /// Every one of the host (`--all-netns`): see [`super::sweep`].
    All,
}

/// Where the socket table is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketSourceChoice {
    Auto,
    Netlink,
    Proc,
}

/// What to inspect, and how.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Request {
    /// The directory standing for `/`.
    pub root: PathBuf,
    pub netns: NetnsTarget,
    pub socket_source: SocketSourceChoice,
    /// How many destination buckets to list.
    pub top: usize,
    /// Interval between the two reads of `--sample`.
    pub sample: Option<Duration>,
    /// Whether to arm the kernel's tracepoints for the window of `--sample` (not `--no-trace`).
    pub trace: bool,
}

/// What an audit collected.
pub(crate) struct Evidence {
    pub inspection: Inspection,
    pub rates: Option<Rates>,
    /// How many other network namespaces the host has, where the live host could be listed.
    pub other_namespaces: Option<OtherNamespaces>,
}

/// The other network namespaces a single audit saw (and did not audit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct OtherNamespaces {
    pub count: usize,
    /// Whether every process could be looked at (root); otherwise `count` is a lower bound.
    pub complete: bool,
}

/// Whose fd tables hold the sockets of the audited namespace.
#[derive(Clone, Debug)]
pub(super) enum Owners {
    /// The processes of namespace `inode`, as last listed.
    Pids {
        inode: u64,
        pids: Vec<u32>,
    },
    Unavailable(&'static str),
}

impl Owners {
    /// The processes of namespace `inode`, where the live host can be read as root.
    pub(super) fn of(live: bool, namespaces: Option<&Namespaces>, inode: Option<u64>) -> Owners {
        if !live {
            return Owners::Unavailable("an offline tree has no processes");
        }
        if !rustix::process::geteuid().is_root() {
            return Owners::Unavailable("finding the process of a socket reads other users' /proc/PID/fd: run as root");
        }
        let (Some(namespaces), Some(inode)) = (namespaces, inode) else {
            return Owners::Unavailable("the processes of the namespace could not be listed");
        };
        Owners::Pids { inode, pids: namespaces.get(inode).map(|ns| ns.all_pids.clone()).unwrap_or_default() }
    }

    /// The same namespace with its processes listed anew (a sample's second read comes seconds
    /// after the first, and clients started per request come and go).
    pub(super) fn refreshed(&self, namespaces: Option<&Namespaces>) -> Owners {
        match (self, namespaces) {
            (Owners::Pids { inode, .. }, Some(namespaces)) => Owners::Pids {
                inode: *inode,
                pids: namespaces.get(*inode).map(|ns| ns.all_pids.clone()).unwrap_or_default(),
            },
            _ => self.clone(),
        }
    }

    /// Looks up the owners of `inspection`'s sockets; a lookup cut short by its budget is also a
    /// warning of the report.
    fn attribute(&self, inspection: &mut Inspection) -> Result<()> {
        self.attribute_sockets(&mut inspection.sockets)?;
        if let (Owners::Pids { .. }, Some(partly)) = (self, &inspection.sockets.owners_unavailable) {
            inspection.warnings.push(format!("owners of sockets {partly}"));
        }
        Ok(())
    }

    fn attribute_sockets(&self, sockets: &mut crate::model::table::SocketSummary) -> Result<()> {
        match self {
            Owners::Pids { pids, .. } => owners::attribute(sockets, Some(pids), None),
            Owners::Unavailable(why) => owners::attribute(sockets, None, Some(why)),
        }
    }

    fn wanted(&self) -> bool {
        matches!(self, Owners::Pids { .. })
    }
}

/// Collects the evidence `request` asks for, reading `extra_keys` besides the audited ones.
pub(crate) fn collect(request: &Request, extra_keys: Vec<String>) -> Result<Evidence> {
    super::limits::raise_open_files();
    let root = Root::open(&request.root)?;
    // Listing the namespaces is cheap (one stat per process) and tells the owners of sockets.
    let namespaces = match root.is_live().then(netns::enumerate) {
        Some(Ok(namespaces)) => Some(namespaces),
        Some(Err(e @ Error::OutOfFiles { .. })) => return Err(e),
        Some(Err(_)) | None => None,
    };
    let others = |inode: Option<u64>| {
        let namespaces = namespaces.as_ref()?;
        let count = namespaces.list.iter().filter(|ns| Some(ns.inode) != inode).count();
        Some(OtherNamespaces { count, complete: namespaces.unreadable == 0 })
    };
    let initial = |inode: Option<u64>| namespaces.as_ref()?.is_initial(inode?);
    match &request.netns {
        NetnsTarget::Own => {
            let inode = if root.is_live() { netns::current().ok() } else { None };
            let owners = Owners::of(root.is_live(), namespaces.as_ref(), inode);
            let mut evidence = collect_in(&root, request, &extra_keys, &owners)?;
            evidence.other_namespaces = others(inode);
            evidence.inspection.initial_namespace = initial(inode);
            Ok(evidence)
        }
        // The caller sweeps instead: one evidence per namespace.
        NetnsTarget::All => Err(Error::Usage("--all-netns gives one report per namespace; see `sweep`".into())),
        NetnsTarget::Invalid(name) => Err(Error::Usage(format!(
            "--netns {name:?}: give the name of a namespace in /run/netns (as `ip netns list` shows), not a path"
        ))),
        NetnsTarget::File(path) => {
            let namespace = netns::open_namespace_file(path).map_err(|e| namespace_error(path, &e))?;
            let inode = netns::inode_of(&namespace).ok();
            let owners = Owners::of(true, namespaces.as_ref(), inode);
            let request = request.clone();
            let path = path.clone();
            let mut evidence = std::thread::spawn(move || {
                enter(&namespace, &path)?;
                collect_in(&Root::thread_network_namespace()?, &request, &extra_keys, &owners)
            })
            .join()
            .map_err(|_| Error::NamespaceThread)??;
            evidence.other_namespaces = others(inode);
            evidence.inspection.initial_namespace = initial(inode);
            Ok(evidence)
        }
    }
}

/// Moves the calling thread into the network namespace open as `namespace` (read from `path`).
/// setns(2) refuses what is not a network namespace.
pub(super) fn enter(namespace: &OwnedFd, path: &Path) -> Result<()> {
    rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .map_err(|e| namespace_error(path, &e.into()))
}

pub(super) fn namespace_error(path: &Path, e: &std::io::Error) -> Error {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such network namespace".to_string(),
        std::io::ErrorKind::PermissionDenied => format!("{e}: entering a network namespace needs root (CAP_SYS_ADMIN)"),
        _ => e.to_string(),
    };
    Error::Namespace { path: path.to_path_buf(), problem: what }
}

/// One inspection of `root` with the default socket source (netlink on a live system), for the
/// commands that plan changes (`apply`, `export --recommended`), in the calling thread's network
/// namespace: the one their writes go to.
pub(crate) fn read_default(root: &Root, extra_keys: &[String]) -> Result<Inspection> {
    let (mut source, fallback) = open_source(root, SocketSourceChoice::Auto)?;
    let mut inspection = inspect::read(root, source.as_mut(), 10, extra_keys, Tracking::default())?;
    inspection.warnings.extend(fallback);
    if root.is_live() {
        inspection.initial_namespace = netns::current().ok().and_then(netns::is_initial);
    }
    Ok(inspection)
}

/// Collects beneath `root` in the calling thread's network namespace: one read, or two `--sample`
/// apart.
pub(super) fn collect_in(root: &Root, request: &Request, extra_keys: &[String], owners: &Owners) -> Result<Evidence> {
    let Some(interval) = request.sample else {
        let (mut source, fallback) = open_source(root, request.socket_source)?;
        let tracking = Tracking { owners: owners.wanted(), ..Tracking::default() };
        let mut inspection = inspect::read(root, source.as_mut(), request.top, extra_keys, tracking)?;
        owners.attribute(&mut inspection)?;
        inspection.warnings.extend(fallback);
        return Ok(Evidence { inspection, rates: None, other_namespaces: None });
    };
    // Armed before the first read and disarmed after the second; on an error in between, the
    // window is dropped, which closes its events.
    let window = arm_window(root, request);
    let mut first = first_read(root, request, extra_keys, owners)?;
    let owners = between_reads(root, request, owners, &mut first, interval)?;
    let until = first.taken + interval;
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let mut evidence = second_read(root, request, extra_keys, &owners, first)?;
    evidence.inspection.tracing = Some(finish_window(window, &mut evidence.inspection));
    Ok(evidence)
}

/// Arms the tracepoints for a `--sample` window (or a watch) on the live system, or says why not.
pub(super) fn arm_window(root: &Root, request: &Request) -> std::result::Result<trace::Window, String> {
    if !request.trace {
        return Err("--no-trace".into());
    }
    if !root.is_live() {
        return Err("an offline tree has no calls to trace".into());
    }
    trace::arm()
}

/// Disarms a window and gives the namespace this thread audits what it traced.
fn finish_window(window: std::result::Result<trace::Window, String>, inspection: &mut Inspection) -> Tracing {
    let traced = window.map(trace::Window::finish);
    match netns::current() {
        Ok(inode) => traced_in(&traced, inode, inspection),
        Err(e) => Tracing::Untraced { reason: format!("the audited namespace could not be told: {e}") },
    }
}

/// What `traced` saw of the processes of namespace `inode`, read as `inspection`: its failed
/// calls, the failed binds placed on the local address that has no port left for them (if only
/// one has none), and the connections its processes opened, on their buckets.
pub(super) fn traced_in(
    traced: &std::result::Result<trace::Traced, String>,
    inode: u64,
    inspection: &mut Inspection,
) -> Tracing {
    let traced = match traced {
        Ok(traced) => traced,
        Err(reason) => return Tracing::Untraced { reason: reason.clone() },
    };
    let (mut tracing, mut closes) = traced.of(inode);
    if let Tracing::Tracepoints(failures) = &mut tracing {
        let sockets = &inspection.sockets;
        let exhausted: Vec<&str> =
            sockets.local_ports.iter().filter(|l| l.available == 0).map(|l| l.local_ip.as_str()).collect();
        let held: Vec<(u32, &str)> = sockets
            .buckets
            .iter()
            .flat_map(|b| b.owners.iter().flatten().map(|o| (o.pid, b.local_ip.as_str())))
            .collect();
        failures.place_binds(&exhausted, &held);
        attach_closes(&mut inspection.sockets.buckets, &mut closes);
    }
    tracing
}

/// Gives each bucket the connections the tracepoints followed to it, and their lifetimes in
/// place of what the reads made of them: each connection timed from connect() to its close.
fn attach_closes(
    buckets: &mut [crate::model::connect::Bucket],
    closes: &mut std::collections::BTreeMap<crate::model::connect::BucketKey, crate::model::histogram::BucketCloses>,
) {
    for bucket in buckets {
        let Some(key) = bucket.key() else { continue };
        let Some(traced) = closes.remove(&key) else { continue };
        if traced.closed_here > 0 {
            bucket.lifetimes = Some(traced.lifetimes());
        }
        bucket.closes = Some(traced);
    }
}

/// Reads between the two of a `--sample`, every half second (at most [`MAX_BETWEEN`]): the
/// socket table and its owners only, to follow connections from read to read (how long those that
/// close lived) and to find the processes of short-lived ones, which a read sees live only by
/// chance. Returns the owners as last listed.
fn between_reads(
    root: &Root,
    request: &Request,
    owners: &Owners,
    first: &mut FirstRead,
    interval: Duration,
) -> Result<Owners> {
    let step = (interval / (MAX_BETWEEN + 1)).max(BETWEEN_STEP);
    let end = first.taken + interval;
    let mut owners = owners.clone();
    let mut at = first.taken + step;
    // A read that takes longer than a step (a host of many processes) delays the next, never the end.
    while at + step / 2 < end {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let listed = match netns::enumerate() {
            Ok(listed) => Some(listed),
            Err(e @ Error::OutOfFiles { .. }) => return Err(e),
            Err(_) => None,
        };
        owners = owners.refreshed(listed.as_ref());
        let (mut source, _) = open_source(root, request.socket_source)?;
        let mut followed = first.inspection.sockets.followed.take().unwrap_or_default();
        followed.begin_read(millis(first.taken.elapsed()));
        let tracking = Tracking { owners: owners.wanted(), followed: Some(followed), ..Tracking::default() };
        let mut sockets = inspect::read_sockets(source.as_mut(), &first.inspection.settings, tracking)?;
        owners.attribute_sockets(&mut sockets)?;
        first.seen_owners.add(&sockets);
        first.inspection.sockets.followed = sockets.followed.take();
        at = (at + step).max(Instant::now());
    }
    Ok(owners)
}

/// Reads between the two of a `--sample`: at most this many, and at least this far apart (reads a
/// second or more apart time no lifetime: a 40 s sample is read every half second, a longer one
/// less often).
const MAX_BETWEEN: u32 = 79;
const BETWEEN_STEP: Duration = Duration::from_millis(500);

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// The owners each bucket had at any read of a window, by pid, with the most sockets seen.
#[derive(Default)]
pub(super) struct SeenOwners(std::collections::HashMap<(String, String), std::collections::HashMap<u32, Owner>>);

impl SeenOwners {
    fn add(&mut self, sockets: &crate::model::table::SocketSummary) {
        for bucket in &sockets.buckets {
            let Some(owners) = &bucket.owners else { continue };
            let seen = self.0.entry((bucket.local_ip.clone(), bucket.remote.clone())).or_default();
            for owner in owners {
                let kept = seen.entry(owner.pid).or_insert_with(|| owner.clone());
                kept.sockets = kept.sockets.max(owner.sockets);
            }
        }
    }

    /// Gives each bucket of `sockets` whose owners were looked up the owners seen at any read.
    fn fill(&self, sockets: &mut crate::model::table::SocketSummary) {
        for bucket in &mut sockets.buckets {
            let (Some(owners), Some(seen)) =
                (&mut bucket.owners, self.0.get(&(bucket.local_ip.clone(), bucket.remote.clone())))
            else {
                continue;
            };
            for owner in seen.values() {
                match owners.iter_mut().find(|o| o.pid == owner.pid) {
                    Some(found) => found.sockets = found.sockets.max(owner.sockets),
                    None => owners.push(owner.clone()),
                }
            }
            owners.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.pid.cmp(&b.pid)));
            owners.truncate(crate::inspect::owners::MAX_OWNERS);
        }
    }
}

/// The first read of a `--sample`, waiting for the second.
pub(super) struct FirstRead {
    pub(super) inspection: Inspection,
    /// When its socket table had been read.
    taken: Instant,
    /// Whether its owners were looked up at this read (not carried from an older one).
    owners_fresh: bool,
    /// The owners found at this read and the reads between it and the next.
    seen_owners: SeenOwners,
    /// `twtune watch`: what earlier reads' buckets spent, to measure growth over a longer time.
    baselines: std::collections::VecDeque<(Instant, compare::Baseline)>,
}

/// The first read lists every bucket, so that any bucket of the second can be compared, and records
/// which connections each holds, so that the second can tell the new ones.
pub(super) fn first_read(root: &Root, request: &Request, extra_keys: &[String], owners: &Owners) -> Result<FirstRead> {
    let (mut source, fallback) = open_source(root, request.socket_source)?;
    let mut followed = crate::model::lifetimes::Followed::default();
    followed.begin_read(0);
    let record = Tracking { owners: owners.wanted(), record: true, followed: Some(followed), ..Tracking::default() };
    let mut inspection = inspect::read(root, source.as_mut(), usize::MAX, extra_keys, record)?;
    let taken = Instant::now();
    owners.attribute(&mut inspection)?;
    inspection.warnings.extend(fallback);
    let mut seen_owners = SeenOwners::default();
    seen_owners.add(&inspection.sockets);
    Ok(FirstRead { inspection, taken, owners_fresh: true, seen_owners, baselines: Default::default() })
}

/// The second read of a `--sample`, compared with the first. Every bucket is read again, so that one
/// growing fast from nothing is not left out; `--top` applies after the comparison.
pub(super) fn second_read(
    root: &Root,
    request: &Request,
    extra_keys: &[String],
    owners: &Owners,
    mut first: FirstRead,
) -> Result<Evidence> {
    let (mut source, fallback) = open_source(root, request.socket_source)?;
    let since = first.taken.elapsed();
    let previous = first.inspection.sockets.tuples.take().unwrap_or_default();
    let mut followed = first.inspection.sockets.followed.take().unwrap_or_default();
    followed.begin_read(millis(since));
    let compare = Tracking {
        owners: owners.wanted(),
        previous: Some((previous, millis(since))),
        followed: Some(followed),
        ..Tracking::default()
    };
    let mut second = inspect::read(root, source.as_mut(), usize::MAX, extra_keys, compare)?;
    owners.attribute(&mut second)?;
    first.seen_owners.fill(&mut second.sockets);
    second.warnings.extend(fallback);
    let rates = compare_reads(&first.inspection, &mut second, since.as_secs_f64());
    compare::keep_top(&mut second.sockets, request.top);
    crate::inspect::identify::identify_owners(&mut second.sockets);
    Ok(Evidence { inspection: second, rates: Some(rates), other_namespaces: None })
}

/// One read of `twtune watch`: compared with the read before it, when there is one, and kept whole
/// (every bucket and connection) for the read after. Owners are looked up only when `owners` is
/// given, since walking every process's fd table costs more than the socket table; otherwise each
/// bucket keeps the owners the previous read found.
pub(super) fn next_read(
    root: &Root,
    request: &Request,
    extra_keys: &[String],
    owners: Option<&Owners>,
    previous: Option<FirstRead>,
) -> Result<(Evidence, FirstRead)> {
    let (mut source, fallback) = open_source(root, request.socket_source)?;
    let mut previous = previous;
    let since = previous.as_ref().map(|p| p.taken.elapsed());
    let compare = previous.as_mut().zip(since).map(|(p, since)| {
        let tuples = p.inspection.sockets.tuples.take().unwrap_or_default();
        (tuples, u32::try_from(since.as_millis()).unwrap_or(u32::MAX))
    });
    let tracking =
        Tracking { owners: owners.is_some_and(Owners::wanted), record: true, previous: compare, followed: None };
    let mut now = inspect::read(root, source.as_mut(), usize::MAX, extra_keys, tracking)?;
    let taken = Instant::now();
    match owners {
        Some(owners) => {
            owners.attribute(&mut now)?;
            // The sample fills a bucket without owners from the read before; from one whose owners
            // were carried, that would keep a process that is long gone.
            if let Some(previous) = previous.as_mut().filter(|p| !p.owners_fresh) {
                previous.inspection.sockets.buckets.iter_mut().for_each(|b| b.owners = None);
            }
        }
        None => {
            if let Some(previous) = &previous {
                carry_owners(&previous.inspection, &mut now);
            }
        }
    }
    now.warnings.extend(fallback);
    let rates =
        previous.as_ref().zip(since).map(|(p, since)| compare_reads(&p.inspection, &mut now, since.as_secs_f64()));
    let baselines = forecast_over_baselines(previous.as_mut(), &mut now.sockets, taken);
    // What is shown is trimmed to `--top`; the whole read stays for the next comparison.
    let tuples = now.sockets.tuples.take();
    let mut shown = now.clone();
    compare::keep_top(&mut shown.sockets, request.top);
    now.sockets.tuples = tuples;
    let kept = FirstRead {
        inspection: now,
        taken,
        owners_fresh: owners.is_some(),
        seen_owners: SeenOwners::default(),
        baselines,
    };
    Ok((Evidence { inspection: shown, rates, other_namespaces: None }, kept))
}

/// How far back `twtune watch` measures the growth of live sockets for its forecasts: a second is
/// too short for a burst of live connections not to pass for a leak.
const BASELINE_AGE: Duration = Duration::from_secs(10);
/// How often a read is kept as a baseline.
const BASELINE_EVERY: Duration = Duration::from_secs(3);

/// Forecasts `now` against the newest kept read of [`BASELINE_AGE`] ago or more (the oldest kept
/// while the watch is younger), and returns the baselines to keep: that one and those after it,
/// and `now` every [`BASELINE_EVERY`].
fn forecast_over_baselines(
    previous: Option<&mut FirstRead>,
    now: &mut crate::model::table::SocketSummary,
    taken: Instant,
) -> std::collections::VecDeque<(Instant, compare::Baseline)> {
    let mut baselines = previous.map(|p| std::mem::take(&mut p.baselines)).unwrap_or_default();
    // Only the newest baseline old enough is used: older ones go.
    let old_enough = baselines.iter().rposition(|(at, _)| taken.duration_since(*at) >= BASELINE_AGE);
    baselines.drain(..old_enough.unwrap_or(0));
    if let Some((at, baseline)) = baselines.front() {
        compare::forecast_against(baseline, now, taken.duration_since(*at).as_secs_f64().max(0.001));
    }
    // A baseline every few seconds is enough to have one about 10 s old (each holds every bucket).
    if baselines.back().is_none_or(|(at, _)| taken.duration_since(*at) >= BASELINE_EVERY) {
        baselines.push_back((taken, compare::Baseline::of(now)));
    }
    baselines
}

/// Compares `second` with `first`, read `seconds` before: its buckets' churn and forecasts, the
/// counters' growth, and their rates.
fn compare_reads(first: &Inspection, second: &mut Inspection, seconds: f64) -> Rates {
    fill_owners(first, second);
    compare::compare(&first.sockets, &mut second.sockets, seconds);
    second.counter_growth = Some(churn::counter_growth(&first.counters, &second.counters));
    second.sample_seconds = Some(seconds);
    if let (Some(before), Some(now)) = (&first.conntrack, &mut second.conntrack) {
        now.statistics_growth = Some(nat::statistics_growth(&before.statistics, &now.statistics));
    }
    churn::rates(&first.counters, &second.counters, seconds)
}

/// Short connections may have no live socket at one of the reads: a bucket of `second` whose
/// owners were looked up and none found takes those of the same bucket in `first`.
fn fill_owners(first: &Inspection, second: &mut Inspection) {
    let before: std::collections::HashMap<(&str, &str), &Vec<Owner>> = first
        .sockets
        .buckets
        .iter()
        .filter_map(|b| Some(((b.local_ip.as_str(), b.remote.as_str()), b.owners.as_ref().filter(|o| !o.is_empty())?)))
        .collect();
    for bucket in &mut second.sockets.buckets {
        if bucket.owners.as_ref().is_some_and(Vec::is_empty)
            && let Some(owners) = before.get(&(bucket.local_ip.as_str(), bucket.remote.as_str()))
        {
            bucket.owners = Some((*owners).clone());
        }
    }
}

/// Gives each bucket of `now` the owners the same bucket had in `before`, and the same reason when
/// there were none to look up.
fn carry_owners(before: &Inspection, now: &mut Inspection) {
    let owners: std::collections::HashMap<(&str, &str), &Option<Vec<Owner>>> =
        before.sockets.buckets.iter().map(|b| ((b.local_ip.as_str(), b.remote.as_str()), &b.owners)).collect();
    for bucket in &mut now.sockets.buckets {
        if let Some(found) = owners.get(&(bucket.local_ip.as_str(), bucket.remote.as_str())) {
            bucket.owners.clone_from(found);
        }
    }
    now.sockets.owners_unavailable.clone_from(&before.sockets.owners_unavailable);
}

type Source<'a> = Box<dyn SocketSource + 'a>;

/// The socket source to read: netlink on a live system unless told otherwise (falling back to
/// /proc, with a warning, where netlink is not available, as in some sandboxes), /proc for
/// captured trees.
fn open_source(root: &Root, choice: SocketSourceChoice) -> Result<(Source<'_>, Option<String>)> {
    let proc = || -> Source<'_> { Box::new(ProcSocketSource::new(root)) };
    match choice {
        SocketSourceChoice::Proc => Ok((proc(), None)),
        SocketSourceChoice::Netlink if !root.is_live() => Err(Error::Usage(
            "--socket-source netlink reads the live system; a --root tree has only /proc/net/tcp (use proc)".into(),
        )),
        SocketSourceChoice::Netlink => Ok((Box::new(NetlinkSocketSource::open()?.skipping_empty_ipv6(root)), None)),
        SocketSourceChoice::Auto if !root.is_live() => Ok((proc(), None)),
        SocketSourceChoice::Auto => match NetlinkSocketSource::open() {
            Ok(netlink) => Ok((Box::new(netlink.skipping_empty_ipv6(root)), None)),
            Err(e @ Error::OutOfFiles { .. }) => Err(e),
            Err(e) => Ok((proc(), Some(format!("{e}; read /proc/net/tcp instead")))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::{Socket, TcpState};
    use crate::model::table::{SocketCounter, SocketSummary};
    use crate::ports::{PortRange, PortSet};

    /// `live` established sockets toward 10.0.0.2:443 in a range of 1 000 ports.
    fn live(n: u16) -> SocketSummary {
        let mut counter = SocketCounter::new(PortRange { low: 40000, high: 40999 }, PortSet::default());
        for port in 40000..40000 + n {
            let local = format!("10.0.0.1:{port}").parse().expect("address");
            counter.add(Socket::new(TcpState::Established, local, "10.0.0.2:443".parse().expect("address")));
        }
        counter.finish("test", usize::MAX)
    }

    /// Tracepoints that could not be armed do not end the audit: its report says why, in one line.
    #[test]
    fn a_window_that_could_not_be_armed_is_the_reports_one_line() {
        let mut inspection = crate::testing::Host::new().inspection();
        let why = "the kernel has no tracepoint syscalls:sys_exit_connect".to_string();
        let tracing = traced_in(&Err(why.clone()), 1, &mut inspection);
        assert_eq!(tracing, Tracing::Untraced { reason: why });
    }

    #[test]
    fn watch_forecasts_live_growth_over_ten_seconds_or_more_and_keeps_few_baselines() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut previous: Option<FirstRead> = None;
        let mut forecasts = Vec::new();
        // One read a second; a burst of 50 live sockets at 12 s that is gone at 13 s.
        for second in 0..=20u64 {
            let mut now = live(if second == 12 { 150 } else { 100 });
            let baselines = forecast_over_baselines(previous.as_mut(), &mut now, at(second));
            assert!(baselines.len() <= 5, "{} baselines kept at {second} s", baselines.len());
            forecasts.push(now.buckets[0].forecast.as_ref().map(|f| f.live_growth_per_sec));
            let inspection = crate::testing::Host::new().inspection();
            previous = Some(FirstRead {
                inspection: Inspection { sockets: now, ..inspection },
                taken: at(second),
                owners_fresh: true,
                seen_owners: SeenOwners::default(),
                baselines,
            });
        }
        // At 12 s, against the read of 10 s or more before: 50 in 12 s, not 50 in 1 s.
        assert_eq!(forecasts[12], Some(4.2));
        assert_eq!(forecasts[13], Some(0.0), "the burst is gone: no growth");
        assert_eq!(forecasts[0], None, "nothing to compare the first read with");
    }
}
