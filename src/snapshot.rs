//! `twtune snapshot`: copies what an audit reads into a directory laid out as a root, so that
//! `twtune audit --root DIR` (and `explain --root DIR`) elsewhere gives the live audit's result:
//! the net.ipv4 and net.core sysctls, the kernel release, the /proc/net tables, every sysctl.d
//! directory and /etc/sysctl.conf (links kept as links, so masking and `99-sysctl.conf` still
//! work), and local profiles.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::files::ensure_empty;
use crate::profile::catalog::PROFILES_DIR;
use crate::root::Root;
use crate::sysctl_d::{PROCPS_DIRS, SYSCTL_CONF};

/// `/proc/net` tables an audit reads.
const NET_TABLES: &[&str] = &["netstat", "snmp", "sockstat", "sockstat6", "tcp", "tcp6", "stat/nf_conntrack"];
/// `/proc/sys` directories whose keys are copied (their files only, not subdirectories).
const SYSCTL_DIRS: &[&str] = &["net/core", "net/ipv4", "net/netfilter"];

/// Everything `io_error` wraps is a write into the snapshot.
fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write { path: path.to_path_buf(), source }
}

/// Takes a snapshot into a new or empty directory.
pub(crate) fn to_directory(root: &Root, dir: &Path) -> Result<()> {
    ensure_empty(dir, "")?;
    capture(root, dir)
}

/// Takes a snapshot into one .tar.gz file, staged in a new private directory beside it (an
/// unguessable name, created here, mode 0700: nothing planted in it can be followed) that is
/// removed after.
pub(crate) fn to_archive(root: &Root, archive: &Path) -> Result<()> {
    // tar would follow a link or block on a FIFO at the archive's name: only a regular file (or
    // nothing) is written over.
    if let Ok(meta) = std::fs::symlink_metadata(archive)
        && !meta.file_type().is_file()
    {
        let what = if meta.file_type().is_symlink() { "a link" } else { "not a regular file" };
        return Err(Error::Archive(format!("{}: it is {what}; give a new file name", archive.display())));
    }
    let staging = crate::files::private_dir_beside(archive).map_err(io_error(archive))?;
    let result = capture(root, &staging).and_then(|()| pack(&staging, archive));
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Writes one gzip-compressed tar of `dir` (with GNU tar, present on every system twtune targets).
fn pack(dir: &Path, archive: &Path) -> Result<()> {
    let output = Command::new("tar")
        // `host:file` would be a remote archive to tar; --force-local keeps every name a file.
        .arg("--force-local")
        .arg("-czf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .output()
        .map_err(|e| Error::Archive(format!("cannot run tar to write {}: {e}", archive.display())))?;
    if !output.status.success() {
        // tar can say several lines; the first names the problem.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("failed");
        return Err(Error::Archive(format!("tar could not write {}: {first}", archive.display())));
    }
    Ok(())
}

/// Copies everything an audit reads from `root` into `target`. The source is read as an audit
/// reads it: inside the root, regular files only; links of the sysctl.d directories are kept as
/// links (never followed), so masking and `99-sysctl.conf` still work in the copy.
pub(crate) fn capture(root: &Root, target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(io_error(target))?;
    let source = root.path();
    // The kernel release is required; the host name names the snapshot's origin in exports.
    for (file, required) in [("proc/sys/kernel/osrelease", true), ("proc/sys/kernel/hostname", false)] {
        copy_file(root, Path::new(file), &target.join(file), required)?;
    }
    for dir in SYSCTL_DIRS {
        let relative = Path::new("proc/sys").join(dir);
        let Ok(names) = root.list(&relative) else { continue };
        for name in names {
            // Write-only keys, keys this namespace hides and subdirectories are skipped.
            let _ = copy_file(root, &relative.join(&name), &target.join(&relative).join(&name), false);
        }
    }
    // Keys that profiles name outside those directories (net.ipv4.conf.all.rp_filter, ...), so
    // that `audit --profile` on the snapshot sees what it saw live.
    let catalog = crate::profile::catalog::Catalog::new(source);
    for listed in catalog.list().0 {
        let Ok(profile) = catalog.load(&listed.name) else { continue };
        for key in profile.keys() {
            let Ok(key) = crate::sysctl::SysctlKey::parse(&key) else { continue };
            let relative = Path::new("proc/sys").join(key.relative_path());
            let _ = copy_file(root, &relative, &target.join(&relative), false);
        }
    }
    for table in NET_TABLES {
        let required = !matches!(*table, "sockstat6" | "tcp6" | "stat/nf_conntrack");
        copy_file(root, &root.proc_net_relative(table), &target.join("proc/net").join(table), required)?;
    }
    // `lib` is often a link to `usr/lib`: keep it one, so lib/sysctl.d stays the same directory.
    for top in ["lib"] {
        if let Ok(link) = std::fs::read_link(source.join(top)) {
            std::os::unix::fs::symlink(&link, target.join(top)).map_err(io_error(target))?;
        }
    }
    for dir in PROCPS_DIRS.iter().copied().chain([PROFILES_DIR]) {
        if std::fs::symlink_metadata(target.join(dir)).is_ok() {
            continue; // reached through a link already copied (lib -> usr/lib)
        }
        copy_tree(root, Path::new(dir), &target.join(dir))?;
    }
    copy_entry(root, Path::new(SYSCTL_CONF), &target.join(SYSCTL_CONF))
}

/// Copies a regular file beneath the root; a missing (or unreadable, when not `required`) one is
/// skipped.
fn copy_file(root: &Root, relative: &Path, to: &Path, required: bool) -> Result<()> {
    match root.open_file(relative) {
        Ok(mut file) => {
            std::fs::create_dir_all(to.parent().unwrap_or(Path::new("."))).map_err(io_error(to))?;
            let mut out = std::fs::File::create(to).map_err(io_error(to))?;
            std::io::copy(&mut file, &mut out).map_err(|source| Error::Read {
                path: root.path().join(relative),
                source,
                hint: "",
            })?;
            Ok(())
        }
        Err(_) if !required => Ok(()),
        Err(source) => Err(Error::Read { path: root.path().join(relative), source, hint: "" }),
    }
}

/// Copies a file or a link (as a link, never followed); nothing when it does not exist.
fn copy_entry(root: &Root, relative: &Path, to: &Path) -> Result<()> {
    let from = root.path().join(relative);
    let Ok(meta) = std::fs::symlink_metadata(&from) else { return Ok(()) };
    std::fs::create_dir_all(to.parent().unwrap_or(Path::new("."))).map_err(io_error(to))?;
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(&from).map_err(io_error(&from))?;
        std::os::unix::fs::symlink(link, to).map_err(io_error(to))
    } else if meta.is_dir() {
        Ok(())
    } else {
        // A regular file, or /dev/null bound over /etc/sysctl.conf (read as empty): by content. A
        // FIFO or another device is refused, not waited on.
        copy_file(root, relative, to, true)
    }
}

/// Copies the files and links of a directory beneath the root (not its subdirectories); nothing
/// when it is missing.
fn copy_tree(root: &Root, relative: &Path, to: &Path) -> Result<()> {
    let Ok(names) = root.list(relative) else { return Ok(()) };
    std::fs::create_dir_all(to).map_err(io_error(to))?;
    for name in names {
        copy_entry(root, &relative.join(&name), &to.join(&name))?;
    }
    Ok(())
}
