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
const NET_TABLES: &[&str] = &["netstat", "snmp", "sockstat", "sockstat6", "tcp", "tcp6"];
/// `/proc/sys` directories whose keys are copied (their files only, not subdirectories).
const SYSCTL_DIRS: &[&str] = &["net/core", "net/ipv4"];

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
    let staging = crate::files::private_dir_beside(archive).map_err(io_error(archive))?;
    let result = capture(root, &staging).and_then(|()| pack(&staging, archive));
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Writes one gzip-compressed tar of `dir` (with GNU tar, present on every system twtune targets).
fn pack(dir: &Path, archive: &Path) -> Result<()> {
    let output = Command::new("tar")
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

/// Copies everything an audit reads from `root` into `target`.
pub(crate) fn capture(root: &Root, target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(io_error(target))?;
    let source = root.path();
    // The kernel release is required; the host name names the snapshot's origin in exports.
    copy_file(&source.join("proc/sys/kernel/osrelease"), &target.join("proc/sys/kernel/osrelease"), true)?;
    copy_file(&source.join("proc/sys/kernel/hostname"), &target.join("proc/sys/kernel/hostname"), false)?;
    for dir in SYSCTL_DIRS {
        let from = source.join("proc/sys").join(dir);
        let Ok(entries) = std::fs::read_dir(&from) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                // Write-only keys and keys this namespace hides cannot be read: they are skipped.
                let _ = copy_file(&entry.path(), &target.join("proc/sys").join(dir).join(entry.file_name()), false);
            }
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
            let _ = copy_file(&source.join(&relative), &target.join(&relative), false);
        }
    }
    for table in NET_TABLES {
        copy_file(
            &root.proc_net_path(table),
            &target.join("proc/net").join(table),
            *table != "sockstat6" && *table != "tcp6",
        )?;
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
        copy_tree(&source.join(dir), &target.join(dir))?;
    }
    copy_entry(&source.join(SYSCTL_CONF), &target.join(SYSCTL_CONF))
}

/// Copies a file; a missing one is an error only when `required`.
fn copy_file(from: &Path, to: &Path, required: bool) -> Result<()> {
    match std::fs::read(from) {
        Ok(bytes) => {
            std::fs::create_dir_all(to.parent().unwrap_or(Path::new("."))).map_err(io_error(to))?;
            std::fs::write(to, bytes).map_err(io_error(to))
        }
        Err(e)
            if !required && matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied) =>
        {
            Ok(())
        }
        Err(source) => Err(Error::Read { path: from.to_path_buf(), source, hint: "" }),
    }
}

/// Copies a file or a link (as a link); nothing when it does not exist.
fn copy_entry(from: &Path, to: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(from) else { return Ok(()) };
    std::fs::create_dir_all(to.parent().unwrap_or(Path::new("."))).map_err(io_error(to))?;
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(from).map_err(io_error(from))?;
        std::os::unix::fs::symlink(link, to).map_err(io_error(to))
    } else if meta.is_dir() {
        Ok(())
    } else {
        // A regular file, or a device such as /dev/null bound over /etc/sysctl.conf: by content.
        copy_file(from, to, true)
    }
}

/// Copies the files and links of a directory (not its subdirectories); nothing when it is missing.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else { return Ok(()) };
    std::fs::create_dir_all(to).map_err(io_error(to))?;
    for entry in entries.flatten() {
        copy_entry(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}
