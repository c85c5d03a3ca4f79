//! The evidence of an audit: which socket source to read, in which network namespace, once or
//! twice (`--sample`), as a [`Request`] says. Everything here happens before the rules run.
//!
//! Another namespace is entered on a dedicated thread with setns(2): that thread's `/proc/sys`
//! and netlink sockets then belong to the target namespace, and `/proc/thread-self/net` holds its
//! tables (`/proc/net` keeps showing the process's own namespace).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::inspect::netlink::NetlinkSocketSource;
use crate::inspect::netns::{self, Namespace, Namespaces};
use crate::inspect::owners;
use crate::inspect::proc_tcp::ProcSocketSource;
use crate::inspect::sample::{Rates, apply_sample};
use crate::inspect::sockets::{SocketSource, Tracking};
use crate::inspect::{self, Inspection};
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
    /// Every one of the host (`--all-netns`): see [`sweep`].
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
enum Owners {
    Pids(Vec<u32>),
    Unavailable(&'static str),
}

impl Owners {
    /// The processes of namespace `inode`, where the live host can be read as root.
    fn of(live: bool, namespaces: Option<&Namespaces>, inode: Option<u64>) -> Owners {
        if !live {
            return Owners::Unavailable("an offline tree has no processes");
        }
        if !rustix::process::geteuid().is_root() {
            return Owners::Unavailable("finding the process of a socket reads other users' /proc/PID/fd: run as root");
        }
        let pids = inode.and_then(|inode| Some(namespaces?.get(inode)?.all_pids.clone()));
        Owners::Pids(pids.unwrap_or_default())
    }

    fn attribute(&self, inspection: &mut Inspection) {
        match self {
            Owners::Pids(pids) => owners::attribute(&mut inspection.sockets, Some(pids), None),
            Owners::Unavailable(why) => owners::attribute(&mut inspection.sockets, None, Some(why)),
        }
    }

    fn wanted(&self) -> bool {
        matches!(self, Owners::Pids(_))
    }
}

/// Collects the evidence `request` asks for, reading `extra_keys` besides the audited ones.
pub(crate) fn collect(request: &Request, extra_keys: Vec<String>) -> Result<Evidence> {
    let root = Root::open(&request.root)?;
    // Listing the namespaces is cheap (one stat per process) and tells the owners of sockets.
    let namespaces = if root.is_live() { netns::enumerate().ok() } else { None };
    let others = |inode: Option<u64>| {
        let namespaces = namespaces.as_ref()?;
        let count = namespaces.list.iter().filter(|ns| Some(ns.inode) != inode).count();
        Some(OtherNamespaces { count, complete: namespaces.unreadable == 0 })
    };
    match &request.netns {
        NetnsTarget::Own => {
            let inode = if root.is_live() { netns::current().ok() } else { None };
            let owners = Owners::of(root.is_live(), namespaces.as_ref(), inode);
            let mut evidence = collect_in(&root, request, &extra_keys, &owners)?;
            evidence.other_namespaces = others(inode);
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
            Ok(evidence)
        }
    }
}

/// Moves the calling thread into the network namespace open as `namespace` (read from `path`).
/// setns(2) refuses what is not a network namespace.
fn enter(namespace: &OwnedFd, path: &Path) -> Result<()> {
    rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .map_err(|e| namespace_error(path, &e.into()))
}

fn namespace_error(path: &Path, e: &std::io::Error) -> Error {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such network namespace".to_string(),
        std::io::ErrorKind::PermissionDenied => format!("{e}: entering a network namespace needs root (CAP_SYS_ADMIN)"),
        _ => e.to_string(),
    };
    Error::Namespace { path: path.to_path_buf(), problem: what }
}

/// One namespace of a sweep and what was read in it.
pub(crate) struct Swept {
    pub namespace: Namespace,
    pub evidence: Evidence,
}

/// What `--all-netns` collected: every namespace that could be read, and a note for each that
/// could not (it disappeared, or reading it failed).
pub(crate) struct Sweep {
    pub namespaces: Vec<Swept>,
    pub notes: Vec<String>,
}

/// Namespaces read at once: reading is mostly waiting on the kernel, and a `--sample` mostly
/// sleeping, so the sample of many namespaces runs side by side (each costs about 400 KiB).
const SWEEP_WORKERS: usize = 4;
const SAMPLE_WORKERS: usize = 32;

/// Audits every network namespace of the host (`--all-netns`), each as `--netns-pid` would.
pub(crate) fn sweep(request: &Request, extra_keys: Vec<String>) -> Result<Sweep> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NotPermitted {
            what: "audit every network namespace (--all-netns)".into(),
            reason: "entering another namespace and reading its processes needs root".into(),
        });
    }
    let found = netns::enumerate()?;
    pause_for_tests();
    let workers = if request.sample.is_some() { SAMPLE_WORKERS } else { SWEEP_WORKERS }.min(found.list.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, std::result::Result<Evidence, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(ns) = found.list.get(i) else { break };
                        done.push((i, read_namespace(ns, request, &extra_keys)));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    outcomes.sort_by_key(|(i, _)| *i);
    let mut sweep = Sweep { namespaces: Vec::new(), notes: Vec::new() };
    let mut outcomes = outcomes.into_iter().peekable();
    for (i, namespace) in found.list.into_iter().enumerate() {
        match outcomes.next_if(|(at, _)| *at == i).map(|(_, outcome)| outcome) {
            Some(Ok(evidence)) => sweep.namespaces.push(Swept { namespace, evidence }),
            Some(Err(why)) => sweep.notes.push(format!("net:[{}] ({}): {why}", namespace.inode, namespace.label())),
            None => sweep.notes.push(format!("net:[{}]: its reader stopped unexpectedly", namespace.inode)),
        }
    }
    if found.unreadable > 0 {
        sweep.notes.push(format!("the network namespace of {} processes could not be read", found.unreadable));
    }
    Ok(sweep)
}

/// Reads one namespace of a sweep on the calling (worker) thread, which stays in it afterwards.
fn read_namespace(ns: &Namespace, request: &Request, extra_keys: &[String]) -> std::result::Result<Evidence, String> {
    let Some(fd) = ns.open() else {
        return Err("it disappeared before it was read (its last process ended or it was deleted)".into());
    };
    enter(&fd, Path::new(&format!("net:[{}]", ns.inode))).map_err(|e| e.to_string())?;
    let owners = Owners::Pids(ns.all_pids.clone());
    let root = Root::thread_network_namespace().map_err(|e| e.to_string())?;
    collect_in(&root, request, extra_keys, &owners).map_err(|e| e.to_string())
}

/// Debug builds only: waits `TWTUNE_TEST_SWEEP_PAUSE_MS` between listing the namespaces and
/// reading them, so that a test can delete one in between.
fn pause_for_tests() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("TWTUNE_TEST_SWEEP_PAUSE_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// One inspection of `root` with the default socket source (netlink on a live system), for the
/// commands that plan changes (`apply`, `export --recommended`).
pub(crate) fn read_default(root: &Root, extra_keys: &[String]) -> Result<Inspection> {
    let (mut source, fallback) = open_source(root, SocketSourceChoice::Auto)?;
    let mut inspection = inspect::read(root, source.as_mut(), 10, extra_keys, Tracking::default())?;
    inspection.warnings.extend(fallback);
    Ok(inspection)
}

/// Collects beneath `root` in the calling thread's network namespace.
fn collect_in(root: &Root, request: &Request, extra_keys: &[String], owners: &Owners) -> Result<Evidence> {
    let (mut source, fallback) = open_source(root, request.socket_source)?;
    let mut evidence = sample(root, request, extra_keys, source.as_mut(), owners)?;
    evidence.inspection.warnings.extend(fallback);
    Ok(evidence)
}

/// One read, or two `--sample` apart.
fn sample(
    root: &Root,
    request: &Request,
    extra_keys: &[String],
    source: &mut dyn SocketSource,
    owners: &Owners,
) -> Result<Evidence> {
    let tracking = Tracking { owners: owners.wanted(), ..Tracking::default() };
    let Some(interval) = request.sample else {
        let mut inspection = inspect::read(root, source, request.top, extra_keys, tracking)?;
        owners.attribute(&mut inspection);
        return Ok(Evidence { inspection, rates: None, other_namespaces: None });
    };
    // The first read lists every bucket, so that any bucket of the second can be compared, and
    // records their ports, so that the second can tell new connections.
    let record = Tracking { record: true, ..tracking.clone() };
    let mut first = inspect::read(root, source, usize::MAX, extra_keys, record)?;
    owners.attribute(&mut first);
    let start = std::time::Instant::now();
    std::thread::sleep(interval);
    // Every bucket of the second read too, so that one growing fast from nothing is not left out.
    let since = start.elapsed();
    let previous = first.sockets.tuples.take().unwrap_or_default();
    let compare =
        Tracking { previous: Some((previous, u32::try_from(since.as_millis()).unwrap_or(u32::MAX))), ..tracking };
    let mut second = inspect::read(root, source, usize::MAX, extra_keys, compare)?;
    owners.attribute(&mut second);
    let rates = apply_sample(&first, &mut second, since.as_secs_f64());
    second.sockets.keep_top(request.top);
    Ok(Evidence { inspection: second, rates: Some(rates), other_namespaces: None })
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
            Err(e) => Ok((proc(), Some(format!("{e}; read /proc/net/tcp instead")))),
        },
    }
}
