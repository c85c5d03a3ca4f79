//! File helpers: reading beneath a root without leaving it (every link resolved inside the tree, no
//! FIFO or device opened, every read bounded), where a path of the configured system lies beneath
//! a root, reading a file that may not exist, and every write twtune makes: relative to a
//! directory descriptor opened once without following a link at any step ([`OutDir`]), as an
//! atomic replacement of a file, into a new or empty directory only, or staged in a private
//! directory and renamed into place ([`Staging`]). Shared by `root`, the sysctl.d reader, apply,
//! export and snapshot.

use std::ffi::OsStr;
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
    list_in_root_at_most(root, relative, usize::MAX)
}

/// The first `limit` names of a directory beneath `root` (see [`list_in_root`]): a directory of
/// millions of entries is not read to its end.
pub(crate) fn list_in_root_at_most(root: &OwnedFd, relative: &Path, limit: usize) -> std::io::Result<Vec<String>> {
    let dir = open_in_root(root, relative, true)?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        if names.len() >= limit {
            break;
        }
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

/// Links are never followed on the way to what twtune writes, magic links (`/proc/PID/fd/N`) neither.
const NO_LINKS: ResolveFlags = ResolveFlags::NO_SYMLINKS.union(ResolveFlags::NO_MAGICLINKS);

/// A directory twtune writes into, opened once, without following a link at any step of its
/// path. Every file, directory and link it makes is created relative to this descriptor, one
/// name at a time and never through a link, so a path swapped meanwhile (the directory renamed
/// aside and a directory of links put in its place, a link planted at a name) is never followed:
/// the writes go on in the directory that was opened, or fail.
pub(crate) struct OutDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutDir {
    /// Opens `path`, with `create` making the directories that are missing (mode 0755). A link
    /// anywhere in the path is refused (`InvalidInput`, saying which).
    pub(crate) fn open(path: &Path, create: bool) -> std::io::Result<OutDir> {
        let start = if path.is_absolute() { "/" } else { "." };
        let start = rustix::fs::open(start, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(OutDir { fd: walk(start, path, create, true)?, path: path.to_path_buf() })
    }

    /// The descriptor, for a file opened otherwise (the lock's flags).
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The path it was opened by, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `relative` (plain names only) beneath this one, made when missing.
    pub(crate) fn subdir(&self, relative: &Path) -> std::io::Result<OutDir> {
        let start =
            rustix::fs::openat(&self.fd, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(OutDir { fd: walk(start, relative, true, false)?, path: self.path.join(relative) })
    }

    /// A new file `name` here: `O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing already there (a file,
    /// a planted link) is opened.
    pub(crate) fn create_file(&self, name: &OsStr, mode: u32) -> std::io::Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(File::from(rustix::fs::openat(&self.fd, single(name)?, flags, Mode::from_raw_mode(mode))?))
    }

    /// A new link `name` here, to `target` as it is (never resolved).
    pub(crate) fn symlink(&self, target: &Path, name: &OsStr) -> std::io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.fd, single(name)?)?)
    }

    /// What `name` here is (a link is a link), or `None` when there is nothing of that name.
    pub(crate) fn kind_of(&self, name: &OsStr) -> std::io::Result<Option<FileType>> {
        match rustix::fs::statat(&self.fd, single(name)?, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Why someone else could change this directory (another owner, writable by group or others).
    fn not_private(&self) -> std::io::Result<Option<String>> {
        let meta = File::from(self.fd.try_clone()?).metadata()?;
        Ok(not_private(&meta, true))
    }

    /// Whether it holds anything.
    fn is_empty(&self) -> std::io::Result<bool> {
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes `name` here so that readers see the old or the new content, never a mix: a
    /// temporary file of an unguessable name (`O_EXCL | O_NOFOLLOW`), fsync, renamed over `name`,
    /// fsync of the directory. What is there must be a regular file or nothing: a link is refused
    /// rather than replaced, and a device or FIFO (`--output /dev/null`) rather than turned into a
    /// file. (Should a link appear after the check, the rename replaces it: it never follows one.)
    pub(crate) fn write_atomically(&self, name: &OsStr, content: &str) -> std::io::Result<()> {
        match self.kind_of(name)? {
            Some(kind) if kind != FileType::RegularFile => {
                let what = if kind == FileType::Symlink { "link" } else { kind_name(kind) };
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("it is a {what}, not a regular file; twtune writes only regular files"),
                ));
            }
            _ => {}
        }
        let temporary = temporary_name(&name.to_string_lossy())?;
        let mut file = self.create_file(OsStr::new(&temporary), 0o644)?;
        let result = (|| {
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
            rustix::fs::renameat(&self.fd, temporary.as_str(), &self.fd, name)?;
            rustix::fs::fsync(&self.fd)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, temporary.as_str(), rustix::fs::AtFlags::empty());
        }
        result
    }

    /// A new private directory here (see [`Staging`]); `hint` goes into its name.
    pub(crate) fn staging(&self, hint: &str) -> std::io::Result<Staging<'_>> {
        let name = temporary_name(hint)?;
        rustix::fs::mkdirat(&self.fd, name.as_str(), Mode::from_raw_mode(0o700))?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat2(&self.fd, name.as_str(), flags, Mode::empty(), NO_LINKS) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&self.fd, name.as_str(), rustix::fs::AtFlags::REMOVEDIR);
                return Err(e.into());
            }
        };
        // Whoever can write here could have swapped another directory in between: ours is owned by
        // us and 0700, which no one else can make.
        let stat = rustix::fs::fstat(&fd)?;
        if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
            return Err(std::io::Error::other("the staging directory was replaced while it was made"));
        }
        let dir = OutDir { fd, path: self.path.join(&name) };
        Ok(Staging { parent: self, name, dir, id: (stat.st_dev, stat.st_ino) })
    }
}

/// A plain name: one component, not `.` or `..` (`openat` would resolve a longer path, links
/// included).
fn single(name: &OsStr) -> std::io::Result<&OsStr> {
    let bytes = name.as_encoded_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || name == "." || name == ".." {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a plain file name"));
    }
    Ok(name)
}

/// Opens `path` from `start` one component at a time (`openat2` with `RESOLVE_NO_SYMLINKS`, so a
/// link at any step fails), with `create` making what is missing; the last opened for reading.
/// `..` is allowed only when `parents` (a path given by the user, not one built by twtune).
fn walk(start: OwnedFd, path: &Path, create: bool, parents: bool) -> std::io::Result<OwnedFd> {
    use std::path::Component;
    let steps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(Ok(name)),
            Component::ParentDir if parents => Some(Ok(OsStr::new(".."))),
            Component::RootDir | Component::CurDir => None,
            _ => Some(Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a plain relative path"))),
        })
        .collect::<std::io::Result<_>>()?;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = start;
    for (index, name) in steps.iter().enumerate() {
        let open = |dir: &OwnedFd| rustix::fs::openat2(dir, *name, flags, Mode::empty(), NO_LINKS);
        let next = match open(&dir) {
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => open(&dir),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        dir = next.map_err(|e| match e {
            rustix::io::Errno::LOOP if index + 1 == steps.len() => link_error("it is a link".into()),
            rustix::io::Errno::LOOP => {
                let mut reached = if path.is_absolute() { PathBuf::from("/") } else { PathBuf::new() };
                reached.extend(&steps[..=index]);
                link_error(format!("{} on the way to it is a link", reached.display()))
            }
            other => other.into(),
        })?;
    }
    Ok(rustix::fs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

fn link_error(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

/// A new directory of an unguessable name, mode 0700, made by twtune inside an [`OutDir`] and
/// checked to be the one made: what is built in it (an archive) is renamed into place when whole.
/// Dropped, it is removed with what it still holds, on every way out (an error, a panic).
pub(crate) struct Staging<'a> {
    parent: &'a OutDir,
    name: String,
    dir: OutDir,
    /// Device and inode, so that only this directory is ever removed by its name.
    id: (u64, u64),
}

impl Staging<'_> {
    /// The staging directory itself.
    pub(crate) fn dir(&self) -> &OutDir {
        &self.dir
    }

    /// Renames `from` (in the staging directory) to `to` in the directory it was made in, over
    /// whatever `to` is (a link is replaced, never followed), then syncs that directory.
    pub(crate) fn rename_into_place(&self, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
        rustix::fs::renameat(&self.dir.fd, single(from)?, &self.parent.fd, single(to)?)?;
        Ok(rustix::fs::fsync(&self.parent.fd)?)
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        use rustix::fs::AtFlags;
        if let Ok(entries) = rustix::fs::Dir::read_from(&self.dir.fd) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_owned();
                if name.as_bytes() != b"." && name.as_bytes() != b".." {
                    let _ = rustix::fs::unlinkat(&self.dir.fd, name.as_c_str(), AtFlags::empty());
                }
            }
        }
        let still_ours = rustix::fs::statat(&self.parent.fd, self.name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| (stat.st_dev, stat.st_ino) == self.id);
        if still_ours {
            let _ = rustix::fs::unlinkat(&self.parent.fd, self.name.as_str(), AtFlags::REMOVEDIR);
        }
    }
}

/// Opens (or makes) a directory to fill, refusing one that already holds anything (twtune never
/// mixes its files with others'), a link anywhere in its path, and one someone else owns or may
/// write (who could plant or swap entries in it while root writes there). `purpose` names what
/// the directory is for (" for the role"), or is empty. Everything is checked on the descriptor
/// the writes then use.
pub(crate) fn open_new_or_empty(dir: &Path, purpose: &'static str) -> Result<OutDir> {
    let unsafe_dir = |why: String| Error::UnsafeDirectory { path: dir.to_path_buf(), why };
    let out = OutDir::open(dir, true).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => unsafe_dir(e.to_string()),
        _ => Error::Write { path: dir.to_path_buf(), source: e },
    })?;
    let write_error = |source| Error::Write { path: dir.to_path_buf(), source };
    if let Some(why) = out.not_private().map_err(write_error)? {
        return Err(unsafe_dir(why));
    }
    if !out.is_empty().map_err(write_error)? {
        return Err(Error::NotEmpty { path: dir.to_path_buf(), purpose });
    }
    Ok(out)
}

/// Writes `files` (relative path, content) into a new or empty directory (see
/// [`open_new_or_empty`]); each file is new (`O_EXCL`), made relative to the directory's
/// descriptor.
pub(crate) fn write_into_empty_dir(dir: &Path, files: &[(&str, String)], purpose: &'static str) -> Result<()> {
    let out = open_new_or_empty(dir, purpose)?;
    for (relative, content) in files {
        let path = dir.join(relative);
        let relative = Path::new(relative);
        let write = || -> std::io::Result<()> {
            let name = relative.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
            let parent = relative.parent().unwrap_or(Path::new(""));
            let mut file = out.subdir(parent)?.create_file(name, 0o644)?;
            file.write_all(content.as_bytes())?;
            file.sync_all()
        };
        write().map_err(|source| Error::Write { path, source })?;
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

/// Writes a file atomically (see [`OutDir::write_atomically`]) in its directory, opened (and made
/// when missing) without following a link at any step: the files root writes (an export, the
/// persisted file, the journal) can be steered nowhere else.
pub(crate) fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    // `x.conf` has the empty path as parent: that is the current directory.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
    OutDir::open(dir, true)?.write_atomically(name, content)
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
    fn a_link_anywhere_on_the_way_to_an_output_is_refused_and_named() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("linked")).expect("symlink");
        let err = OutDir::open(&dir.path().join("linked"), true).err().expect("the last step is a link");
        assert_eq!(err.to_string(), "it is a link");
        let err = OutDir::open(&dir.path().join("linked/a/b"), true).err().expect("a step on the way is a link");
        assert_eq!(err.to_string(), format!("{} on the way to it is a link", dir.path().join("linked").display()));
        let made = OutDir::open(&dir.path().join("new/a"), true).expect("made");
        made.subdir(Path::new("b/c")).expect("made beneath");
        assert!(dir.path().join("new/a/b/c").is_dir());
        assert!(made.subdir(Path::new("../x")).is_err(), "only plain names beneath");
        assert!(made.create_file(OsStr::new("b/c/x"), 0o644).is_err(), "one name, never a path");
        assert!(std::fs::read_dir(&real).expect("list").next().is_none(), "nothing through the link");
    }

    #[test]
    fn writes_go_on_in_the_directory_opened_when_its_path_is_swapped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let victims = dir.path().join("victims");
        std::fs::create_dir(&victims).expect("mkdir");
        let out = open_new_or_empty(&dir.path().join("out"), "").expect("new directory");
        // Renamed aside, and a link to the victims put in its place.
        std::fs::rename(dir.path().join("out"), dir.path().join("aside")).expect("rename");
        std::os::unix::fs::symlink(&victims, dir.path().join("out")).expect("symlink");
        out.subdir(Path::new("tasks")).expect("subdir").create_file(OsStr::new("main.yml"), 0o644).expect("file");
        out.write_atomically(OsStr::new("README.md"), "x").expect("atomic write");
        assert!(dir.path().join("aside/tasks/main.yml").is_file() && dir.path().join("aside/README.md").is_file());
        assert!(std::fs::read_dir(&victims).expect("list").next().is_none(), "nothing through the link");
    }

    #[test]
    fn a_staging_directory_is_private_and_removed_on_every_way_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = OutDir::open(dir.path(), false).expect("open");
        {
            let staging = out.staging("x").expect("staging");
            let meta = std::fs::metadata(staging.dir().path()).expect("made");
            assert_eq!(meta.permissions().mode() & 0o777, 0o700);
            staging.dir().create_file(OsStr::new("left"), 0o600).expect("file");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "removed when dropped, with its files");
        let staging = out.staging("x").expect("staging");
        staging.dir().write_atomically(OsStr::new("archive"), "whole").expect("write");
        staging.rename_into_place(OsStr::new("archive"), OsStr::new("x")).expect("rename");
        drop(staging);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("x")]);
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
