//! The checks before the first write, so that an apply or rollback that cannot finish never
//! starts: `/proc/sys` opened beneath the root, every key, the state directory and the persisted
//! file writable by this process (a read-only `/proc/sys` named as such), and the signals that
//! would interrupt a transaction caught.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::journal::StateDir;
use super::transaction::Controls;
use crate::error::{Error, Result};
use crate::sysctl::SysctlKey;
use crate::sysctl::procsys::ProcSys;

/// Opens `ROOT/proc/sys` for writing keys.
pub(crate) fn open_procsys(root: &Path) -> Result<ProcSys> {
    ProcSys::open(root).map_err(|source| Error::Read {
        path: root.join("proc/sys"),
        source,
        hint: "; --root must hold proc/sys laid out as on a live host",
    })
}

/// Keys with one value for the whole host, readable but not writable from another network namespace.
const GLOBAL_KEYS: &[&str] = &["net.netfilter.nf_conntrack_max"];

/// Everything that will be written must be writable, checked before the first write.
pub(crate) fn check_permitted<'a>(
    procsys: &ProcSys,
    keys: impl Iterator<Item = &'a SysctlKey>,
    state: &StateDir,
    persist: Option<&Path>,
) -> Result<()> {
    for key in keys {
        procsys.may_write(key).map_err(|e| {
            let what = format!("write {}", procsys.path_of(key).display());
            // A read-only /proc/sys (a container's) is not a matter of privilege.
            if e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) {
                Error::ReadOnly { what }
            } else if rustix::process::geteuid().is_root() && GLOBAL_KEYS.contains(&key.as_str()) {
                // Root, refused: the key is one value for the whole host, which only the host's
                // (initial) network namespace may change.
                Error::Refused {
                    key: key.to_string(),
                    problem: "it is global to the host, and only the host's own network namespace may change it \
                              (this one is a container's or a pod's): apply it on the host or node"
                        .into(),
                }
            } else {
                Error::NotPermitted { what, reason: e.to_string() }
            }
        })?;
    }
    state.check_writable()?;
    if let Some(path) = persist {
        let mut dir = path.parent().unwrap_or(Path::new("/"));
        while !dir.exists() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).map_err(|e| {
            let what = format!("write {}", path.display());
            // A read-only file system is not a matter of privilege: root cannot write it either.
            if e == rustix::io::Errno::ROFS {
                Error::ReadOnlyFile { what }
            } else {
                Error::NotPermitted { what, reason: std::io::Error::from(e).to_string() }
            }
        })?;
    }
    Ok(())
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT set a flag the transaction checks between writes, so an interrupt ends with
/// the old state (everything restored) or, once all is written, the new one; never a mix.
pub(crate) fn controls(write_delay: Option<Duration>) -> Result<Controls> {
    let interrupted = Arc::new(AtomicBool::new(false));
    // SIGHUP too: a dropped ssh session must not leave half an apply behind.
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .map_err(|source| Error::Signal { signal, source })?;
    }
    Ok(Controls { interrupted, write_delay })
}
