//! The open-files limit. Every reader opens, reads and closes (a sweep holds a few namespace
//! descriptors at a time, see [`super::sweep`]), but a host with thousands of namespaces, processes
//! and sockets still needs more than the common soft limit of 1 024 at the worst moment, and that
//! soft limit is only a default for programs that use `select(2)`, which twtune does not. So the
//! commands that read namespaces raise the soft `RLIMIT_NOFILE` to the hard limit once, as they
//! start ([`evidence::collect`](super::evidence::collect), [`sweep`](super::sweep::sweep),
//! [`watch::start`](super::watch::start)): here, in the readers' layer, because they are what
//! needs it, and `lib.rs` only dispatches. The hard limit is never touched: it is the
//! administrator's, and running out of descriptors below it is a one-line error
//! ([`crate::error::Error::OutOfFiles`]).

use std::sync::Once;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft open-files limit to the hard one, once per process. A failure leaves the limit
/// as it was (what then runs out is said as it happens).
pub(crate) fn raise_open_files() {
    static RAISED: Once = Once::new();
    RAISED.call_once(|| {
        let limit = getrlimit(Resource::Nofile);
        if limit.current == limit.maximum {
            return;
        }
        // An unlimited hard limit cannot be the soft one for open files (the kernel caps them at
        // fs.nr_open): then as many as fs.nr_open allows.
        let wanted = limit.maximum.or_else(nr_open);
        if wanted.is_some_and(|wanted| limit.current.is_some_and(|current| current < wanted)) {
            let _ = setrlimit(Resource::Nofile, Rlimit { current: wanted, maximum: limit.maximum });
        }
    });
}

/// `fs.nr_open`: the most descriptors a process may have.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        raise_open_files();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.maximum, before.maximum, "the hard limit is not touched");
        if before.maximum.is_some() {
            assert_eq!(after.current, before.maximum);
        }
    }
}
