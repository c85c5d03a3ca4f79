//! The evidence of an audit: which socket source to read, in which network namespace, once or
//! twice (`--sample`), as a [`Request`] says. Everything here happens before the rules run.
//!
//! Another namespace is entered on a dedicated thread with setns(2): that thread's `/proc/sys`
//! and netlink sockets then belong to the target namespace, and `/proc/thread-self/net` holds its
//! tables (`/proc/net` keeps showing the process's own namespace).

use std::os::fd::AsFd;
use std::path::Path;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::inspect::netlink::NetlinkSocketSource;
use crate::inspect::proc_tcp::ProcSocketSource;
use crate::inspect::sample::{Rates, apply_sample};
use crate::inspect::sockets::SocketSource;
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
}

/// Collects the evidence `request` asks for, reading `extra_keys` besides the audited ones.
pub(crate) fn collect(request: &Request, extra_keys: Vec<String>) -> Result<Evidence> {
    match &request.netns {
        NetnsTarget::Own => collect_in(&Root::open(&request.root)?, request, &extra_keys),
        NetnsTarget::Invalid(name) => Err(Error::Usage(format!(
            "--netns {name:?}: give the name of a namespace in /run/netns (as `ip netns list` shows), not a path"
        ))),
        NetnsTarget::File(path) => {
            // O_NONBLOCK: a FIFO planted as /run/netns/NAME must not hang the open (setns then
            // refuses what is not a namespace).
            let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
            let namespace = rustix::fs::open(path, flags, rustix::fs::Mode::empty())
                .map(std::fs::File::from)
                .map_err(|e| namespace_error(path, &e.into()))?;
            let request = request.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                rustix::thread::move_into_link_name_space(
                    namespace.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| namespace_error(&path, &e.into()))?;
                collect_in(&Root::thread_network_namespace()?, &request, &extra_keys)
            })
            .join()
            .map_err(|_| Error::NamespaceThread)?
        }
    }
}

fn namespace_error(path: &Path, e: &std::io::Error) -> Error {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such network namespace".to_string(),
        std::io::ErrorKind::PermissionDenied => format!("{e}: entering a network namespace needs root (CAP_SYS_ADMIN)"),
        _ => e.to_string(),
    };
    Error::Namespace { path: path.to_path_buf(), problem: what }
}

/// One inspection of `root` with the default socket source (netlink on a live system), for the
/// commands that plan changes (`apply`, `export --recommended`).
pub(crate) fn read_default(root: &Root, extra_keys: &[String]) -> Result<Inspection> {
    let (mut source, fallback) = open_source(root, SocketSourceChoice::Auto)?;
    let mut inspection = inspect::read(root, source.as_mut(), 10, extra_keys)?;
    inspection.warnings.extend(fallback);
    Ok(inspection)
}

/// Collects beneath `root` in the calling thread's network namespace.
fn collect_in(root: &Root, request: &Request, extra_keys: &[String]) -> Result<Evidence> {
    let (mut source, fallback) = open_source(root, request.socket_source)?;
    let mut evidence = sample(root, request, extra_keys, source.as_mut())?;
    evidence.inspection.warnings.extend(fallback);
    Ok(evidence)
}

/// One read, or two `--sample` apart.
fn sample(root: &Root, request: &Request, extra_keys: &[String], source: &mut dyn SocketSource) -> Result<Evidence> {
    let Some(interval) = request.sample else {
        let inspection = inspect::read(root, source, request.top, extra_keys)?;
        return Ok(Evidence { inspection, rates: None });
    };
    // The first read lists every bucket, so that any bucket of the second can be compared.
    let first = inspect::read(root, source, usize::MAX, extra_keys)?;
    let start = std::time::Instant::now();
    std::thread::sleep(interval);
    // Every bucket of the second read too, so that one growing fast from nothing is not left out.
    let mut second = inspect::read(root, source, usize::MAX, extra_keys)?;
    let rates = apply_sample(&first, &mut second, start.elapsed().as_secs_f64());
    second.sockets.keep_top(request.top);
    Ok(Evidence { inspection: second, rates: Some(rates) })
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
        SocketSourceChoice::Netlink => Ok((Box::new(NetlinkSocketSource::open()?), None)),
        SocketSourceChoice::Auto if !root.is_live() => Ok((proc(), None)),
        SocketSourceChoice::Auto => match NetlinkSocketSource::open() {
            Ok(netlink) => Ok((Box::new(netlink), None)),
            Err(e) => Ok((proc(), Some(format!("{e}; read /proc/net/tcp instead")))),
        },
    }
}
