//! `--all-netns`: every network namespace of the host audited from inside it, as `--netns-pid`
//! would, on a few worker threads (each joins one namespace after another with setns(2)).
//!
//! With `--sample`, every namespace is read once, then all wait one interval together, then every
//! namespace is read again: the samples cover the same window and the sweep takes one interval,
//! however many namespaces there are.
//!
//! Descriptors: a namespace is opened by the worker that reads it, just before, and closed right
//! after (the worker's thread stays in it without a descriptor), so a sweep holds at most one
//! namespace descriptor per worker ([`WORKERS`]), whatever the host has: a user without privileges
//! can make about a thousand namespaces, and the common soft limit is 1 024 files. The second read
//! of a `--sample` opens the namespace again by its inode, through the files listed anew (a
//! process that held it may have ended); one gone in between is a note, as one gone before its
//! first read.
//!
//! A namespace that cannot be opened any more (its last process ended, or `ip netns del`) between
//! the listing and its read is a note. Any other failure to read a namespace fails the sweep: a
//! sweep that silently audited less than the host has would pass a gate it should not. Running out
//! of descriptors is such a failure ([`Error::OutOfFiles`]), never a namespace gone.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::inspect::evidence::{self, Evidence, FirstRead, Owners, Request};
use crate::inspect::netns::{self, Namespace, Namespaces, UserNamespace};
use crate::root::Root;

/// One namespace of a sweep and what was read in it.
pub(crate) struct Swept {
    pub namespace: Namespace,
    pub evidence: Evidence,
}

/// What `--all-netns` collected: every namespace that could be read, and a note for each that
/// disappeared before it was.
pub(crate) struct Sweep {
    pub namespaces: Vec<Swept>,
    pub notes: Vec<Note>,
}

/// Something the sweep met that is not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// A namespace listed but gone before it was read.
    Disappeared { inode: u64, label: String },
    /// Processes whose namespace could not be looked at.
    Unreadable { processes: usize },
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Disappeared { inode, label } => write!(
                f,
                "net:[{inode}] ({label}): it disappeared before it was read (its last process ended or it was deleted)"
            ),
            Note::Unreadable { processes: 1 } => write!(f, "the network namespace of 1 process could not be looked at"),
            Note::Unreadable { processes } => {
                write!(f, "the network namespaces of {processes} processes could not be looked at")
            }
        }
    }
}

/// Namespaces read at once: reading is mostly the kernel walking its tables, which two cores do
/// side by side; each reader costs about 400 KiB.
const WORKERS: usize = 4;

/// Audits every network namespace of the host (`--all-netns`).
pub(crate) fn sweep(request: &Request, extra_keys: &[String]) -> Result<Sweep> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::NotPermitted {
            what: "audit every network namespace (--all-netns)".into(),
            reason: "entering another namespace and reading its processes needs root".into(),
        });
    }
    super::limits::raise_open_files();
    let found = netns::enumerate()?;
    pause_for_tests();
    let owners = |namespaces: Option<&Namespaces>, ns: &Namespace| Owners::of(true, namespaces, Some(ns.inode));

    let list = &found.list;
    let users = user_namespaces(list)?;
    let evidence: Vec<Option<Result<Evidence>>> = match request.sample {
        None => parallel(list.len(), |i| {
            in_namespace(&list[i], |root| {
                evidence::collect_in(root, request, extra_keys, &owners(Some(&found), &list[i]))
            })
        })?,
        Some(interval) => sampled(&found, request, extra_keys, interval)?,
    };

    gathered(found, evidence, users)
}

/// The two reads of `--sample` in every namespace of `found`, `interval` apart, and the
/// tracepoints armed over the window for the whole host, their records given to the namespace
/// each caller was in.
fn sampled(
    found: &Namespaces,
    request: &Request,
    extra_keys: &[String],
    interval: std::time::Duration,
) -> Result<Vec<Option<Result<Evidence>>>> {
    let owners = |namespaces: Option<&Namespaces>, ns: &Namespace| Owners::of(true, namespaces, Some(ns.inode));
    let list = &found.list;
    let window = evidence::arm_window(&Root::open(&request.root)?, request);
    let first = parallel(list.len(), |i| {
        in_namespace(&list[i], |root| evidence::first_read(root, request, extra_keys, &owners(Some(found), &list[i])))
    })?;
    std::thread::sleep(interval);
    // Processes listed again: a client started per request may be new since the first read,
    // and the namespace is opened again through the files of this listing.
    let now = match netns::enumerate() {
        Ok(now) => Some(now),
        Err(e @ Error::OutOfFiles { .. }) => return Err(e),
        Err(_) => None,
    };
    let pending: Vec<Mutex<Option<Result<FirstRead>>>> = first.into_iter().map(Mutex::new).collect();
    let mut second = parallel(list.len(), |i| {
        let first = pending[i].lock().ok()?.take()?;
        let owners = owners(now.as_ref().or(Some(found)), &list[i]);
        let listed = now.as_ref().and_then(|now| now.get(list[i].inode)).unwrap_or(&list[i]);
        in_namespace(listed, |root| evidence::second_read(root, request, extra_keys, &owners, first?))
    })?;
    let traced = window.map(crate::inspect::trace::Window::finish);
    for (ns, evidence) in list.iter().zip(&mut second) {
        if let Some(Ok(evidence)) = evidence {
            let inspection = &mut evidence.inspection;
            inspection.tracing = Some(evidence::traced_in(&traced, ns.inode, inspection));
        }
    }
    Ok(second)
}

/// The sweep of the namespaces `found`, from what was read in each (`None`: it had gone) and who
/// owns it.
fn gathered(
    found: Namespaces,
    evidence: Vec<Option<Result<Evidence>>>,
    users: Vec<Option<Result<UserNamespace>>>,
) -> Result<Sweep> {
    let mut sweep = Sweep { namespaces: Vec::new(), notes: Vec::new() };
    let host_found = found.list.iter().any(|ns| ns.host);
    for ((mut namespace, outcome), user) in found.list.into_iter().zip(evidence).zip(users) {
        if let Some(Ok(user)) = user {
            namespace.user_namespace = user;
        }
        match outcome {
            Some(Ok(mut evidence)) => {
                evidence.inspection.initial_namespace = host_found.then_some(namespace.host);
                sweep.namespaces.push(Swept { namespace, evidence });
            }
            Some(Err(e)) => return Err(e),
            None => sweep.notes.push(Note::Disappeared { inode: namespace.inode, label: namespace.label() }),
        }
    }
    if found.unreadable > 0 {
        sweep.notes.push(Note::Unreadable { processes: found.unreadable });
    }
    Ok(sweep)
}

/// Who owns each namespace, told from inside it ([`netns::user_namespace_here`]).
fn user_namespaces(list: &[Namespace]) -> Result<Vec<Option<Result<UserNamespace>>>> {
    parallel(list.len(), |i| in_namespace(&list[i], |_| Ok(netns::user_namespace_here(&list[i].all_pids))))
}

/// Opens namespace `ns`, moves the calling worker thread into it (where it stays) and closes it
/// again, then runs `read` there. `None`: the namespace could not be opened any more.
pub(super) fn in_namespace<T>(ns: &Namespace, read: impl FnOnce(&Root) -> Result<T>) -> Option<Result<T>> {
    let fd = match ns.open() {
        Ok(fd) => fd?,
        Err(e) => return Some(Err(e)),
    };
    let shown = format!("net:[{}] ({})", ns.inode, ns.label());
    let entered = evidence::enter(&fd, Path::new(&shown));
    drop(fd);
    Some(entered.and_then(|()| read(&Root::thread_network_namespace()?)))
}

/// `work(0..count)` on [`WORKERS`] threads, results in order.
pub(super) fn parallel<T: Send>(count: usize, work: impl Fn(usize) -> Option<T> + Sync) -> Result<Vec<Option<T>>> {
    let next = AtomicUsize::new(0);
    let workers = WORKERS.min(count).max(1);
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        done.push((i, work(i)));
                    }
                    done
                })
            })
            .collect();
        for handle in handles {
            for (i, result) in handle.join().map_err(|_| Error::NamespaceThread)? {
                results[i] = result;
            }
        }
        Ok(())
    })?;
    Ok(results)
}

/// Debug builds only: between listing the namespaces and opening them, touches the file named by
/// `TWTUNE_TEST_SWEEP_LISTED` and waits until it is removed (at most 10 s), so that a test can
/// delete a namespace in between.
fn pause_for_tests() {
    #[cfg(debug_assertions)]
    if let Some(path) = std::env::var_os("TWTUNE_TEST_SWEEP_LISTED") {
        let path = std::path::PathBuf::from(path);
        if std::fs::write(&path, b"listed\n").is_ok() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while path.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
