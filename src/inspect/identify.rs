//! What the processes behind churning buckets run: the runtime, its version and the HTTP client
//! libraries, read from their files so that the finding can name the library and the setting
//! that fixes it. A Go binary is read for its build information ([`super::gobuild`]); a Python
//! interpreter for its version and the client packages where it imports from ([`super::python`]).
//!
//! Nothing is executed and nothing is traced: the executable is read through `/proc/PID/exe` (the
//! kernel's reference to the very file the process runs, deleted or not: opening it walks no
//! path), `/proc/PID/maps` and `/proc/PID/cmdline` are read bounded, and every other file is
//! opened beneath the process's own root (`/proc/PID/root`, `RESOLVE_IN_ROOT`), so a link in a
//! container resolves inside the container and never reaches the host. Only the first owner of
//! each bucket that churns is identified, [`MAX_IDENTIFIED`] processes at most per read, each
//! read bounded in bytes ([`super::gobuild`]'s bounds, [`MAX_MAPS_BYTES`], [`MAX_METADATA_BYTES`],
//! [`MAX_SITE_DIRS`] directories of at most [`MAX_DIR_ENTRIES`] names). What cannot be told stays
//! unknown.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

use crate::files::{list_in_root_at_most, open_file_in_root, read_in_root};
use crate::inspect::gobuild::{self, NotGo};
use crate::inspect::python;
use crate::model::records::{Identity, Library};
use crate::model::table::SocketSummary;

/// Processes identified per read at most.
pub(crate) const MAX_IDENTIFIED: usize = 4;
/// A bucket whose sampled churn closes at least this many connections a second here is worth
/// naming its process (the lowest rate a churn finding judges).
pub(crate) const MIN_CLOSES_PER_SEC: f64 = 1.0;
/// `/proc/PID/maps` read at most (a process mapping tens of thousands of files is read in part).
pub(crate) const MAX_MAPS_BYTES: u64 = 4 << 20;
/// A package's METADATA read at most.
pub(crate) const MAX_METADATA_BYTES: u64 = 256 << 10;
/// Import directories looked into, and names read from each.
pub(crate) const MAX_SITE_DIRS: usize = 8;
pub(crate) const MAX_DIR_ENTRIES: usize = 50_000;
/// `/proc/PID/cmdline` read at most (only `argv[0]` is used).
const MAX_CMDLINE_BYTES: u64 = 4096;

/// Identifies the first owner of the buckets of `summary` that churn, most closes first, and gives
/// each of that process's entries among the owners its identity.
pub(crate) fn identify_owners(summary: &mut SocketSummary) {
    let mut churning: Vec<(f64, u32)> = summary
        .buckets
        .iter()
        .filter_map(|b| {
            let closes = b.churn.as_ref()?.closed_here_per_sec;
            (closes >= MIN_CLOSES_PER_SEC).then_some((closes, b.owners.as_ref()?.first()?.pid))
        })
        .collect();
    churning.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut identities: HashMap<u32, Identity> = HashMap::new();
    for (_, pid) in churning {
        if identities.len() == MAX_IDENTIFIED {
            break;
        }
        identities.entry(pid).or_insert_with(|| identify(pid));
    }
    for owner in summary.buckets.iter_mut().filter_map(|b| b.owners.as_mut()).flatten() {
        if let Some(identity) = identities.get(&owner.pid) {
            owner.identity = Some(identity.clone());
        }
    }
}

/// What process `pid` runs, as far as its files tell.
pub(crate) fn identify(pid: u32) -> Identity {
    let Ok(process) = Process::open(pid) else {
        return unknown("the process ended, or its /proc entry cannot be read");
    };
    let Some(exe) = process.executable() else {
        return unknown("its executable cannot be read (a kernel thread, or no permission)");
    };
    match gobuild::read(&exe) {
        Ok(build) => Identity {
            runtime: "go",
            version: Some(build.go_version),
            main_module: build.main_module,
            libraries: build.modules,
            unknown: None,
        },
        Err(NotGo::OldFormat) => Identity {
            runtime: "go",
            unknown: Some("Go build information from before Go 1.18, which twtune does not read".into()),
            ..unknown("")
        },
        Err(NotGo::Malformed) => unknown("its Go build information does not parse"),
        Err(NotGo::NotElf | NotGo::NoBuildInfo) => process.python().unwrap_or_else(|| {
            unknown("neither a Go program with build information nor a Python interpreter (others are not identified)")
        }),
    }
}

fn unknown(why: &str) -> Identity {
    Identity {
        runtime: "unknown",
        version: None,
        main_module: None,
        libraries: Vec::new(),
        unknown: (!why.is_empty()).then(|| why.to_string()),
    }
}

/// A process's `/proc` directory, opened once.
struct Process {
    dir: OwnedFd,
}

impl Process {
    fn open(pid: u32) -> std::io::Result<Process> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        Ok(Process { dir: rustix::fs::open(format!("/proc/{pid}").as_str(), flags, Mode::empty())? })
    }

    /// The file the process runs, a regular file only.
    fn executable(&self) -> Option<std::fs::File> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, "exe", flags, Mode::empty()).ok()?;
        let regular = FileType::from_raw_mode(rustix::fs::fstat(&fd).ok()?.st_mode) == FileType::RegularFile;
        regular.then(|| std::fs::File::from(fd))
    }

    /// A file of `/proc/PID`, at most `limit` bytes of it (the rest is left unread, not refused).
    fn read(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(&self.dir, name, flags, Mode::empty()).ok()?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd).take(limit).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Where a link of `/proc/PID` (`exe`, `cwd`) points, as a path of the process's tree.
    fn link(&self, name: &str) -> Option<String> {
        let target = rustix::fs::readlinkat(&self.dir, name, Vec::new()).ok()?;
        let text = String::from_utf8_lossy(target.as_bytes()).into_owned();
        Some(text.strip_suffix(" (deleted)").map(str::to_string).unwrap_or(text))
    }

    /// The process's own root directory (the magic link followed to the directory itself), which
    /// its paths are resolved beneath.
    fn root(&self) -> Option<OwnedFd> {
        rustix::fs::openat(&self.dir, "root", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()
    }

    /// The Python interpreter this process is, if it is one.
    fn python(&self) -> Option<Identity> {
        let executable = self.link("exe").unwrap_or_default();
        let maps = self.read("maps", MAX_MAPS_BYTES).unwrap_or_default();
        let mapped = python::mapped_paths(&String::from_utf8_lossy(&maps));
        if !python::is_python(&executable, &mapped) {
            return None;
        }
        let version = python::version(&executable, &mapped);
        let mut identity = Identity { runtime: "python", version: version.clone(), ..unknown("") };
        let Some(root) = self.root() else {
            identity.unknown = Some("its root directory cannot be opened: its packages are not looked up".into());
            return Some(identity);
        };
        let dirs = self.site_dirs(&root, &executable, version.as_deref(), &mapped);
        identity.libraries = http_packages(&root, &dirs, &mapped);
        if version.is_none() {
            identity.unknown = Some("the interpreter's version is not in its file names".into());
        }
        Some(identity)
    }

    /// Where the interpreter imports packages from, in the order it looks: the directories of the
    /// files it maps, its virtual environment (`argv[0]`'s, holding a `pyvenv.cfg`), then its
    /// prefix's and the distribution's.
    fn site_dirs(&self, root: &OwnedFd, executable: &str, version: Option<&str>, mapped: &[String]) -> Vec<String> {
        let mut dirs = python::site_dirs_of(mapped);
        if let Some(version) = version {
            let cmdline = self.read("cmdline", MAX_CMDLINE_BYTES).unwrap_or_default();
            let argv0 = String::from_utf8_lossy(cmdline.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
            let argv0 = match (argv0.starts_with('/'), argv0.contains('/'), self.link("cwd")) {
                (false, true, Some(cwd)) => format!("{}/{argv0}", cwd.trim_end_matches('/')),
                _ => argv0,
            };
            let venv = python::venv_of(&argv0, version)
                .filter(|(config, _)| open_file_in_root(root, Path::new(config)).is_ok())
                .map(|(_, site)| site);
            let prefix = python::venv_of(executable, version).map(|(_, site)| site);
            let system =
                [format!("/usr/local/lib/python{version}/dist-packages"), "/usr/lib/python3/dist-packages".into()];
            dirs.extend(venv.into_iter().chain(prefix).chain(system));
        }
        let mut unique = Vec::new();
        for dir in dirs {
            if !unique.contains(&dir) {
                unique.push(dir);
            }
        }
        unique.truncate(MAX_SITE_DIRS);
        unique
    }
}

/// The HTTP client distributions installed in `dirs` (beneath `root`), each once (the first
/// directory wins, as on `sys.path`), with the version their METADATA gives.
fn http_packages(root: &OwnedFd, dirs: &[String], mapped: &[String]) -> Vec<Library> {
    let mut found: Vec<Library> = Vec::new();
    for dir in dirs {
        let Ok(entries) = list_in_root_at_most(root, Path::new(dir), MAX_DIR_ENTRIES) else { continue };
        for entry in entries {
            let Some((name, from_dir_name)) = python::http_dist_info(&entry) else { continue };
            if found.iter().any(|l| l.name == name) {
                continue;
            }
            let metadata = read_in_root(root, &Path::new(dir).join(&entry).join("METADATA"), MAX_METADATA_BYTES)
                .ok()
                .and_then(|bytes| python::metadata_version(&String::from_utf8_lossy(&bytes)));
            let version = metadata.or_else(|| python::metadata_version(&format!("Version: {from_dir_name}\n")));
            let found_in = if python::package_mapped(name, dirs, mapped) { "mapped" } else { "search path" };
            found.push(Library { name: name.to_string(), version, found_in });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_process_is_neither_go_nor_python_and_says_so() {
        let identity = identify(std::process::id());
        assert_eq!(identity.runtime, "unknown");
        assert!(identity.unknown.as_deref().is_some_and(|why| why.contains("neither")), "{identity:?}");
        let gone = identify(u32::MAX);
        assert_eq!((gone.runtime, gone.version), ("unknown", None));
    }
}
