//! Every network namespace of the live host: those of all processes (`/proc/PID/ns/net`, one
//! entry per namespace inode) and those bind-mounted under `/run/netns` (`ip netns add`) and
//! `/var/run/docker/netns` even when no process is in them, each with the names people know it by
//! (its `ip netns` name, the container or pod of its first process, `host` for PID 1's).
//!
//! The directory entries are untrusted: they are looked at as paths only (`O_PATH`, so a FIFO or a
//! device is never opened, wherever a link points), and only a file of the namespace file system
//! (the device of our own `/proc/self/ns/net`) counts. Processes come and go while this runs; a process that ends
//! between the listing and the read is simply not there.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::read_bounded;
use crate::inspect::cgroup;
use crate::model::records::Container;

/// Directories where tools keep namespaces no process may be in.
const NAMED_DIRS: &[(&str, &str)] = &[("/run/netns", ""), ("/var/run/docker/netns", "docker/")];
/// Entries read from each of them, and processes listed per namespace in a report.
const MAX_NAMED: usize = 4096;
const MAX_LISTED_PIDS: usize = 64;

/// One network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Namespace {
    /// The namespace's inode, as `ip netns identify` and `ls -l /proc/PID/ns/net` show it (`net:[N]`).
    pub inode: u64,
    /// Its names under `/run/netns` (and `docker/NAME` under `/var/run/docker/netns`), joined by `,`.
    pub name: Option<String>,
    /// Whether it is the host's: the namespace of the kernel's own threads (kthreadd), seen from
    /// the host's PID namespace.
    pub host: bool,
    /// Processes in it, lowest first (at most 64 listed; `process_count` has them all).
    pub pids: Vec<u32>,
    pub process_count: usize,
    /// The container or pod of its first process, from the process's cgroup.
    pub container: Option<Container>,
    /// The user namespace that owns it, told from inside it by [`user_namespace_here`] (the
    /// listing leaves it unknown).
    pub user_namespace: UserNamespace,
    /// How to open it: its named files, then the process files.
    #[serde(skip)]
    files: Vec<PathBuf>,
    /// Every process, for the owners of its sockets.
    #[serde(skip)]
    pub all_pids: Vec<u32>,
    /// The command of its first process, read when it was listed.
    #[serde(skip)]
    first_command: Option<String>,
}

impl Namespace {
    /// What people call it: `host`, else its container or pod (with its file name, which runtimes
    /// choose, in brackets), else its name, else its first process.
    pub(crate) fn label(&self) -> String {
        let bracketed = |name: &Option<String>| name.as_ref().map(|n| format!(" [{n}]")).unwrap_or_default();
        if self.host {
            return format!("host{}", bracketed(&self.name));
        }
        if let Some(container) = &self.container {
            return format!("{}{}", container.label(), bracketed(&self.name));
        }
        if let Some(name) = &self.name {
            return name.clone();
        }
        match self.all_pids.first() {
            Some(pid) => format!("pid {pid} ({})", self.first_command.as_deref().unwrap_or("?")),
            None => format!("net:[{}]", self.inode),
        }
    }

    /// A name that stays while the namespace lives (for metric labels): the label without a
    /// process, which changes when the process does.
    pub(crate) fn stable_name(&self) -> Option<String> {
        (self.host || self.container.is_some() || self.name.is_some()).then(|| self.label())
    }

    /// Opens the namespace, checking that the file opened is still this namespace (a process may
    /// have ended and its PID been reused). `Ok(None)`: it is gone. Running out of descriptors is
    /// an error, not a namespace gone.
    pub(crate) fn open(&self) -> Result<Option<OwnedFd>> {
        let Ok(nsfs) = nsfs_device() else { return Ok(None) };
        for file in &self.files {
            let fd = match open_namespace_file(file) {
                Ok(fd) => fd,
                Err(e) => match Error::if_out_of_files(&e, || format!("opening {}", file.display())) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            };
            if rustix::fs::fstat(&fd).is_ok_and(|stat| stat.st_dev == nsfs && stat.st_ino == self.inode) {
                return Ok(Some(fd));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
impl Namespace {
    /// A namespace as [`enumerate`] would list it, for report tests.
    pub(crate) fn example(inode: u64, name: Option<&str>, container: Option<Container>, pids: &[u32]) -> Namespace {
        Namespace {
            inode,
            host: name == Some("host"),
            first_command: None,
            name: name.filter(|n| *n != "host").map(str::to_string),
            pids: pids.to_vec(),
            process_count: pids.len(),
            container,
            user_namespace: UserNamespace { initial: Some(true), owner_uid: Some(0) },
            files: Vec::new(),
            all_pids: pids.to_vec(),
        }
    }
}

/// The namespaces of the host as far as the caller can see them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Namespaces {
    /// By inode.
    pub list: Vec<Namespace>,
    /// Processes whose namespace could not be read (another user's, without root).
    pub unreadable: usize,
}

impl Namespaces {
    /// The namespace with this inode.
    pub(crate) fn get(&self, inode: u64) -> Option<&Namespace> {
        self.list.iter().find(|ns| ns.inode == inode)
    }

    /// Whether namespace `inode` is the host's initial one; `None` when the host's was not found
    /// (not root, or another PID namespace: see [`Namespace::host`]).
    pub(crate) fn is_initial(&self, inode: u64) -> Option<bool> {
        self.list.iter().find(|ns| ns.host).map(|host| host.inode == inode)
    }
}

/// Whether namespace `inode` is the host's initial one, told as [`enumerate`] tells the host's (the
/// namespace of kthreadd) without listing the others. `None` where it cannot be told: in another
/// PID namespace, without a mounted `/proc`, or without the right to look at PID 2 (not root).
/// PID 1 would not do: a container's init is PID 1 of its own PID namespace, and a sandbox's PID 1
/// may hide its namespace even from root.
pub(crate) fn is_initial(inode: u64) -> Option<bool> {
    if !kthreadd_is_pid_2() {
        return None;
    }
    let stat = rustix::fs::stat("/proc/2/ns/net").ok()?;
    (stat.st_dev == nsfs_device().ok()?).then_some(stat.st_ino == inode)
}

/// Whether PID 2 of the PID namespace `/proc` shows is the kernel's kthreadd, whose network
/// namespace is the host's initial one (inside another PID namespace PID 2 is someone else).
fn kthreadd_is_pid_2() -> bool {
    in_top_pid_namespace() && command(2).as_deref() == Some("kthreadd")
}

/// The device of the namespace file system.
fn nsfs_device() -> std::io::Result<u64> {
    Ok(rustix::fs::stat("/proc/self/ns/net")?.st_dev)
}

/// The inode of the network namespace this thread is in.
pub(crate) fn current() -> std::io::Result<u64> {
    Ok(rustix::fs::stat("/proc/thread-self/ns/net")?.st_ino)
}

/// The inode of a namespace file already open.
pub(crate) fn inode_of(fd: &OwnedFd) -> std::io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

/// Opens a namespace file for setns(2). It is first opened as a path only (`O_PATH`: nothing of a
/// FIFO or a device is opened, whatever a link points to), checked to be of the namespace file
/// system, and only then opened for real through its descriptor.
pub(crate) fn open_namespace_file(path: &Path) -> std::io::Result<OwnedFd> {
    let handle = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    if rustix::fs::fstat(&handle)?.st_dev != nsfs_device()? {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a namespace file"));
    }
    let reopen = format!("/proc/thread-self/fd/{}", handle.as_raw_fd());
    Ok(rustix::fs::open(reopen.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// The user namespace that owns a network namespace: whoever has CAP_NET_ADMIN there (root of
/// that user namespace, and its owner) can set its sysctls and rules, and can send netlink messages
/// to any socket of it that is not connected to the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct UserNamespace {
    /// Whether it is the host's initial user namespace; `None` where that cannot be told.
    pub initial: Option<bool>,
    /// The host uid that owns it (root of the namespace maps to it): 0 for the initial one; `None`
    /// where it is not known (a user namespace that maps no root, or unknown).
    pub owner_uid: Option<u32>,
}

impl UserNamespace {
    /// Whether it is known to be a user's, not the host's.
    pub(crate) fn is_users(&self) -> bool {
        self.initial == Some(false)
    }
}

/// A sysctl file every network namespace has: the kernel gives the sysctl files of a namespace
/// to the host uid root of the namespace's user namespace maps to (`net_ctl_set_ownership`).
const NAMESPACE_SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The user namespace owning the network namespace the calling thread is in, `pids` its
/// processes. The kernel gives a namespace's sysctl files to the host uid that root of its user
/// namespace maps to: a uid other than 0 is a user's namespace, and that uid owns it. Uid 0 is
/// the host's, but for a user namespace that maps no root (whose files fall back to uid 0): where
/// a process of the namespace is in a user namespace other than the host's (kthreadd's), that
/// cannot be told, and the answer is unknown. The host's own namespace is the host's whatever its
/// processes are in (a sandbox in a user namespace may share it). Only `/proc` is read (no ioctl
/// on namespace files: `NS_GET_USERNS` has no safe wrapper).
pub(crate) fn user_namespace_here(pids: &[u32]) -> UserNamespace {
    match rustix::fs::stat(NAMESPACE_SYSCTL).map(|stat| stat.st_uid) {
        Ok(0) => {}
        Ok(uid) => return UserNamespace { initial: Some(false), owner_uid: Some(uid) },
        Err(_) => return UserNamespace::default(),
    }
    let host = UserNamespace { initial: Some(true), owner_uid: Some(0) };
    if current().ok().and_then(is_initial) == Some(true) {
        return host;
    }
    let Some(initial) = initial_user_namespace() else { return UserNamespace::default() };
    let foreign = pids
        .iter()
        .any(|pid| rustix::fs::stat(format!("/proc/{pid}/ns/user").as_str()).is_ok_and(|stat| stat.st_ino != initial));
    if foreign { UserNamespace::default() } else { host }
}

/// The inode of the host's initial user namespace: kthreadd's, seen from the host's PID namespace.
fn initial_user_namespace() -> Option<u64> {
    kthreadd_is_pid_2().then(|| rustix::fs::stat("/proc/2/ns/user").ok().map(|stat| stat.st_ino)).flatten()
}

/// Lists the network namespaces of the host.
pub(crate) fn enumerate() -> Result<Namespaces> {
    let nsfs = nsfs_device().map_err(|e| Error::Namespace {
        path: "/proc/self/ns/net".into(),
        problem: format!("{e}; listing namespaces needs a mounted /proc"),
    })?;
    let mut found: BTreeMap<u64, Namespace> = BTreeMap::new();
    add_named(nsfs, &mut found)?;
    let unreadable = add_processes(nsfs, &mut found)?;
    let list = found.into_values().map(summarized).collect();
    Ok(Namespaces { list, unreadable })
}

/// Adds the namespaces bind-mounted under [`NAMED_DIRS`], each with its names and files.
fn add_named(nsfs: u64, found: &mut BTreeMap<u64, Namespace>) -> Result<()> {
    let out_of_files =
        |e: &std::io::Error, path: &Path| Error::if_out_of_files(e, || format!("opening {}", path.display()));
    for (dir, prefix) in NAMED_DIRS {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => match out_of_files(&e, Path::new(dir)) {
                Some(error) => return Err(error),
                None => continue,
            },
        };
        for dirent in entries.flatten().take(MAX_NAMED) {
            let path = dirent.path();
            // A link is looked at where it points (`ln -s /proc/PID/ns/net /run/netns/NAME` is a
            // known recipe): O_PATH opens nothing, and only a namespace file counts.
            let handle = match rustix::fs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()) {
                Ok(handle) => handle,
                Err(e) => match out_of_files(&e.into(), &path) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            };
            let Ok(stat) = rustix::fs::fstat(&handle) else { continue };
            // `ip netns add` leaves an empty file when the mount failed: not a namespace.
            if stat.st_dev != nsfs {
                continue;
            }
            let name = format!("{prefix}{}", printable_name(&dirent.file_name().to_string_lossy()));
            let ns = namespace(found, stat.st_ino);
            ns.name = Some(match ns.name.take() {
                Some(names) => format!("{names},{name}"),
                None => name,
            });
            ns.files.push(path);
        }
    }
    Ok(())
}

/// Adds every process to the namespace it is in, lowest PID first; returns how many processes'
/// namespaces could not be read.
fn add_processes(nsfs: u64, found: &mut BTreeMap<u64, Namespace>) -> Result<usize> {
    let processes = std::fs::read_dir("/proc").map_err(|e| {
        Error::if_out_of_files(&e, || "listing /proc".into())
            .unwrap_or_else(|| Error::Namespace { path: "/proc".into(), problem: "cannot list processes".into() })
    })?;
    let mut unreadable = 0;
    let mut pids: Vec<u32> = processes.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).collect();
    pids.sort_unstable();
    for pid in pids {
        let file = PathBuf::from(format!("/proc/{pid}/ns/net"));
        match rustix::fs::stat(&file) {
            Ok(stat) if stat.st_dev == nsfs => {
                let ns = namespace(found, stat.st_ino);
                // The kernel's threads (kthreadd, PID 2 of the host's PID namespace) live in the
                // host's network namespace.
                if pid == 2 && kthreadd_is_pid_2() {
                    ns.host = true;
                }
                if ns.all_pids.is_empty() {
                    ns.first_command = command(pid);
                }
                ns.all_pids.push(pid);
                if ns.files.len() < MAX_NAMED {
                    ns.files.push(file);
                }
            }
            Ok(_) => {}
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => unreadable += 1,
            // The process ended.
            Err(_) => {}
        }
    }
    Ok(unreadable)
}

/// Fills in what is known once all processes are in: their count, the ones listed, the container.
fn summarized(mut ns: Namespace) -> Namespace {
    ns.process_count = ns.all_pids.len();
    ns.pids = ns.all_pids.iter().copied().take(MAX_LISTED_PIDS).collect();
    ns.container = ns.all_pids.first().and_then(|pid| container_of(*pid));
    ns
}

/// Whether this process is in the host's PID namespace: its `NSpid` line lists one PID only (one per
/// level of nesting otherwise).
fn in_top_pid_namespace() -> bool {
    let status = read_proc_self_status().unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("NSpid:")).is_some_and(|pids| pids.split_whitespace().count() == 1)
}

fn read_proc_self_status() -> Option<String> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = rustix::fs::open("/proc/self/status", flags, Mode::empty()).ok()?;
    Some(String::from_utf8_lossy(&read_bounded(std::fs::File::from(fd), 64 * 1024).ok()?).into_owned())
}

fn namespace(found: &mut BTreeMap<u64, Namespace>, inode: u64) -> &mut Namespace {
    found.entry(inode).or_insert_with(|| Namespace {
        inode,
        host: false,
        first_command: None,
        name: None,
        pids: Vec::new(),
        process_count: 0,
        container: None,
        user_namespace: UserNamespace::default(),
        files: Vec::new(),
        all_pids: Vec::new(),
    })
}

/// A file or command name as it may be shown: control characters and the invisible marks that
/// reorder text (bidirectional overrides and isolates) as `?`, at most 64 characters.
pub(crate) fn printable_name(text: &str) -> String {
    let hidden = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    text.chars().take(64).map(|c| if hidden(c) { '?' } else { c }).collect()
}

/// Reads a small file of `/proc/PID`, bounded, never blocking.
fn read_proc(pid: u32, name: &str, limit: u64) -> Option<String> {
    let path = format!("/proc/{pid}/{name}");
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY;
    let fd = rustix::fs::open(path.as_str(), flags, Mode::empty()).ok()?;
    let bytes = read_bounded(std::fs::File::from(fd), limit).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A process's command name (`/proc/PID/comm`, which the process sets itself), printable.
pub(crate) fn command(pid: u32) -> Option<String> {
    read_proc(pid, "comm", 64).map(|text| printable_name(text.trim_end_matches('\n')))
}

/// The container a process runs in, from its cgroup.
pub(crate) fn container_of(pid: u32) -> Option<Container> {
    cgroup::container(&read_proc(pid, "cgroup", cgroup::MAX_CGROUP_BYTES)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_in_its_namespace() {
        let namespaces = enumerate().expect("list namespaces");
        let own = current().expect("own namespace");
        let ns = namespaces.get(own).expect("our namespace is listed");
        assert!(ns.all_pids.contains(&std::process::id()), "{ns:?}");
        assert!(ns.open().expect("open").is_some_and(|fd| inode_of(&fd).ok() == Some(own)));
        assert_eq!(ns.process_count, ns.all_pids.len());
    }

    #[test]
    fn the_host_is_kthreadds_namespace_seen_from_the_host_pid_namespace() {
        let namespaces = enumerate().expect("list namespaces");
        let hosts: Vec<&Namespace> = namespaces.list.iter().filter(|ns| ns.host).collect();
        assert!(hosts.len() <= 1, "{hosts:?}");
        if kthreadd_is_pid_2() {
            assert_eq!(hosts.len(), 1);
            assert!(hosts[0].all_pids.contains(&2) && hosts[0].label().starts_with("host"));
        }
    }

    #[test]
    fn the_initial_namespace_is_told_alike_with_and_without_the_listing() {
        let namespaces = enumerate().expect("list namespaces");
        let own = current().expect("own namespace");
        assert_eq!(is_initial(own), namespaces.is_initial(own));
        // Unknown only where the host's namespace cannot be seen; then no namespace is it.
        match namespaces.list.iter().find(|ns| ns.host) {
            Some(host) => {
                assert_eq!(is_initial(host.inode), Some(true));
                assert_eq!(is_initial(host.inode + 1), Some(false));
            }
            None => assert_eq!(is_initial(own), None),
        }
    }

    #[test]
    fn a_container_is_named_before_the_file_its_runtime_chose() {
        let docker = crate::inspect::cgroup::from_path(&format!("/docker/{}", "ab".repeat(32)));
        let mut ns = Namespace::example(9, Some("cni-0a1b"), docker, &[10]);
        assert_eq!(ns.label(), "docker abababababab [cni-0a1b]");
        ns.container = None;
        assert_eq!((ns.label(), ns.stable_name()), ("cni-0a1b".to_string(), Some("cni-0a1b".to_string())));
        ns.name = None;
        assert_eq!((ns.label(), ns.stable_name()), ("pid 10 (?)".to_string(), None));
        assert_eq!(Namespace::example(1, Some("host"), None, &[2]).label(), "host");
    }

    #[test]
    fn this_namespace_is_owned_as_its_sysctls_say() {
        let own = user_namespace_here(&[std::process::id()]);
        let uid = rustix::fs::stat(NAMESPACE_SYSCTL).map(|s| s.st_uid).ok();
        match uid {
            Some(uid) if uid != 0 => assert_eq!(own, UserNamespace { initial: Some(false), owner_uid: Some(uid) }),
            _ if is_initial(current().expect("own")) == Some(true) => {
                assert_eq!(own, UserNamespace { initial: Some(true), owner_uid: Some(0) })
            }
            _ => assert_ne!(own.initial, Some(false), "{own:?}"),
        }
    }

    #[test]
    fn names_are_made_printable_and_short() {
        assert_eq!(printable_name("blue\u{1b}[2J\n"), "blue?[2J?");
        assert_eq!(printable_name("evil\u{202e}txt.exe\u{2066}"), "evil?txt.exe?");
        assert_eq!(printable_name(&"x".repeat(100)).len(), 64);
    }
}
