//! Which processes hold the live sockets of a destination bucket, found as `ss -p` finds them: the
//! socket's inode (from sock_diag or `/proc/net/tcp`) matched against the `socket:[inode]` links of
//! `/proc/PID/fd`. Only the processes of the audited namespace are walked, each fd once.
//!
//! A TIME_WAIT socket belongs to the kernel alone (its process closed it), so it has no owner; the
//! owners of a bucket are the holders of its other sockets. Reading another user's fd table needs
//! root; without it no owner is guessed.

use std::collections::HashMap;
use std::os::fd::AsFd;

use crate::inspect::netns;
use crate::model::records::{Container, Owner};
use crate::model::table::SocketSummary;
use rustix::fs::{Mode, OFlags};

/// Owners listed per bucket, most sockets first.
pub(crate) const MAX_OWNERS: usize = 10;
/// File descriptors read per process: a process with millions of open files is not walked to the end.
const MAX_FDS_PER_PROCESS: usize = 1 << 20;

/// Fills in `buckets[].owners` of `summary` from the fd tables of `pids`, and says in
/// `owners_unavailable` why not when that is impossible.
pub(crate) fn attribute(summary: &mut SocketSummary, pids: Option<&[u32]>, unavailable: Option<&str>) {
    let Some(pids) = pids else {
        summary.owners_unavailable = unavailable.map(str::to_string);
        return;
    };
    let inodes = std::mem::take(&mut summary.live_inodes);
    // bucket id -> pid -> sockets.
    let mut held: HashMap<u32, HashMap<u32, u32>> = HashMap::new();
    if !inodes.is_empty() {
        let mut link = Vec::with_capacity(64);
        for pid in pids {
            walk(*pid, &mut link, &mut |inode| {
                if let Ok(at) = inodes.binary_search_by_key(&inode, |(i, _)| *i) {
                    *held.entry(inodes[at].1).or_default().entry(*pid).or_default() += 1;
                }
            });
        }
    }
    let mut names: HashMap<u32, (String, Option<Container>)> = HashMap::new();
    for bucket in &mut summary.buckets {
        let mut owners: Vec<Owner> = held
            .get(&bucket.id)
            .into_iter()
            .flatten()
            .map(|(pid, sockets)| {
                let (command, container) = names
                    .entry(*pid)
                    .or_insert_with(|| (netns::command(*pid).unwrap_or_else(|| "?".into()), netns::container_of(*pid)))
                    .clone();
                Owner { pid: *pid, command, container, sockets: *sockets }
            })
            .collect();
        owners.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.pid.cmp(&b.pid)));
        owners.truncate(MAX_OWNERS);
        bucket.owners = Some(owners);
    }
}

/// Calls `found` with the inode of every socket in `pid`'s fd table.
fn walk(pid: u32, link: &mut Vec<u8>, found: &mut dyn FnMut(u32)) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let Ok(dir) = rustix::fs::open(format!("/proc/{pid}/fd").as_str(), flags, Mode::empty()) else { return };
    let Ok(mut entries) = rustix::fs::Dir::read_from(&dir) else { return };
    let mut seen = 0;
    while let Some(Ok(entry)) = entries.next() {
        seen += 1;
        if seen > MAX_FDS_PER_PROCESS {
            break;
        }
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') {
            continue;
        }
        link.clear();
        let Ok(target) = rustix::fs::readlinkat(dir.as_fd(), name, std::mem::take(link)) else { continue };
        let bytes = target.into_bytes();
        if let Some(inode) = socket_inode(&bytes) {
            found(inode);
        }
        *link = bytes;
    }
}

/// The inode of an fd link `socket:[12345]`.
pub(crate) fn socket_inode(link: &[u8]) -> Option<u32> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_give_their_inode_and_nothing_else_does() {
        assert_eq!(socket_inode(b"socket:[4026531993]"), Some(4_026_531_993));
        for other in
            [&b"pipe:[12]"[..], b"/dev/null", b"socket:[]", b"socket:[12", b"socket:[-1]", b"anon_inode:[eventfd]"]
        {
            assert_eq!(socket_inode(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn our_own_socket_is_found_in_our_fd_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let inode = {
            use std::os::fd::AsRawFd;
            let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).expect("fd link");
            socket_inode(link.to_string_lossy().as_bytes()).expect("a socket")
        };
        let mut seen = Vec::new();
        walk(std::process::id(), &mut Vec::new(), &mut |i| seen.push(i));
        assert!(seen.contains(&inode), "{inode} not among {seen:?}");
    }
}
