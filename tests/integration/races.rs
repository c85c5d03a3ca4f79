//! Outputs raced by an attacker (issue #24): a thread swaps the output path in a loop (a link to a
//! victim put in its place, the new directory renamed aside and a directory of links put there)
//! while twtune writes it, many times over. twtune may fail with a clean error when it meets a
//! swap, but never writes outside the directory it opened: the victims (root's own 0600 files in
//! another directory) stay byte for byte and mode for mode what they were. Every loop is bounded
//! by a count and by time.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{fixture, twtune};

/// How many times twtune runs against the attacker, at most, and for how long.
const RUNS: usize = 120;
const RUN_TIME: Duration = Duration::from_secs(20);
/// How many swaps the attacker makes, at most, and for how long.
const SWAPS: u64 = 5_000_000;
const SWAP_TIME: Duration = Duration::from_secs(30);

/// Root's own files elsewhere, which no output may reach: mode 0600, known content, in a 0700
/// directory that holds nothing else.
struct Victims {
    dir: tempfile::TempDir,
    names: Vec<&'static str>,
}

impl Victims {
    fn new(names: &[&'static str]) -> Victims {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        for name in names {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("precious {name}\n")).expect("write victim");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        Victims { dir, names: names.to_vec() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Nothing was written, added, replaced or re-moded.
    fn assert_untouched(&self) {
        let mut listed: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("list victims")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        listed.sort();
        let mut names: Vec<String> = self.names.iter().map(|n| n.to_string()).collect();
        names.sort();
        assert_eq!(listed, names, "nothing was added beside the victims");
        for name in &self.names {
            let path = self.dir.path().join(name);
            let meta = std::fs::symlink_metadata(&path).expect("victim");
            assert!(meta.file_type().is_file(), "{name} is still a regular file");
            assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{name} keeps its mode");
            assert_eq!(std::fs::read(&path).expect("read"), format!("precious {name}\n").into_bytes(), "{name}");
        }
        let mode = std::fs::metadata(self.dir.path()).expect("victim dir").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "the victims' directory keeps its mode");
    }
}

/// A thread that calls `swap` in a loop until stopped, or `SWAPS` times, or for `SWAP_TIME`.
struct Attacker {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl Attacker {
    fn start(mut swap: impl FnMut(u64) + Send + 'static) -> Attacker {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0;
            while !stopped.load(Ordering::SeqCst) && n < SWAPS && start.elapsed() < SWAP_TIME {
                swap(n);
                n += 1;
            }
            n
        });
        Attacker { stop, handle }
    }

    /// Stops it; how many swaps it made.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the attacker thread")
    }
}

/// Removes whatever `path` is (a file, a link, a directory tree), never following a link.
fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => drop(std::fs::remove_dir_all(path)),
        Ok(_) => drop(std::fs::remove_file(path)),
        Err(_) => {}
    }
}

/// Runs twtune with `args` and then `output(i)` up to `RUNS` times; each run succeeds or fails
/// with one clean line (never a panic). The runs that succeeded.
fn run_many(args: &[&str], output: impl Fn(usize) -> PathBuf, current: &AtomicUsize) -> Vec<usize> {
    let start = Instant::now();
    let mut succeeded = Vec::new();
    for i in 0..RUNS {
        if start.elapsed() > RUN_TIME {
            break;
        }
        current.store(i, Ordering::SeqCst);
        let out = twtune().args(args).arg(output(i)).output().expect("run twtune");
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => succeeded.push(i),
            Some(2) => assert!(
                stderr.starts_with("twtune: ") && stderr.lines().count() == 1,
                "a clean one-line error: {stderr}"
            ),
            other => panic!("run {i}: exit {other:?}: {stderr}"),
        }
    }
    succeeded
}

#[test]
fn an_archive_name_swapped_for_a_link_never_leads_the_write_elsewhere() {
    let victims = Victims::new(&["secret"]);
    let work = tempfile::tempdir().expect("temp dir");
    let archive = work.path().join("snap.tar.gz");
    let (name, target) = (archive.clone(), victims.file("secret"));
    // Between a plain file and a link to the victim, as fast as it can.
    let attacker = Attacker::start(move |n| {
        remove(&name);
        if n % 2 == 0 {
            let _ = symlink(&target, &name);
        } else {
            let _ = std::fs::write(&name, "decoy\n");
        }
    });
    let current = AtomicUsize::new(0);
    let root = fixture("idle");
    let args = ["snapshot", "--root", root.to_str().expect("utf-8"), "--archive"];
    let succeeded = run_many(&args, |_| archive.clone(), &current);
    let swaps = attacker.stop();
    eprintln!("{} of the runs succeeded against {swaps} swaps", succeeded.len());
    assert!(swaps > 100, "the attacker ran ({swaps} swaps)");
    victims.assert_untouched();
    // Only the name raced for is left: no staging directory.
    let left: Vec<_> = std::fs::read_dir(work.path()).expect("list").flatten().map(|e| e.file_name()).collect();
    assert!(left.len() <= 1, "{left:?}");
}

/// Swaps the directory `out(i)` of the current run: renames it aside when twtune has made it, and
/// puts in its place a directory whose entries `tops` are links to the victims' directory (`files`:
/// links to victim files of that name), or a link to the victims' directory itself.
fn directory_swapper(
    work: PathBuf,
    prefix: &'static str,
    tops: &'static [&'static str],
    files: &'static [&'static str],
    victims: PathBuf,
    current: Arc<AtomicUsize>,
    renamed: Arc<AtomicUsize>,
) -> impl FnMut(u64) + Send + 'static {
    move |n| {
        let i = current.load(Ordering::SeqCst);
        let out = work.join(format!("{prefix}{i}"));
        let Ok(meta) = std::fs::symlink_metadata(&out) else { return };
        // The attacker's own directories carry a marker; anything else there is twtune's.
        if !meta.is_dir() || out.join(".attacker").exists() {
            return;
        }
        if std::fs::rename(&out, work.join(format!("aside-{prefix}{i}-{n}"))).is_err() {
            return;
        }
        renamed.fetch_add(1, Ordering::SeqCst);
        if n % 3 == 0 {
            let _ = symlink(&victims, &out);
            return;
        }
        let decoy = work.join(format!("decoy-{n}"));
        std::fs::create_dir(&decoy).expect("mkdir decoy");
        std::fs::write(decoy.join(".attacker"), "").expect("marker");
        for top in tops {
            symlink(&victims, decoy.join(top)).expect("link");
        }
        for file in files {
            symlink(victims.join(file), decoy.join(file)).expect("link");
        }
        let _ = std::fs::rename(&decoy, &out);
    }
}

/// Every directory of `work` that the attacker made holds only what the attacker put there.
fn assert_decoys_untouched(work: &Path, tops: &[&str], files: &[&str]) {
    let mut expected: Vec<String> = tops.iter().chain(files).map(|s| s.to_string()).collect();
    expected.push(".attacker".into());
    expected.sort();
    for entry in std::fs::read_dir(work).expect("list").flatten() {
        let path = entry.path();
        if !path.is_dir() || path.is_symlink() || !path.join(".attacker").exists() {
            continue;
        }
        let mut names: Vec<String> =
            std::fs::read_dir(&path).expect("list").flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
        names.sort();
        assert_eq!(names, expected, "nothing written into the attacker's {}", path.display());
    }
}

/// The attack took place, and every run that succeeded wrote its whole output into the directory
/// it opened: where it was made (`PREFIX<i>`), or where the attacker renamed it to
/// (`aside-PREFIX<i>-<n>`), never anywhere else.
fn assert_complete(
    work: &Path,
    prefix: &str,
    succeeded: &[usize],
    renamed: &AtomicUsize,
    complete: impl Fn(&Path) -> bool,
) {
    assert!(renamed.load(Ordering::SeqCst) > 0, "the attacker renamed no directory aside");
    let names: Vec<String> =
        std::fs::read_dir(work).expect("list").flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
    let mut raced = 0;
    for i in succeeded {
        let own = work.join(format!("{prefix}{i}"));
        let aside: Vec<&String> = names.iter().filter(|n| n.starts_with(&format!("aside-{prefix}{i}-"))).collect();
        if !own.is_symlink() && !own.join(".attacker").exists() && own.is_dir() {
            assert!(complete(&own), "{} is complete", own.display());
        } else {
            assert_eq!(aside.len(), 1, "run {i} made one directory: {aside:?}");
            assert!(complete(&work.join(aside[0])), "run {i}: its output went on in {} whole", aside[0]);
            raced += 1;
        }
    }
    eprintln!("{raced} successful runs had their directory renamed aside while they wrote");
}

#[test]
fn a_snapshot_directory_renamed_aside_and_replaced_by_links_is_never_written_through() {
    const TOPS: &[&str] = &["proc", "etc", "usr", "lib", "run"];
    let victims = Victims::new(&["secret", "tcp", "osrelease"]);
    let work = tempfile::tempdir().expect("temp dir");
    let current = Arc::new(AtomicUsize::new(0));
    let renamed = Arc::new(AtomicUsize::new(0));
    let swap = directory_swapper(
        work.path().to_path_buf(),
        "snap-",
        TOPS,
        &[],
        victims.path().to_path_buf(),
        Arc::clone(&current),
        Arc::clone(&renamed),
    );
    let attacker = Attacker::start(swap);
    let root = fixture("idle");
    let args = ["snapshot", "--root", root.to_str().expect("utf-8")];
    let succeeded = run_many(&args, |i| work.path().join(format!("snap-{i}")), &current);
    attacker.stop();
    eprintln!("{} runs succeeded; {} directories renamed aside", succeeded.len(), renamed.load(Ordering::SeqCst));
    victims.assert_untouched();
    assert_decoys_untouched(work.path(), TOPS, &[]);
    let tcp = std::fs::read(root.join("proc/net/tcp")).expect("fixture");
    assert_complete(work.path(), "snap-", &succeeded, &renamed, |dir| {
        std::fs::read(dir.join("proc/net/tcp")).ok() == Some(tcp.clone())
    });
}

#[test]
fn a_role_directory_renamed_aside_and_replaced_by_links_is_never_written_through() {
    const TOPS: &[&str] = &["tasks", "defaults", "handlers", "meta"];
    const FILES: &[&str] = &["README.md"];
    // Files of the names the role writes, which the old writer truncated or replaced by 0644 ones.
    let victims = Victims::new(&["main.yml", "README.md"]);
    let work = tempfile::tempdir().expect("temp dir");
    let current = Arc::new(AtomicUsize::new(0));
    let renamed = Arc::new(AtomicUsize::new(0));
    let swap = directory_swapper(
        work.path().to_path_buf(),
        "role-",
        TOPS,
        FILES,
        victims.path().to_path_buf(),
        Arc::clone(&current),
        Arc::clone(&renamed),
    );
    let attacker = Attacker::start(swap);
    let root = fixture("idle");
    let args = ["export", "outbound-heavy", "--format", "ansible-role", "--root", root.to_str().expect("utf-8"), "-o"];
    let succeeded = run_many(&args, |i| work.path().join(format!("role-{i}")), &current);
    attacker.stop();
    eprintln!("{} runs succeeded; {} directories renamed aside", succeeded.len(), renamed.load(Ordering::SeqCst));
    victims.assert_untouched();
    assert_decoys_untouched(work.path(), TOPS, FILES);
    assert_complete(work.path(), "role-", &succeeded, &renamed, |dir| {
        ["tasks/main.yml", "defaults/main.yml", "handlers/main.yml", "meta/main.yml", "README.md"]
            .iter()
            .all(|f| std::fs::metadata(dir.join(f)).is_ok_and(|m| m.is_file() && m.len() > 0))
    });
}

#[test]
fn an_export_file_whose_name_or_directory_is_swapped_is_never_written_through() {
    let victims = Victims::new(&["out.conf"]);
    let work = tempfile::tempdir().expect("temp dir");
    let sub = work.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let (dir, victim_dir, victim) = (sub.clone(), victims.path().to_path_buf(), victims.file("out.conf"));
    let aside = work.path().join("aside");
    // The file's name between a file and a link to the victim; its directory between a directory
    // and a link to the victims' directory.
    let attacker = Attacker::start(move |n| {
        let name = dir.join("out.conf");
        match n % 4 {
            0 => {
                remove(&name);
                let _ = symlink(&victim, &name);
            }
            1 => {
                remove(&name);
                let _ = std::fs::write(&name, "decoy\n");
            }
            2 => {
                if std::fs::rename(&dir, &aside).is_ok() {
                    let _ = symlink(&victim_dir, &dir);
                }
            }
            _ => {
                if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                    remove(&dir);
                    let _ = std::fs::rename(&aside, &dir);
                }
            }
        }
    });
    let current = AtomicUsize::new(0);
    let root = fixture("idle");
    let args = ["export", "outbound-heavy", "--format", "sysctl-d", "--root", root.to_str().expect("utf-8"), "-o"];
    let succeeded = run_many(&args, |_| sub.join("out.conf"), &current);
    let swaps = attacker.stop();
    eprintln!("{} of the runs succeeded against {swaps} swaps", succeeded.len());
    victims.assert_untouched();
}

#[test]
fn an_archive_is_written_without_running_any_program() {
    // A `tar` (and a `gzip`) first on PATH that leave a mark: twtune runs neither.
    let work = tempfile::tempdir().expect("temp dir");
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let marker = work.path().join("ran");
    for program in ["tar", "gzip"] {
        let path = bin.join(program);
        std::fs::write(&path, format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\nexit 0\n", marker.display())).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let archive = work.path().join("snap.tar.gz");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = twtune()
        .env("PATH", path)
        .args(["snapshot", "--root"])
        .arg(fixture("idle"))
        .arg("--archive")
        .arg(&archive)
        .output()
        .expect("run twtune");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!marker.exists(), "a program was run: {:?}", std::fs::read_to_string(&marker));
    // The system's tar (the test's, not twtune's) unpacks it into the tree it was taken from.
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).expect("mkdir");
    let untar = std::process::Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked).output();
    let untar = untar.expect("tar");
    assert!(untar.status.success(), "{}", String::from_utf8_lossy(&untar.stderr));
    for file in ["proc/net/tcp", "proc/sys/kernel/osrelease", "proc/sys/net/ipv4/ip_local_port_range"] {
        assert_eq!(
            std::fs::read(unpacked.join(file)).expect("unpacked"),
            std::fs::read(fixture("idle").join(file)).expect("fixture"),
            "{file}"
        );
    }
    crate::util::Run::new(&["audit", "--fail-on", "never", "--root"])
        .arg(&unpacked)
        .stdout(crate::util::Expect::contains(&["twtune audit"]))
        .run();
}
