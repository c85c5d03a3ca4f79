//! Which processes hold the live sockets of a destination bucket, found as `ss -p` finds them: the
//! socket's inode (from sock_diag or `/proc/net/tcp`) matched against the `socket:[inode]` links of
//! `/proc/PID/fd`. Only the processes of the audited namespace are walked, each fd once.
//!
//! A TIME_WAIT socket belongs to the kernel alone (its process closed it), so it has no owner; the
//! owners of a bucket are the holders of its other sockets. Reading another user's fd table needs
//! root; without it no owner is guessed.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::inspect::netns;
use crate::model::records::{Container, Owner};
use crate::model::table::SocketSummary;
use rustix::fs::{Mode, OFlags};

/// Owners listed per bucket, most sockets first.
pub(crate) const MAX_OWNERS: usize = 10;
/// What one lookup may cost at most, over all the processes it walks: descriptors looked at (one
/// `readlink` each, about 2 µs) and time. A host where some processes hold tens of thousands of
/// open files (a database, a proxy) must not make a plain audit take seconds; past the budget the
/// lookup stops, keeps what it found and says what it left out.
const MAX_FDS_LOOKED_AT: usize = 200_000;
const MAX_LOOKUP_TIME: Duration = Duration::from_millis(400);
/// Descriptors read between two looks at the clock.
const CLOCK_EVERY: usize = 256;

/// Fills in `buckets[].owners` of `summary` from the fd tables of `pids`, and says in
/// `owners_unavailable` why not when that is impossible, or what was left out when the lookup went
/// past its budget ([`MAX_FDS_LOOKED_AT`], [`MAX_LOOKUP_TIME`]). Processes are walked fewest open
/// files first (the size of `/proc/PID/fd`, one `fstat`), so that a budget spent on a few huge fd
/// tables does not hide the owners of ordinary clients, and the walk ends as soon as every live
/// socket has been found (a socket shared by processes, inherited across `fork`, is then credited
/// to the first found). Running out of descriptors is an error.
pub(crate) fn attribute(summary: &mut SocketSummary, pids: Option<&[u32]>, unavailable: Option<&str>) -> Result<()> {
    let Some(pids) = pids else {
        summary.owners_unavailable = unavailable.map(str::to_string);
        return Ok(());
    };
    let inodes = std::mem::take(&mut summary.live_inodes);
    let mut lookup = Lookup::new(&inodes);
    if !inodes.is_empty() {
        lookup.walk_all(pids)?;
    }
    summary.owners_unavailable = lookup.left_out();
    name_owners(summary, &lookup.held);
    Ok(())
}

/// The owners of each bucket, named from `/proc/PID/comm` and the process's cgroup.
fn name_owners(summary: &mut SocketSummary, held: &HashMap<u32, HashMap<u32, u32>>) {
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
                Owner { pid: *pid, command, container, sockets: *sockets, identity: None }
            })
            .collect();
        owners.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.pid.cmp(&b.pid)));
        owners.truncate(MAX_OWNERS);
        bucket.owners = Some(owners);
    }
}

/// One lookup: the live sockets sought, who holds them, and what it cost.
struct Lookup<'a> {
    /// (inode, bucket id), sorted by inode.
    inodes: &'a [(u32, u32)],
    /// Whether each of `inodes` was found.
    found: Vec<bool>,
    unfound: usize,
    /// bucket id -> pid -> sockets.
    held: HashMap<u32, HashMap<u32, u32>>,
    started: Instant,
    looked_at: usize,
    /// Processes and descriptors (as their fd tables' sizes said) not looked at.
    skipped_processes: usize,
    skipped_fds: u64,
}

impl<'a> Lookup<'a> {
    fn new(inodes: &'a [(u32, u32)]) -> Lookup<'a> {
        Lookup {
            inodes,
            found: vec![false; inodes.len()],
            unfound: inodes.len(),
            held: HashMap::new(),
            started: Instant::now(),
            looked_at: 0,
            skipped_processes: 0,
            skipped_fds: 0,
        }
    }

    /// Walks the fd tables of `pids`, fewest open files first, until every socket is found or the
    /// budget is spent.
    fn walk_all(&mut self, pids: &[u32]) -> Result<()> {
        let mut tables: Vec<(u64, u32)> = pids.iter().map(|pid| (fd_count(*pid), *pid)).collect();
        tables.sort_unstable();
        for (at, (size, pid)) in tables.iter().enumerate() {
            if self.unfound == 0 {
                break;
            }
            if self.spent() {
                self.skipped_processes += tables.len() - at;
                self.skipped_fds += tables[at..].iter().map(|(size, _)| size).sum::<u64>();
                break;
            }
            let walked = walk(*pid, &mut |inode| self.visit(*pid, inode))?;
            if !walked {
                // Stopped inside this table: what it holds beyond is left out.
                self.skipped_processes += tables.len() - at;
                self.skipped_fds += tables[at + 1..].iter().map(|(size, _)| size).sum::<u64>() + size / 2;
                break;
            }
        }
        Ok(())
    }

    /// Counts one descriptor of `pid` looked at, a socket `inode` or not; `false` once the budget
    /// is spent.
    fn visit(&mut self, pid: u32, inode: Option<u32>) -> bool {
        if let Some(at) = inode.and_then(|inode| self.inodes.binary_search_by_key(&inode, |(i, _)| *i).ok()) {
            *self.held.entry(self.inodes[at].1).or_default().entry(pid).or_default() += 1;
            if !self.found[at] {
                self.found[at] = true;
                self.unfound -= 1;
            }
        }
        self.looked_at += 1;
        !(self.looked_at.is_multiple_of(CLOCK_EVERY) && self.spent()) && self.looked_at < MAX_FDS_LOOKED_AT
    }

    fn spent(&self) -> bool {
        self.looked_at >= MAX_FDS_LOOKED_AT || self.started.elapsed() >= MAX_LOOKUP_TIME
    }

    /// What the report says when the budget left processes out.
    fn left_out(&self) -> Option<String> {
        (self.skipped_processes > 0).then(|| {
            let fds =
                if self.skipped_fds > 0 { format!(" (about {} open files)", self.skipped_fds) } else { String::new() };
            format!(
                "looked up in part: {} processes{fds} were not looked at, past the lookup's budget of {} descriptors \
                 and {} ms; {} of {} live sockets found",
                self.skipped_processes,
                MAX_FDS_LOOKED_AT,
                MAX_LOOKUP_TIME.as_millis(),
                self.inodes.len() - self.unfound,
                self.inodes.len()
            )
        })
    }
}

/// How many descriptors `pid` has open: the size of its `/proc/PID/fd` (Linux 6.2 and later; 0
/// before, where the walk keeps the order of PIDs).
fn fd_count(pid: u32) -> u64 {
    rustix::fs::stat(format!("/proc/{pid}/fd").as_str()).map_or(0, |stat| u64::try_from(stat.st_size).unwrap_or(0))
}

/// Calls `visit` for every descriptor in `pid`'s fd table, with the inode of a socket, stopping
/// when it says so. `Ok(false)`: stopped before the end. A process that ended or cannot be read is
/// walked with nothing found; running out of descriptors is an error.
fn walk(pid: u32, visit: &mut dyn FnMut(Option<u32>) -> bool) -> Result<bool> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let path = format!("/proc/{pid}/fd");
    let dir = match rustix::fs::open(path.as_str(), flags, Mode::empty()) {
        Ok(dir) => dir,
        Err(e) => {
            return match Error::if_out_of_files(&e.into(), || format!("opening {path}")) {
                Some(error) => Err(error),
                None => Ok(true),
            };
        }
    };
    let Ok(mut entries) = rustix::fs::Dir::read_from(&dir) else { return Ok(true) };
    let mut link = Vec::with_capacity(64);
    let mut seen = 0;
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') {
            continue;
        }
        seen += 1;
        if seen > MAX_FDS_PER_PROCESS {
            return Ok(false);
        }
        link.clear();
        let Ok(target) = rustix::fs::readlinkat(dir.as_fd(), name, std::mem::take(&mut link)) else { continue };
        let bytes = target.into_bytes();
        let more = visit(socket_inode(&bytes));
        link = bytes;
        if !more {
            return Ok(false);
        }
    }
    Ok(true)
}

/// File descriptors read per process: a process with millions of open files is not walked to the end.
const MAX_FDS_PER_PROCESS: usize = 1 << 20;

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
        let walked = walk(std::process::id(), &mut |i| {
            seen.extend(i);
            true
        })
        .expect("walk");
        assert!(walked);
        assert!(seen.contains(&inode), "{inode} not among {seen:?}");
    }
}
