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
use crate::inspect::{jar, nginx, python, runtimes};
use crate::model::records::{Identity, Library, MAX_LIBRARIES};
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
/// `/proc/PID/cmdline` read at most (`argv[0]`, and nginx's `-c` and `-p`).
const MAX_CMDLINE_BYTES: u64 = 4096;
/// `/proc/PID/fd` entries looked at at most, for the jars a JVM has open.
pub(crate) const MAX_FDS: usize = 4096;
/// A Java home's `release` file read at most.
const MAX_RELEASE_BYTES: u64 = 64 << 10;
/// How much of a binary's `.rodata` is searched for its version at most (Node.js's release URL
/// lies within its first megabyte, nginx's whole `.rodata` is about 120 KiB).
pub(crate) const MAX_VERSION_SCAN_BYTES: u64 = 4 << 20;
/// `/proc/PID/status` read at most (for the parent of an nginx worker).
const MAX_STATUS_BYTES: u64 = 16 << 10;

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
            proxy_config: None,
            unknown: None,
        },
        Err(NotGo::OldFormat) => Identity {
            runtime: "go",
            unknown: Some("Go build information from before Go 1.18, which twtune does not read".into()),
            ..unknown("")
        },
        Err(NotGo::Malformed) => unknown("its Go build information does not parse"),
        Err(NotGo::NotElf | NotGo::NoBuildInfo) => {
            let executable = process.link("exe").unwrap_or_default();
            let maps = process.read("maps", MAX_MAPS_BYTES).unwrap_or_default();
            let mapped = python::mapped_paths(&String::from_utf8_lossy(&maps));
            process.python(&executable, &mapped).or_else(|| process.other(&exe, &executable, &mapped)).unwrap_or_else(
                || {
                    unknown(
                        "neither a Go program with build information, a Python interpreter, a JVM, Node.js nor \
                         nginx, HAProxy or Envoy (others are not identified)",
                    )
                },
            )
        }
    }
}

fn unknown(why: &str) -> Identity {
    Identity {
        runtime: "unknown",
        version: None,
        main_module: None,
        libraries: Vec::new(),
        proxy_config: None,
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
    fn python(&self, executable: &str, mapped: &[String]) -> Option<Identity> {
        if !python::is_python(executable, mapped) {
            return None;
        }
        let version = python::version(executable, mapped);
        let mut identity = Identity { runtime: "python", version: version.clone(), ..unknown("") };
        let Some(root) = self.root() else {
            identity.unknown = Some("its root directory cannot be opened: its packages are not looked up".into());
            return Some(identity);
        };
        let dirs = self.site_dirs(&root, executable, version.as_deref(), mapped);
        identity.libraries = http_packages(&root, &dirs, mapped);
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

impl Process {
    /// A JVM, Node.js or a proxy, told by the executable's name or what it maps.
    fn other(&self, exe: &std::fs::File, executable: &str, mapped: &[String]) -> Option<Identity> {
        let runtime = runtimes::runtime_by_name(executable)
            .or_else(|| runtimes::java_home(mapped).map(|_| "java"))
            .or_else(|| runtimes::node_from_libnode(mapped).map(|_| "node"))?;
        Some(match runtime {
            "java" => self.java(mapped),
            "node" => node(exe, executable, mapped),
            "nginx" => self.nginx(exe),
            "haproxy" => {
                let accept = |bytes: &[u8]| runtimes::haproxy_version(bytes);
                let marker = runtimes::HAPROXY_MARKER;
                let version = gobuild::after_marker(exe, b".data", marker, MAX_VERSION_SCAN_BYTES, &accept);
                let why = version.is_none().then(|| "HAProxy's version is not in its binary's banner".into());
                Identity { runtime: "haproxy", version, unknown: why, ..unknown("") }
            }
            proxy => Identity {
                runtime: proxy,
                unknown: Some(format!("{proxy} is told by its name; its version is not read")),
                ..unknown("")
            },
        })
    }

    /// A JVM: its version from its Java home, the HTTP client jars it maps or has open.
    fn java(&self, mapped: &[String]) -> Identity {
        let home = runtimes::java_home(mapped);
        let release = match (&home, self.root()) {
            (Some(home), Some(root)) => read_in_root(&root, &Path::new(home).join("release"), MAX_RELEASE_BYTES).ok(),
            _ => None,
        };
        let version = release
            .and_then(|bytes| runtimes::release_version(&String::from_utf8_lossy(&bytes)))
            .or_else(|| home.as_deref().and_then(runtimes::version_in_home));
        let mut libraries: Vec<Library> = Vec::new();
        let open = self.open_jars();
        let jars = mapped.iter().map(|p| (None, p, "mapped")).chain(open.iter().map(|(fd, p)| (Some(fd), p, "open")));
        for (fd, path, found_in) in jars {
            let Some(mut jar) = runtimes::http_jar(path, found_in) else { continue };
            if libraries.len() == MAX_LIBRARIES || libraries.iter().any(|l| l.name == jar.name) {
                continue;
            }
            if jar.version.is_none() {
                jar.version = fd.and_then(|fd| self.jar_manifest_version(fd));
            }
            libraries.push(jar);
        }
        libraries.sort_by(|a, b| a.name.cmp(&b.name));
        let why =
            version.is_none().then(|| "the JVM's version is neither in its home's release file nor its name".into());
        Identity { runtime: "java", version, libraries, unknown: why, ..unknown("") }
    }

    /// The version in the manifest of the jar open as descriptor `fd`, opened through the
    /// process's own reference to it (`/proc/PID/fd/N`, as the executable is: no path is walked).
    fn jar_manifest_version(&self, fd: &str) -> Option<String> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::openat(&self.dir, "fd", dir_flags, Mode::empty()).ok()?;
        // A device named `*.jar` is never opened (opening some has effects): stat first, then
        // check that the file opened is the one stat saw.
        let seen = rustix::fs::statat(&dir, fd, rustix::fs::AtFlags::empty()).ok()?;
        if FileType::from_raw_mode(seen.st_mode) != FileType::RegularFile {
            return None;
        }
        let file = rustix::fs::openat(&dir, fd, flags, Mode::empty()).ok()?;
        let stat = rustix::fs::fstat(&file).ok()?;
        if (stat.st_dev, stat.st_ino) != (seen.st_dev, seen.st_ino) {
            return None;
        }
        jar::manifest_version(&std::fs::File::from(file), u64::try_from(stat.st_size).ok()?)
    }

    /// The jars the process has open, by descriptor: the targets of its `/proc/PID/fd` links, read
    /// and never followed, [`MAX_FDS`] at most.
    fn open_jars(&self) -> Vec<(String, String)> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let Ok(dir) = rustix::fs::openat(&self.dir, "fd", flags, Mode::empty()) else { return Vec::new() };
        let Ok(entries) = rustix::fs::Dir::read_from(&dir) else { return Vec::new() };
        let mut jars = Vec::new();
        for entry in entries.take(MAX_FDS + 2) {
            let Ok(entry) = entry else { break };
            let Ok(target) = rustix::fs::readlinkat(&dir, entry.file_name(), Vec::new()) else { continue };
            let target = String::from_utf8_lossy(target.as_bytes()).into_owned();
            if target.ends_with(".jar") {
                jars.push((entry.file_name().to_string_lossy().into_owned(), target));
            }
        }
        jars
    }

    /// nginx: its version from its binary, and its configuration, read beneath its root.
    fn nginx(&self, exe: &std::fs::File) -> Identity {
        let accept = |bytes: &[u8]| runtimes::version_after(bytes);
        let version = gobuild::after_marker(exe, b".rodata", runtimes::NGINX_MARKER, MAX_VERSION_SCAN_BYTES, &accept);
        let mut identity = Identity { runtime: "nginx", version, ..unknown("") };
        let Some(root) = self.root() else {
            identity.unknown = Some("its root directory cannot be opened: its configuration is not read".into());
            return identity;
        };
        let main = self.nginx_conf_path();
        let mut load = |pattern: &str, budget: nginx::Budget| load_conf(&root, pattern, budget);
        identity.proxy_config = Some(nginx::read_config(&main, &mut load));
        if identity.version.is_none() {
            identity.unknown = Some("nginx's version is not in its binary".into());
        }
        identity
    }

    /// The main configuration file of nginx: `-c` (with `-p`) of this process's command line, or
    /// of its parent's when it is a worker of the same binary (a worker's title names no file).
    fn nginx_conf_path(&self) -> String {
        let mine = self.read("cmdline", MAX_CMDLINE_BYTES).unwrap_or_default();
        runtimes::nginx_conf(&mine)
            .or_else(|| runtimes::nginx_conf(&self.parent_of_same_binary()?.read("cmdline", MAX_CMDLINE_BYTES)?))
            .unwrap_or_else(|| runtimes::NGINX_DEFAULT_CONF.to_string())
    }

    /// The parent process, if it runs the same file as this one.
    fn parent_of_same_binary(&self) -> Option<Process> {
        let status = self.read("status", MAX_STATUS_BYTES)?;
        let status = String::from_utf8_lossy(&status);
        let ppid: u32 = status.lines().find_map(|l| l.strip_prefix("PPid:"))?.trim().parse().ok()?;
        let parent = Process::open(ppid).ok()?;
        let same = |p: &Process| p.executable().and_then(|f| rustix::fs::fstat(&f).ok()).map(|s| (s.st_dev, s.st_ino));
        (same(&parent)? == same(self)?).then_some(parent)
    }
}

/// Node.js: its version from the release URL in its binary, a mapped `libnode`'s soname, or its
/// path (see [`runtimes`]).
fn node(exe: &std::fs::File, executable: &str, mapped: &[String]) -> Identity {
    let accept = |bytes: &[u8]| runtimes::version_after(bytes).map(|v| format!("v{v}"));
    let version = gobuild::after_marker(exe, b".rodata", runtimes::NODE_MARKER, MAX_VERSION_SCAN_BYTES, &accept)
        .or_else(|| runtimes::node_from_libnode(mapped))
        .or_else(|| runtimes::node_from_path(executable));
    let why = version.is_none().then(|| "Node.js's version is neither in its binary, its libnode nor its path".into());
    Identity { runtime: "node", version, unknown: why, ..unknown("") }
}

/// The files an nginx include pattern names beneath `root`, sorted as nginx's glob sorts them,
/// within the budget, each read up to [`nginx::MAX_CONF_BYTES`].
fn load_conf(root: &OwnedFd, pattern: &str, budget: nginx::Budget) -> Result<nginx::Files, String> {
    let (dir, name) = pattern.rsplit_once('/').ok_or("not an absolute path")?;
    let dir = if dir.is_empty() { "/" } else { dir };
    let paths = if name.contains(['*', '?']) {
        let mut names = list_in_root_at_most(root, Path::new(dir), MAX_DIR_ENTRIES).map_err(|e| e.to_string())?;
        names.retain(|n| nginx::name_matches(name, n));
        names.sort();
        names.into_iter().take(budget.files).map(|n| format!("{}/{n}", dir.trim_end_matches('/'))).collect()
    } else {
        vec![pattern.to_string()]
    };
    let (mut files, mut left) = (Vec::new(), budget.bytes);
    for path in paths {
        if left == 0 {
            break;
        }
        let why = |e: std::io::Error| if path == pattern { e.to_string() } else { format!("{path}: {e}") };
        let file = open_file_in_root(root, Path::new(&path)).map_err(why)?;
        let mut bytes = Vec::new();
        file.take(nginx::MAX_CONF_BYTES.min(left as u64)).read_to_end(&mut bytes).map_err(why)?;
        left -= bytes.len();
        files.push((path, bytes));
    }
    Ok(files)
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

    /// Runs `program args` until it prints `ready` (and `settle` more), identifies it, ends it.
    /// `None` when the program is not installed, which fails under `CI=true` (scripts/test
    /// installs it).
    fn identify_running(program: &str, args: &[&str], settle: std::time::Duration) -> Option<Identity> {
        use std::io::BufRead;
        if !Path::new(program).exists() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{program} is missing; scripts/test installs it");
            eprintln!("SKIPPED: {program} is not installed (scripts/test installs it)");
            return None;
        }
        let mut child =
            std::process::Command::new(program).args(args).stdout(std::process::Stdio::piped()).spawn().expect("spawn");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready");
        std::thread::sleep(settle);
        let identity = identify(child.id());
        let _ = (child.kill(), child.wait());
        Some(identity)
    }

    /// The cost of identifying real processes, for bench/identify-bench, which starts them and
    /// names them in `IDENTIFY_BENCH_PIDS` (`go=123 python=456 ...`); `ROUNDS` identifications
    /// each, alternating between processes. Prints each one's median, fastest and slowest in ms,
    /// and the sum of the [`MAX_IDENTIFIED`] largest medians: what one audit may spend at most.
    #[test]
    #[ignore = "run by bench/identify-bench on processes it starts"]
    fn identification_cost() {
        let pids = std::env::var("IDENTIFY_BENCH_PIDS").expect("IDENTIFY_BENCH_PIDS");
        let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(21);
        let named: Vec<(String, u32)> = pids
            .split_whitespace()
            .filter_map(|p| p.split_once('=').map(|(n, pid)| (n.to_string(), pid.parse().expect("pid"))))
            .collect();
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); named.len()];
        for _ in 0..rounds {
            for ((name, pid), spent) in named.iter().zip(&mut times) {
                let started = std::time::Instant::now();
                let identity = identify(*pid);
                spent.push(started.elapsed().as_secs_f64() * 1000.0);
                assert_ne!(identity.runtime, "unknown", "{name} ({pid}): {identity:?}");
            }
        }
        let mut medians = Vec::new();
        for ((name, pid), spent) in named.iter().zip(&mut times) {
            spent.sort_by(f64::total_cmp);
            let identity = identify(*pid);
            let what = crate::rules::fixes::describe(&identity).unwrap_or_default();
            let (median, first, last) = (spent[spent.len() / 2], spent[0], spent[spent.len() - 1]);
            println!("{name:13} median {median:7.2} ms  fastest {first:7.2}  slowest {last:7.2}  ({what})");
            medians.push(median);
        }
        medians.sort_by(|a, b| b.total_cmp(a));
        let worst: f64 = medians.iter().take(MAX_IDENTIFIED).sum();
        println!("the {MAX_IDENTIFIED} costliest medians together: {worst:.2} ms");
        // The version search's worst case: the whole bound searched for a marker that is not there.
        let node = std::fs::File::open("/usr/bin/node").expect("/usr/bin/node");
        let mut spent = Vec::new();
        for _ in 0..rounds {
            let started = std::time::Instant::now();
            let found =
                gobuild::after_marker(&node, b".rodata", b"\xffno such marker", MAX_VERSION_SCAN_BYTES, &|_| None);
            spent.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(found, None);
        }
        spent.sort_by(f64::total_cmp);
        let mib = MAX_VERSION_SCAN_BYTES >> 20;
        println!("{mib} MiB of /usr/bin/node's .rodata searched for nothing: median {:.2} ms", spent[spent.len() / 2]);
        // And nginx's: every file as large as read, each including more, until the file bound.
        let block = b"upstream u { server 10.0.0.1:80; } location / { proxy_pass http://10.0.0.2; }\n";
        let mut file = b"include *.conf;\n".to_vec();
        file.extend(block.repeat(nginx::MAX_CONF_BYTES as usize / block.len()));
        file.truncate(nginx::MAX_CONF_BYTES as usize);
        let mut spent = Vec::new();
        for _ in 0..rounds {
            let started = std::time::Instant::now();
            let mut load = |pattern: &str, budget: nginx::Budget| {
                let bytes = file[..file.len().min(budget.bytes)].to_vec();
                Ok(vec![(pattern.to_string(), bytes); budget.files.min(4)])
            };
            let config = nginx::read_config("/etc/nginx/nginx.conf", &mut load);
            spent.push(started.elapsed().as_secs_f64() * 1000.0);
            assert!(config.unread.is_some());
        }
        spent.sort_by(f64::total_cmp);
        let (kib, mib, median) =
            (nginx::MAX_CONF_BYTES >> 10, nginx::MAX_CONF_TOTAL_BYTES >> 20, spent[spent.len() / 2]);
        println!("nginx's configuration at its bounds (files of {kib} KiB, {mib} MiB in all): median {median:.2} ms");
    }

    #[test]
    fn a_real_node_is_identified_with_the_version_it_prints() {
        let Some(identity) = identify_running(
            "/usr/bin/node",
            &["-e", "console.log('ready'); setInterval(() => {}, 1000)"],
            std::time::Duration::ZERO,
        ) else {
            return;
        };
        let printed = std::process::Command::new("/usr/bin/node").arg("--version").output().expect("node --version");
        let printed = String::from_utf8_lossy(&printed.stdout).trim().to_string();
        let major = printed.trim_start_matches('v').split('.').next().unwrap_or_default().to_string();
        assert_eq!(identity.runtime, "node", "{identity:?}");
        let version = identity.version.expect("a version");
        assert!(version == printed || version == major, "{version} is neither {printed} nor its major (libnode)");
    }

    #[test]
    fn a_real_jvm_is_identified_with_its_release_and_the_httpclient_jar_it_has_open() {
        let java = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java";
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/HttpClientChurn.java");
        let classpath =
            "/usr/share/java/httpclient.jar:/usr/share/java/httpcore.jar:/usr/share/java/commons-logging.jar";
        let args = ["-cp", classpath, source, "http://127.0.0.1:1/", "1"];
        let Some(identity) = identify_running(java, &args, std::time::Duration::from_millis(1500)) else { return };
        let release = std::fs::read_to_string("/usr/lib/jvm/java-17-openjdk-amd64/release").expect("release");
        assert_eq!(identity.runtime, "java", "{identity:?}");
        assert_eq!(identity.version, runtimes::release_version(&release));
        assert!(identity.version.as_deref().is_some_and(|v| v.starts_with("17.")), "{identity:?}");
        let httpclient = identity.library("httpclient").expect("the open httpclient jar");
        assert_eq!(httpclient.found_in, "open");
        let bundle = std::process::Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", "libhttpclient-java"])
            .output()
            .expect("dpkg-query");
        let package = String::from_utf8_lossy(&bundle.stdout).split('-').next().unwrap_or_default().to_string();
        assert_eq!(httpclient.version.as_deref(), Some(package.as_str()), "from its manifest (Bundle-Version)");
    }
}
