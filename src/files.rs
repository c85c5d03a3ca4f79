//! File helpers: reading beneath a root without leaving it (every link resolved inside the tree, no
//! FIFO or device opened, every read bounded), where a path of the configured system lies beneath
//! a root, reading a file that may not exist, the atomic replacement of a file, and writing into a
//! new or empty directory only. Shared by `root`, the sysctl.d reader, apply, export and snapshot.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::error::{Error, Result};

/// Opens `dir` as the root of the reads beneath it (`O_PATH`, no I/O of its own).
pub(crate) fn open_root(dir: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens `relative` beneath `root` as the system beneath it would: links, absolute or relative,
/// are resolved inside `root` (`RESOLVE_IN_ROOT`), so a captured tree cannot point outside itself;
/// `O_NONBLOCK`, so a FIFO does not block the open. Only a regular file (or, with `directory`, a
/// directory) is accepted: a FIFO or a device is refused with `InvalidInput`.
fn open_in_root(root: &OwnedFd, relative: &Path, directory: bool) -> std::io::Result<OwnedFd> {
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    if directory {
        flags |= OFlags::DIRECTORY;
    }
    let fd = rustix::fs::openat2(root, relative, flags, Mode::empty(), ResolveFlags::IN_ROOT)?;
    let stat = rustix::fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    // /dev/null reads as an empty file at once; it stands for "nothing here" (a /etc/sysctl.conf
    // masked by a bind mount of it).
    let dev_null = kind == FileType::CharacterDevice
        && rustix::fs::major(stat.st_rdev) == 1
        && rustix::fs::minor(stat.st_rdev) == 3;
    match (kind, directory) {
        (FileType::RegularFile, false) | (FileType::Directory, true) => Ok(fd),
        (FileType::CharacterDevice, false) if dev_null => Ok(fd),
        (FileType::Directory, false) => Err(rustix::io::Errno::ISDIR.into()),
        (_, true) => Err(rustix::io::Errno::NOTDIR.into()),
        (other, false) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a {} is not read (only regular files are)", kind_name(other)),
        )),
    }
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "FIFO",
        FileType::CharacterDevice | FileType::BlockDevice => "device",
        FileType::Socket => "socket",
        _ => "special file",
    }
}

/// A regular file beneath `root` (see [`open_in_root`]), for streaming.
pub(crate) fn open_file_in_root(root: &OwnedFd, relative: &Path) -> std::io::Result<File> {
    open_in_root(root, relative, false).map(File::from)
}

/// The whole of a regular file beneath `root`, refused when it is larger than `limit` bytes.
pub(crate) fn read_in_root(root: &OwnedFd, relative: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    read_bounded(open_file_in_root(root, relative)?, limit)
}

/// The names in a directory beneath `root`, as the tree resolves it; `.` and `..` left out.
pub(crate) fn list_in_root(root: &OwnedFd, relative: &Path) -> std::io::Result<Vec<String>> {
    let dir = open_in_root(root, relative, true)?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// The target of a link beneath `root` (the link itself resolved inside the tree, not followed).
pub(crate) fn link_in_root(root: &OwnedFd, relative: &Path) -> std::io::Result<PathBuf> {
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    let parent = relative.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = relative.file_name().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let dir = open_in_root(root, parent, true)?;
    let target = rustix::fs::readlinkat(&dir, name, Vec::new())?;
    Ok(PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(target.into_bytes())))
}

/// Reads `file` to its end, refused when it holds more than `limit` bytes (a device or a file
/// growing while read has no size to check beforehand, so one byte past the limit is read).
pub(crate) fn read_bounded(file: File, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes, which is not what the kernel writes here"),
        ));
    }
    Ok(bytes)
}

/// `path` of the configured system, beneath `root`.
pub(crate) fn beneath(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The largest persisted file twtune reads back (its own sysctl.d file, a few KB): the same bound
/// as a journal entry, so that what an apply records a rollback can read.
pub(crate) const MAX_PERSISTED_BYTES: u64 = 512 << 10;

/// The content of one of root's own files (the persisted file), or `None` when it does not exist:
/// no link anywhere in its path, a regular file only (`O_NONBLOCK`: a FIFO does not block), at
/// most [`MAX_PERSISTED_BYTES`]. Checked as it is opened, so nothing swapped in between a check and
/// the read is followed.
pub(crate) fn read_optional_no_links(path: &Path) -> std::io::Result<Option<String>> {
    use rustix::fs::OFlags;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let dirfd = match rustix::fs::openat2(
        rustix::fs::CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(&dirfd, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is a link; twtune reads only its own files",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let bytes = read_bounded(File::from(fd), MAX_PERSISTED_BYTES)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Why another user could change `path` (a link, another owner, writable by group or others),
/// if they could; `dir`: it must be a directory, else a regular file.
pub(crate) fn not_private(meta: &std::fs::Metadata, dir: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Some("it is a link".into());
    }
    if dir && !kind.is_dir() || !dir && !kind.is_file() {
        return Some(format!("not a {}", if dir { "directory" } else { "regular file" }));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Some(format!("owned by uid {}, not by the user running twtune (uid {me})", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!("writable by group or others (mode {:o})", meta.mode() & 0o7777));
    }
    None
}

/// Why another user could swap a directory on the way to `path` (its existing ancestors): a link,
/// an owner other than root or the user, or writable by others without the sticky bit.
pub(crate) fn unsafe_ancestor(path: &Path) -> Option<(PathBuf, String)> {
    use std::os::unix::fs::MetadataExt;
    let path = std::path::absolute(path).ok()?;
    let me = rustix::process::geteuid().as_raw();
    for ancestor in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::symlink_metadata(ancestor) else { continue };
        let why = if meta.file_type().is_symlink() {
            "a link".to_string()
        } else if meta.uid() != 0 && meta.uid() != me {
            format!("owned by uid {}", meta.uid())
        } else if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
            "writable by others without the sticky bit".to_string()
        } else {
            continue;
        };
        return Some((ancestor.to_path_buf(), why));
    }
    None
}

/// Removes one of root's own files (the persisted file, at a rollback): no link anywhere in the
/// path is followed (the name itself is unlinked, never its target); a missing file is fine.
pub(crate) fn remove_no_links(path: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, OFlags};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(rustix::fs::CWD, dir, flags, Mode::empty(), resolve) {
        Ok(dirfd) => match rustix::fs::unlinkat(&dirfd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Refuses a directory that already holds anything: twtune never mixes its files with others'.
/// An existing directory must also be the user's own and writable by no one else, and no link, so
/// that nothing can be planted or swapped in it while twtune writes there as root. `purpose` names
/// what the directory is for (" for the role"), or is empty.
pub(crate) fn ensure_empty(dir: &Path, purpose: &'static str) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(dir)
        && let Some(why) = not_private(&meta, true)
    {
        return Err(Error::UnsafeDirectory { path: dir.to_path_buf(), why });
    }
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::NotEmpty { path: dir.to_path_buf(), purpose });
    }
    Ok(())
}

/// Writes `files` (relative path, content) into a new or empty directory; an existing file is never
/// overwritten.
pub(crate) fn write_into_empty_dir(dir: &Path, files: &[(&str, String)], purpose: &'static str) -> Result<()> {
    ensure_empty(dir, purpose)?;
    for (relative, content) in files {
        let path = dir.join(relative);
        write_atomically(&path, content).map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

/// A name no one can guess: `.NAME.twtune-` and 16 random hex digits.
fn temporary_name(name: &str) -> std::io::Result<String> {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        filled += rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(format!(".{name}.twtune-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Creates a new directory of an unguessable name beside `path`, mode 0700 (`mkdir` fails on
/// anything already there, a planted link included).
pub(crate) fn private_dir_beside(path: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = dir.join(temporary_name(&name)?);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    Ok(staging)
}

/// Writes a file so that readers see the old or the new content, never a mix: a temporary file of
/// an unguessable name created with `O_CREAT | O_EXCL | O_NOFOLLOW` beside it (so no planted link
/// or file is used), fsync, rename over the target, fsync of the directory. What is there must be
/// a regular file or nothing: a link is refused rather than replaced, and a device or FIFO
/// (`--output /dev/null`) is refused rather than turned into a file. With `no_links`, no
/// component of the directory's path may be a link either (the files root writes: the persisted
/// file, the journal).
pub(crate) fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    write_file(path, content, false)
}

/// [`write_atomically`], refusing a link anywhere in the path.
pub(crate) fn write_atomically_no_links(path: &Path, content: &str) -> std::io::Result<()> {
    write_file(path, content, true)
}

fn write_file(path: &Path, content: &str, no_links: bool) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, OFlags};
    // `x.conf` has the empty path as parent: that is the current directory.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
    std::fs::create_dir_all(dir)?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve =
        if no_links { ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS } else { ResolveFlags::empty() };
    let dirfd = rustix::fs::openat2(rustix::fs::CWD, dir, flags, Mode::empty(), resolve)?;
    match rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile => {
            let kind = FileType::from_raw_mode(stat.st_mode);
            let what = if kind == FileType::Symlink { "link" } else { kind_name(kind) };
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("it is a {what}, not a regular file; twtune writes only regular files"),
            ));
        }
        Ok(_) => {}
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let temporary = temporary_name(&name.to_string_lossy())?;
    let create = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dirfd, temporary.as_str(), create, Mode::from_raw_mode(0o644))?;
    let result = (|| {
        let mut file = File::from(fd);
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        rustix::fs::renameat(&dirfd, temporary.as_str(), &dirfd, name)?;
        rustix::fs::fsync(&dirfd)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&dirfd, temporary.as_str(), AtFlags::empty());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beneath_strips_the_leading_slash() {
        assert_eq!(beneath(Path::new("/r"), Path::new("/etc/x.conf")), PathBuf::from("/r/etc/x.conf"));
        assert_eq!(beneath(Path::new("/"), Path::new("/etc/x.conf")), PathBuf::from("/etc/x.conf"));
        assert_eq!(beneath(Path::new("/r"), Path::new("rel")), PathBuf::from("/r/rel"));
    }

    #[test]
    fn a_directory_with_a_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        write_into_empty_dir(dir.path(), &[("a/b.yml", "one".into())], "").expect("empty directory");
        assert_eq!(std::fs::read_to_string(dir.path().join("a/b.yml")).expect("written"), "one");
        let err =
            write_into_empty_dir(dir.path(), &[("a/b.yml", "two".into())], " for the role").expect_err("not empty");
        assert_eq!(
            err.to_string(),
            format!("{} is not empty: give a new or empty directory for the role", dir.path().display())
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("a/b.yml")).expect("kept"), "one");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("x.conf");
        write_atomically(&path, "old").expect("first write");
        write_atomically(&path, "new").expect("second write");
        assert_eq!(read_optional_no_links(&path).expect("readable"), Some("new".into()));
        assert_eq!(std::fs::read_dir(dir.path()).expect("listable").count(), 1);
        assert_eq!(read_optional_no_links(&dir.path().join("absent")).expect("absent is fine"), None);
    }
}
