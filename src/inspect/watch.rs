//! The evidence of `twtune watch`: one network namespace (or every one) read again every interval
//! on a thread of its own, each read compared with the one before, and handed to the view as a
//! [`Tick`]. The view never waits for a read, and a read never waits for the view.
//!
//! Owners of sockets are looked up at the first read and then every [`OWNERS_EVERY`]: walking
//! every process's fd table costs more than the socket table itself, and who holds a bucket
//! changes far more slowly than how full it is. In between, buckets keep the owners last found.
//!
//! As root the kernel's tracepoints ([`super::trace`]) stay armed for as long as the watch runs,
//! owned by the reading thread: each read takes what they saw since the read before, given to
//! each namespace by the namespace of its process. A failed connect() leaves no other trace, so
//! the intervals follow each other with no gap; `--no-trace` arms nothing (every syscall of the
//! host is slower while they are armed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::inspect::evidence::{self, Evidence, FirstRead, NetnsTarget, Owners, Request};
use crate::inspect::netns::{self, Namespace, Namespaces};
use crate::inspect::sweep::{self, Note};
use crate::inspect::trace::{Traced, Window};
use crate::root::Root;

/// How often the owners of sockets are looked up again.
pub(crate) const OWNERS_EVERY: Duration = Duration::from_secs(10);
/// ... and how soon, while a listed bucket with live sockets has no owner found (short-lived
/// connections may all have closed between the dump and the walk of the fd tables).
const OWNERS_RETRY: Duration = Duration::from_secs(2);

/// One namespace as read at a tick.
pub(crate) struct Watched {
    /// Its inode (0 where it could not be told, as on a system without nsfs).
    pub inode: u64,
    /// What people call it (see [`Namespace::label`]).
    pub label: String,
    pub evidence: Evidence,
}

/// Everything read at one interval.
pub(crate) struct Tick {
    pub namespaces: Vec<Watched>,
    pub notes: Vec<String>,
    /// How long the read took.
    pub took: Duration,
}

/// A running watch: ticks arrive on [`Watch::ticks`] until the watch is dropped or a read fails
/// (the failure is the last message).
pub(crate) struct Watch {
    pub ticks: Receiver<Result<Tick>>,
    /// Dropped with the watch: the reading thread then stops at its next wait.
    _stop: Sender<()>,
}

/// Checks what can be checked before the view opens: the namespace's name, that it exists, and
/// root where another namespace must be entered.
pub(crate) fn check(request: &Request) -> Result<()> {
    let not_root = |what: &str| Error::NotPermitted {
        what: what.to_string(),
        reason: "entering another network namespace and reading its processes needs root".into(),
    };
    match &request.netns {
        NetnsTarget::Invalid(name) => Err(Error::Usage(format!(
            "--netns {name:?}: give the name of a namespace in /run/netns (as `ip netns list` shows), not a path"
        ))),
        NetnsTarget::All if !rustix::process::geteuid().is_root() => {
            Err(not_root("watch every network namespace (--all-netns)"))
        }
        NetnsTarget::File(path) => {
            netns::open_namespace_file(path).map_err(|e| evidence::namespace_error(path, &e))?;
            if rustix::process::geteuid().is_root() {
                Ok(())
            } else {
                Err(not_root(&format!("watch the network namespace {}", path.display())))
            }
        }
        NetnsTarget::All | NetnsTarget::Own => Root::open(&request.root).map(drop),
    }
}

/// Starts watching what `request` names (see [`check`]), one read every `interval`.
pub(crate) fn start(request: Request, interval: Duration) -> Result<Watch> {
    check(&request)?;
    super::limits::raise_open_files();
    // One tick in flight: a view that cannot keep up makes the reader wait, not memory grow.
    let (send, ticks) = mpsc::sync_channel(1);
    let (stop, stopped) = mpsc::channel();
    // Armed for as long as the watch runs, each read taking the interval since the one before;
    // the reading thread owns it, so that it is dropped, and its events closed, however that
    // thread ends.
    let window = evidence::arm_window(&Root::open(&request.root)?, &request);
    let reader = Reader { request, interval, send, stopped, owners: OwnerLookups::default(), window };
    match reader.request.netns.clone() {
        NetnsTarget::All => spawn(move || reader.every_namespace())?,
        NetnsTarget::Own => {
            let root = Root::open(&reader.request.root)?;
            let inode = netns::current().ok();
            spawn(move || reader.one_namespace(&root, inode, None))?;
        }
        NetnsTarget::File(path) => {
            let namespace = netns::open_namespace_file(&path).map_err(|e| evidence::namespace_error(&path, &e))?;
            let inode = netns::inode_of(&namespace).ok();
            let shown = path.display().to_string();
            spawn(move || match evidence::enter(&namespace, &path).and_then(|()| Root::thread_network_namespace()) {
                Ok(root) => reader.one_namespace(&root, inode, Some(shown)),
                Err(e) => {
                    let _ = reader.send.send(Err(e));
                }
            })?;
        }
        NetnsTarget::Invalid(_) => unreachable!("refused by check"),
    }
    Ok(Watch { ticks, _stop: stop })
}

fn spawn(work: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new().name("twtune-watch".into()).spawn(work).map(drop).map_err(|_| Error::NamespaceThread)
}

/// The reading thread's side of a watch.
struct Reader {
    request: Request,
    interval: Duration,
    send: SyncSender<Result<Tick>>,
    stopped: Receiver<()>,
    owners: OwnerLookups,
    /// The tracepoints, or why they are not armed.
    window: std::result::Result<Window, String>,
}

/// When the owners of sockets were last looked up, and how many lookups in a row came early
/// because a live bucket had none found.
#[derive(Default)]
struct OwnerLookups {
    last: Option<Instant>,
    early: u32,
}

/// Early lookups in a row before falling back to [`OWNERS_EVERY`]: a socket whose process cannot
/// be found (an orphan after close, a kernel socket, a process that moved to another namespace)
/// must not make the walk of every fd table run every few seconds for ever.
const EARLY_LOOKUPS: u32 = 3;

impl OwnerLookups {
    /// Whether to look up now, given whether a live bucket misses its owner; counts the lookup.
    fn now(&mut self, at: Instant, missing: bool) -> bool {
        if !missing {
            self.early = 0;
        }
        let early = missing && self.early < EARLY_LOOKUPS;
        let look_up = due(self.last, at, early);
        if look_up {
            if self.last.is_some_and(|last| at.duration_since(last) < OWNERS_EVERY) {
                self.early += 1;
            }
            self.last = Some(at);
        }
        look_up
    }
}

impl Reader {
    /// Reads the namespace this thread is in, as `root`, until the watch ends.
    fn one_namespace(mut self, root: &Root, inode: Option<u64>, file: Option<String>) {
        let mut previous: Option<FirstRead> = None;
        let mut label = None;
        let mut notes = Vec::new();
        let initial = inode.and_then(netns::is_initial);
        loop {
            let started = Instant::now();
            let missing = previous.as_ref().is_some_and(|p| owner_missing(&p.inspection, self.request.top));
            let owners = self.owners.now(started, missing).then(|| {
                let namespaces = netns::enumerate().ok();
                // The label comes from the same listing: a container's name, `host`, or the file.
                label = Some(namespace_label(namespaces.as_ref(), inode, file.as_deref()));
                notes = abandoned(namespaces.as_ref(), inode).into_iter().collect();
                Owners::of(root.is_live(), namespaces.as_ref(), inode)
            });
            let read = evidence::next_read(root, &self.request, &[], owners.as_ref(), previous.take());
            let traced = self.traced();
            let tick = read.map(|(mut evidence, kept)| {
                previous = Some(kept);
                let inspection = &mut evidence.inspection;
                inspection.tracing = Some(evidence::traced_in(&traced, inode.unwrap_or(0), inspection));
                evidence.inspection.initial_namespace = initial;
                let label = label.clone().unwrap_or_default();
                Tick {
                    namespaces: vec![Watched { inode: inode.unwrap_or(0), label, evidence }],
                    notes: notes.clone(),
                    took: started.elapsed(),
                }
            });
            if !self.deliver(tick, started) {
                return;
            }
        }
    }

    /// Reads every namespace of the host, as a sweep does, until the watch ends. Each read is kept,
    /// by the namespace's inode, to compare the next with; the namespace itself is opened again at
    /// every tick (from that tick's listing) and closed once read, so the watch holds a few
    /// descriptors, not one per namespace. The read of one no longer listed is dropped.
    fn every_namespace(mut self) {
        let mut kept: HashMap<u64, FirstRead> = HashMap::new();
        loop {
            let started = Instant::now();
            let found = match netns::enumerate() {
                Ok(found) => found,
                Err(e) => {
                    let _ = self.send.send(Err(e));
                    return;
                }
            };
            let missing = kept.values().any(|p| owner_missing(&p.inspection, self.request.top));
            let look_up = self.owners.now(started, missing);
            let mut last = std::mem::take(&mut kept);
            let previous: Vec<Mutex<Option<FirstRead>>> =
                found.list.iter().map(|ns| Mutex::new(last.remove(&ns.inode))).collect();
            // What is left was not listed again: gone.
            for inode in last.into_keys() {
                crate::inspect::conntrack::forget_rules(inode);
            }
            let list = &found.list;
            let owners = |ns: &Namespace| look_up.then(|| Owners::of(true, Some(&found), Some(ns.inode)));
            let read = sweep::parallel(list.len(), |i| {
                let previous = previous[i].lock().ok()?.take();
                sweep::in_namespace(&list[i], |root| {
                    evidence::next_read(root, &self.request, &[], owners(&list[i]).as_ref(), previous)
                })
            });
            let traced = self.traced();
            let tick = read.and_then(|results| collect(&found, results, &mut kept, &traced, started));
            if !self.deliver(tick, started) {
                return;
            }
        }
    }

    /// What the tracepoints saw since the read before, or why they are not armed.
    fn traced(&mut self) -> std::result::Result<Traced, String> {
        match &mut self.window {
            Ok(window) => Ok(window.take()),
            Err(reason) => Err(reason.clone()),
        }
    }

    /// Sends a tick and waits for the next interval, and at least as long as the read took (so
    /// that a host too large for the interval costs half a core, not a whole one: a read longer
    /// than half the interval stretches the period); `false` once the watch has ended (the view
    /// is gone, or this was a failure).
    fn deliver(&self, tick: Result<Tick>, started: Instant) -> bool {
        let failed = tick.is_err();
        if self.send.send(tick).is_err() || failed {
            return false;
        }
        let took = started.elapsed();
        let wait = self.interval.saturating_sub(took).max(took);
        matches!(self.stopped.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
    }
}

/// The tick of one sweep; each namespace's read is kept for the next. A namespace that could not
/// be read is a note: a view kept open for hours outlives many containers, and one that fails must
/// not end the others'. Running out of descriptors ends the watch with its error: it is no
/// namespace's, and a view of the namespaces that happened to be read would mislead.
fn collect(
    found: &Namespaces,
    results: Vec<Option<Result<(Evidence, FirstRead)>>>,
    kept: &mut HashMap<u64, FirstRead>,
    traced: &std::result::Result<Traced, String>,
    started: Instant,
) -> Result<Tick> {
    let mut tick = Tick { namespaces: Vec::new(), notes: Vec::new(), took: Duration::ZERO };
    for (ns, result) in found.list.iter().zip(results) {
        match result {
            Some(Ok((mut evidence, read))) => {
                kept.insert(ns.inode, read);
                let inspection = &mut evidence.inspection;
                inspection.tracing = Some(evidence::traced_in(traced, ns.inode, inspection));
                evidence.inspection.initial_namespace = found.is_initial(ns.inode);
                tick.namespaces.push(Watched { inode: ns.inode, label: ns.label(), evidence });
            }
            Some(Err(e @ Error::OutOfFiles { .. })) => return Err(e),
            Some(Err(e)) => tick.notes.push(format!("net:[{}] ({}) not read: {e}", ns.inode, ns.label())),
            // Gone between the listing and its read: it is not shown any more.
            None => {}
        }
    }
    if found.unreadable > 0 {
        tick.notes.push(Note::Unreadable { processes: found.unreadable }.to_string());
    }
    tick.took = started.elapsed();
    Ok(tick)
}

/// A note when the watched namespace has no process and no name left: only twtune's reading
/// thread keeps it (the listing sees processes by their main thread, which stays at home), and what
/// it shows will not change again.
fn abandoned(namespaces: Option<&Namespaces>, inode: Option<u64>) -> Option<String> {
    let (namespaces, inode) = (namespaces?, inode?);
    namespaces.get(inode).is_none().then(|| {
        format!("net:[{inode}] has no process and no name any more: only this view keeps it; it will not change")
    })
}

/// Whether the owners are due to be looked up again.
fn due(last: Option<Instant>, now: Instant, missing: bool) -> bool {
    let every = if missing { OWNERS_RETRY } else { OWNERS_EVERY };
    last.is_none_or(|last| now.duration_since(last) >= every)
}

/// Whether one of the `top` buckets has live sockets but no owner found for them: none was found at
/// the last lookup, or the bucket is newer than it. (Where owners cannot be looked up at all, as
/// without root, nothing is missing.)
fn owner_missing(inspection: &crate::inspect::Inspection, top: usize) -> bool {
    let sockets = &inspection.sockets;
    sockets.owners_unavailable.is_none()
        && sockets
            .buckets
            .iter()
            .take(top)
            .any(|b| b.count > b.time_wait && b.owners.as_ref().is_none_or(Vec::is_empty))
}

/// The name shown for a single watched namespace: its container, `host` or name from the listing,
/// else the file it was opened from, else its inode.
fn namespace_label(namespaces: Option<&Namespaces>, inode: Option<u64>, file: Option<&str>) -> String {
    let listed = namespaces.zip(inode).and_then(|(all, inode)| all.get(inode));
    match (listed, file, inode) {
        (Some(ns), _, _) if ns.stable_name().is_some() => ns.label(),
        (_, Some(file), _) => file.to_string(),
        // Its first process would be twtune itself, or the shell that started it.
        (_, None, Some(inode)) => format!("net:[{inode}]"),
        (_, None, None) => "this namespace".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watch arms the tracepoints for as long as it runs, each tick with what they saw, and
    /// closes them when it ends (the view quitting, on a key or a signal, drops the watch: its
    /// reading thread ends at its next wait and drops the window); `--no-trace` arms none.
    #[test]
    fn the_tracepoints_are_armed_while_the_watch_runs_and_closed_when_it_ends() {
        use crate::inspect::evidence::SocketSourceChoice;
        use crate::inspect::trace::tests::{perf_events, tracing_alone};
        use crate::model::failures::Tracing;
        let Some(_alone) = tracing_alone() else { return };
        let before = perf_events();
        let request = Request {
            root: "/".into(),
            netns: NetnsTarget::Own,
            socket_source: SocketSourceChoice::Proc,
            top: 3,
            sample: None,
            trace: true,
        };
        let tracing = |watch: &Watch| {
            let tick = watch.ticks.recv_timeout(Duration::from_secs(20)).expect("a tick").expect("a read");
            tick.namespaces[0].evidence.inspection.tracing.clone()
        };
        let watch = start(request.clone(), Duration::from_millis(200)).expect("watching");
        for _ in 0..2 {
            let Some(Tracing::Tracepoints(f)) = tracing(&watch) else { panic!("not traced") };
            assert!(f.seconds > 0.0 && f.seconds < 10.0, "one interval each: {f:?}");
        }
        assert!(perf_events() > before, "armed while it runs");
        drop(watch);
        let dropped = Instant::now();
        while perf_events() > before {
            assert!(dropped.elapsed() < Duration::from_secs(5), "the events outlived the watch");
            std::thread::sleep(Duration::from_millis(20));
        }
        let watch = start(Request { trace: false, ..request }, Duration::from_millis(200)).expect("watching");
        assert_eq!(tracing(&watch), Some(Tracing::Untraced { reason: "--no-trace".into() }));
        assert_eq!(perf_events(), before, "--no-trace arms nothing");
    }

    #[test]
    fn owners_are_looked_up_first_and_then_every_ten_seconds() {
        let now = Instant::now();
        assert!(due(None, now, false));
        assert!(!due(Some(now), now + Duration::from_secs(9), false));
        assert!(due(Some(now), now + OWNERS_EVERY, false));
        // Sooner while a bucket's live sockets have no owner found.
        assert!(!due(Some(now), now + Duration::from_secs(1), true));
        assert!(due(Some(now), now + OWNERS_RETRY, true));
    }

    #[test]
    fn owners_are_missing_for_a_live_bucket_without_one_found_but_not_for_time_wait() {
        use crate::model::records::Owner;
        use crate::model::records::TcpState;
        use crate::testing::Host;
        let live = Host::defaults().outbound(3, TcpState::Established, 40000, "10.0.0.2:80").inspection();
        assert!(owner_missing(&live, 10), "newer than the last lookup");
        let mut found = live.clone();
        found.sockets.buckets[0].owners = Some(vec![]);
        assert!(owner_missing(&found, 10), "none found");
        found.sockets.buckets[0].owners =
            Some(vec![Owner { pid: 7, command: "curl".into(), container: None, sockets: 3, identity: None }]);
        assert!(!owner_missing(&found, 10));
        assert!(!owner_missing(&live, 0), "beyond the buckets shown");
        let mut unavailable = live;
        unavailable.sockets.owners_unavailable = Some("run as root".into());
        assert!(!owner_missing(&unavailable, 10));
        let time_wait = Host::defaults().outbound(3, TcpState::TimeWait, 40000, "10.0.0.2:80").inspection();
        assert!(!owner_missing(&time_wait, 10), "TIME_WAIT has no owner to find");
    }

    #[test]
    fn a_watched_namespace_is_named_by_its_container_or_name_before_its_file() {
        let named = Namespaces { list: vec![Namespace::example(7, Some("blue"), None, &[42])], unreadable: 0 };
        assert_eq!(namespace_label(Some(&named), Some(7), Some("/run/netns/blue")), "blue");
        let bare = Namespaces { list: vec![Namespace::example(7, None, None, &[42])], unreadable: 0 };
        assert_eq!(namespace_label(Some(&bare), Some(7), Some("/proc/42/ns/net")), "/proc/42/ns/net");
        assert_eq!(namespace_label(Some(&bare), Some(7), None), "net:[7]");
        assert_eq!(namespace_label(None, Some(7), None), "net:[7]");
        assert_eq!(namespace_label(None, None, None), "this namespace");
    }
}
