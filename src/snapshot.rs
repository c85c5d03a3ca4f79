//! `twtune snapshot`: copies what an audit reads into a directory laid out as a root, so that
//! `twtune audit --root DIR` (and `explain --root DIR`) elsewhere gives the live audit's result:
//! the net.ipv4 and net.core sysctls, the kernel release, the /proc/net tables, every sysctl.d
//! directory and /etc/sysctl.conf (links kept as links, so masking and `99-sysctl.conf` still
//! work), and local profiles. The copy goes into a directory or, packed in-process (no program
//! is run), into one .tar.gz file; both are written relative to descriptors (see
//! [`crate::files::OutDir`]), never through a path looked up again.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::files::{OutDir, open_new_or_empty};
use crate::profile::catalog::PROFILES_DIR;
use crate::root::Root;
use crate::sysctl_d::{PROCPS_DIRS, SYSCTL_CONF};

/// `/proc/net` tables an audit reads.
const NET_TABLES: &[&str] = &["netstat", "snmp", "sockstat", "sockstat6", "tcp", "tcp6", "stat/nf_conntrack"];
/// `/proc/sys` directories whose keys are copied (their files only, not subdirectories).
const SYSCTL_DIRS: &[&str] = &["net/core", "net/ipv4", "net/netfilter"];

/// Why a copy stopped: its source could not be read (an optional one is then skipped), or the
/// copy could not be written (always an error: the snapshot would be incomplete, or someone is
/// swapping the output).
pub(crate) enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Where a snapshot goes: a directory, or an archive. Paths are relative to the snapshot's root.
pub(crate) trait Sink {
    /// A directory (its parents made as needed).
    fn dir(&mut self, relative: &Path) -> std::io::Result<()>;
    /// A regular file holding what `from` holds.
    fn file(&mut self, relative: &Path, from: &mut dyn Read) -> std::result::Result<(), CopyError>;
    /// A link to `target`, kept as it is (never resolved).
    fn link(&mut self, relative: &Path, target: &Path) -> std::io::Result<()>;
    /// How `relative` is named in a message.
    fn shown(&self, relative: &Path) -> PathBuf;
}

/// Takes a snapshot into a new or empty directory, checked and then written through its
/// descriptor.
pub(crate) fn to_directory(root: &Root, dir: &Path) -> Result<()> {
    let mut sink = DirSink { out: open_new_or_empty(dir, "")? };
    capture(root, &mut sink)
}

/// Takes a snapshot into one .tar.gz file, packed in-process into a private staging directory
/// (0700, an unguessable name, made in the archive's directory, opened by descriptor) and renamed
/// over the archive's name when whole: a link put there meanwhile is replaced, never followed.
/// The staging directory is removed on every way out.
pub(crate) fn to_archive(root: &Root, archive: &Path) -> Result<()> {
    let write_error = |source| Error::Write { path: archive.to_path_buf(), source };
    let name = archive
        .file_name()
        .ok_or_else(|| Error::Archive(format!("{}: give a file name for the archive", archive.display())))?;
    let parent = archive.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = OutDir::open(parent, false).map_err(write_error)?;
    // A link or a FIFO there is most likely a mistake: said rather than replaced.
    if let Some(kind) = parent.kind_of(name).map_err(write_error)?
        && kind != rustix::fs::FileType::RegularFile
    {
        let what = if kind == rustix::fs::FileType::Symlink { "a link" } else { "not a regular file" };
        return Err(Error::Archive(format!("{}: it is {what}; give a new file name", archive.display())));
    }
    let staging = parent.staging(&name.to_string_lossy()).map_err(write_error)?;
    let file = staging.dir().create_file(OsStr::new("archive"), 0o644).map_err(write_error)?;
    // Each source is copied here first: a /proc file has no size until it is read.
    let spool = staging.dir().create_file(OsStr::new("spool"), 0o600).map_err(write_error)?;
    let mut sink = TarSink::new(archive, file, spool);
    capture(root, &mut sink)?;
    sink.finish().map_err(write_error)?;
    staging.rename_into_place(OsStr::new("archive"), name).map_err(write_error)
}

/// Copies `from` into `to`, telling a failed read from a failed write.
fn copy(from: &mut dyn Read, to: &mut dyn Write) -> std::result::Result<u64, CopyError> {
    let mut buffer = vec![0u8; 64 << 10];
    let mut total = 0;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buffer[..read]).map_err(CopyError::Write)?;
        total += read as u64;
    }
}

/// A snapshot as a directory: everything made relative to its descriptor, one name at a time.
struct DirSink {
    out: OutDir,
}

impl DirSink {
    /// The directory `relative` goes into, and its name.
    fn parent_of<'a>(&self, relative: &'a Path) -> std::io::Result<(OutDir, &'a OsStr)> {
        let name = relative.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
        Ok((self.out.subdir(relative.parent().unwrap_or(Path::new("")))?, name))
    }
}

impl Sink for DirSink {
    fn dir(&mut self, relative: &Path) -> std::io::Result<()> {
        self.out.subdir(relative).map(drop)
    }

    fn file(&mut self, relative: &Path, from: &mut dyn Read) -> std::result::Result<(), CopyError> {
        let (dir, name) = self.parent_of(relative).map_err(CopyError::Write)?;
        let mut to = dir.create_file(name, 0o644).map_err(CopyError::Write)?;
        copy(from, &mut to).map(drop)
    }

    fn link(&mut self, relative: &Path, target: &Path) -> std::io::Result<()> {
        let (dir, name) = self.parent_of(relative)?;
        dir.symlink(target, name)
    }

    fn shown(&self, relative: &Path) -> PathBuf {
        self.out.path().join(relative)
    }
}

/// A snapshot as a gzip-compressed tar, written in-process. Headers are set by twtune, not taken
/// from any file: modes 0644 (files), 0755 (directories), 0777 (links), owner 0:0, and one time
/// for every entry, the snapshot's.
struct TarSink {
    archive: PathBuf,
    builder: tar::Builder<flate2::write::GzEncoder<File>>,
    spool: File,
    /// Directories already in the archive, so each comes once, before what it holds.
    dirs: std::collections::BTreeSet<PathBuf>,
    mtime: u64,
}

impl TarSink {
    fn new(archive: &Path, file: File, spool: File) -> TarSink {
        let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        TarSink {
            archive: archive.to_path_buf(),
            builder: tar::Builder::new(gzip),
            spool,
            dirs: std::collections::BTreeSet::new(),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        header.set_size(size);
        header
    }

    /// Adds the directories on the way to `relative` that are not in the archive yet.
    fn parents(&mut self, relative: &Path) -> std::io::Result<()> {
        let mut missing: Vec<PathBuf> =
            relative.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()).map(Path::to_path_buf).collect();
        missing.reverse();
        for dir in missing {
            if self.dirs.insert(dir.clone()) {
                let mut header = self.header(tar::EntryType::Directory, 0o755, 0);
                self.builder.append_data(&mut header, &dir, std::io::empty())?;
            }
        }
        Ok(())
    }

    /// The archive, complete and on disk.
    fn finish(self) -> std::io::Result<()> {
        let file = self.builder.into_inner()?.finish()?;
        file.sync_all()
    }
}

impl Sink for TarSink {
    fn dir(&mut self, relative: &Path) -> std::io::Result<()> {
        self.parents(&relative.join("x"))
    }

    fn file(&mut self, relative: &Path, from: &mut dyn Read) -> std::result::Result<(), CopyError> {
        let spool = &mut self.spool;
        spool.set_len(0).and_then(|()| spool.rewind()).map_err(CopyError::Write)?;
        let size = copy(from, spool)?;
        self.spool.rewind().map_err(CopyError::Write)?;
        self.parents(relative).map_err(CopyError::Write)?;
        let mut header = self.header(tar::EntryType::Regular, 0o644, size);
        let data = (&self.spool).take(size);
        self.builder.append_data(&mut header, relative, data).map_err(CopyError::Write)
    }

    fn link(&mut self, relative: &Path, target: &Path) -> std::io::Result<()> {
        self.parents(relative)?;
        let mut header = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, relative, target)
    }

    fn shown(&self, relative: &Path) -> PathBuf {
        PathBuf::from(format!("{}: {}", self.archive.display(), relative.display()))
    }
}

/// Copies everything an audit reads from `root` into `sink`. The source is read as an audit
/// reads it: inside the root, regular files only; links of the sysctl.d directories are kept as
/// links (never followed), so masking and `99-sysctl.conf` still work in the copy.
fn capture(root: &Root, sink: &mut dyn Sink) -> Result<()> {
    // The kernel release is required; the host name names the snapshot's origin in exports.
    for (file, required) in [("proc/sys/kernel/osrelease", true), ("proc/sys/kernel/hostname", false)] {
        copy_file(root, sink, Path::new(file), Path::new(file), required)?;
    }
    // Each key once: profiles share keys, and name keys of the directories copied whole.
    let mut keys = std::collections::BTreeSet::new();
    for dir in SYSCTL_DIRS {
        let relative = Path::new("proc/sys").join(dir);
        let Ok(names) = root.list(&relative) else { continue };
        keys.extend(names.iter().map(|name| relative.join(name)));
    }
    // Keys that profiles name outside those directories (net.ipv4.conf.all.rp_filter, ...), so
    // that `audit --profile` on the snapshot sees what it saw live.
    let catalog = crate::profile::catalog::Catalog::new(root.path());
    for listed in catalog.list().0 {
        let Ok(profile) = catalog.load(&listed.name) else { continue };
        for key in profile.keys() {
            let Ok(key) = crate::sysctl::SysctlKey::parse(&key) else { continue };
            keys.insert(Path::new("proc/sys").join(key.relative_path()));
        }
    }
    for key in keys {
        // Write-only keys, keys this namespace hides and subdirectories are skipped.
        copy_file(root, sink, &key, &key, false)?;
    }
    for table in NET_TABLES {
        let required = !matches!(*table, "sockstat6" | "tcp6" | "stat/nf_conntrack");
        copy_file(root, sink, &root.proc_net_relative(table), &Path::new("proc/net").join(table), required)?;
    }
    capture_configuration(root, sink)
}

/// The sysctl.d directories, /etc/sysctl.conf and local profiles.
fn capture_configuration(root: &Root, sink: &mut dyn Sink) -> Result<()> {
    // `lib` is often a link to `usr/lib`: keep it one, so lib/sysctl.d stays the same directory.
    let mut linked = Vec::new();
    for top in ["lib"] {
        if let Ok(link) = std::fs::read_link(root.path().join(top)) {
            sink.link(Path::new(top), &link).map_err(write_error(sink, Path::new(top)))?;
            linked.push(top);
        }
    }
    for dir in PROCPS_DIRS.iter().copied().chain([PROFILES_DIR]) {
        if linked.iter().any(|top| Path::new(dir).starts_with(top)) {
            continue; // reached through a link already copied (lib -> usr/lib)
        }
        copy_tree(root, sink, Path::new(dir))?;
    }
    copy_entry(root, sink, Path::new(SYSCTL_CONF))
}

/// The error of a failed write of `relative` into `sink`.
fn write_error<'a>(sink: &'a dyn Sink, relative: &'a Path) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::Write { path: sink.shown(relative), source }
}

/// Copies a regular file beneath the root to `to`; a missing one, or an unreadable one when not
/// `required`, is skipped. A failed write is always an error.
fn copy_file(root: &Root, sink: &mut dyn Sink, relative: &Path, to: &Path, required: bool) -> Result<()> {
    let read_error = |source| Error::Read { path: root.path().join(relative), source, hint: "" };
    let mut file = match root.open_file(relative) {
        Ok(file) => file,
        Err(_) if !required => return Ok(()),
        Err(source) => return Err(read_error(source)),
    };
    match sink.file(to, &mut file) {
        Ok(()) => Ok(()),
        Err(CopyError::Read(_)) if !required => Ok(()),
        Err(CopyError::Read(source)) => Err(read_error(source)),
        Err(CopyError::Write(source)) => Err(Error::Write { path: sink.shown(to), source }),
    }
}

/// Copies a file or a link (as a link, never followed); nothing when it does not exist.
fn copy_entry(root: &Root, sink: &mut dyn Sink, relative: &Path) -> Result<()> {
    let from = root.path().join(relative);
    let Ok(meta) = std::fs::symlink_metadata(&from) else { return Ok(()) };
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(&from).map_err(|source| Error::Read { path: from.clone(), source, hint: "" })?;
        sink.link(relative, &link).map_err(write_error(sink, relative))
    } else if meta.is_dir() {
        Ok(())
    } else {
        // A regular file, or /dev/null bound over /etc/sysctl.conf (read as empty): by content. A
        // FIFO or another device is refused, not waited on.
        copy_file(root, sink, relative, relative, true)
    }
}

/// Copies the files and links of a directory beneath the root (not its subdirectories); nothing
/// when it is missing.
fn copy_tree(root: &Root, sink: &mut dyn Sink, relative: &Path) -> Result<()> {
    let Ok(names) = root.list(relative) else { return Ok(()) };
    sink.dir(relative).map_err(write_error(sink, relative))?;
    for name in names {
        copy_entry(root, sink, &relative.join(&name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture_copy;

    /// Each entry of a .tar.gz: (path, kind, mode, uid, gid, mtime, link target, content).
    type Entry = (String, tar::EntryType, u32, u64, u64, u64, Option<PathBuf>, Vec<u8>);

    fn entries(archive: &Path) -> Vec<Entry> {
        let gzip = flate2::read::GzDecoder::new(File::open(archive).expect("archive"));
        let mut reader = tar::Archive::new(gzip);
        let mut entries = Vec::new();
        for entry in reader.entries().expect("a tar") {
            let mut entry = entry.expect("an entry");
            let header = entry.header().clone();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("content");
            entries.push((
                entry.path().expect("path").display().to_string(),
                header.entry_type(),
                header.mode().expect("mode"),
                header.uid().expect("uid"),
                header.gid().expect("gid"),
                header.mtime().expect("mtime"),
                entry.link_name().expect("link").map(|l| l.into_owned()),
                content,
            ));
        }
        entries
    }

    #[test]
    fn an_archive_holds_the_tree_with_headers_set_by_twtune() {
        let source = fixture_copy("roots/idle");
        std::fs::create_dir_all(source.path().join("etc/sysctl.d")).expect("mkdir");
        std::fs::write(source.path().join("etc/sysctl.d/10-a.conf"), "net.ipv4.tcp_fin_timeout = 30\n").expect("write");
        std::os::unix::fs::symlink("/dev/null", source.path().join("etc/sysctl.d/20-masked.conf")).expect("symlink");
        let out = tempfile::tempdir().expect("temp dir");
        let archive = out.path().join("snap.tar.gz");
        let root = Root::open(source.path()).expect("root");
        to_archive(&root, &archive).expect("archive");
        let entries = entries(&archive);
        let find = |path: &str| entries.iter().find(|e| e.0 == path).unwrap_or_else(|| panic!("no {path}"));
        let tcp = find("proc/net/tcp");
        let original = std::fs::read(source.path().join("proc/net/tcp")).expect("read");
        assert_eq!((tcp.1, tcp.2, tcp.3, tcp.4, &tcp.7), (tar::EntryType::Regular, 0o644, 0, 0, &original));
        assert_eq!(find("etc/sysctl.d/10-a.conf").7, b"net.ipv4.tcp_fin_timeout = 30\n");
        let link = find("etc/sysctl.d/20-masked.conf");
        assert_eq!((link.1, link.6.as_deref()), (tar::EntryType::Symlink, Some(Path::new("/dev/null"))), "kept a link");
        let dir = find("etc/sysctl.d");
        assert_eq!((dir.1, dir.2), (tar::EntryType::Directory, 0o755));
        // Each directory before what it holds, once; one time for every entry; no `.` entry whose
        // mode would change the directory it is unpacked into.
        let position = |path: &str| entries.iter().position(|e| e.0 == path).expect("there");
        assert!(position("proc") < position("proc/net") && position("proc/net") < position("proc/net/tcp"));
        assert_eq!(entries.iter().filter(|e| e.0 == "proc").count(), 1);
        assert!(entries.iter().all(|e| e.5 == tcp.5 && !e.0.is_empty() && e.0 != "." && e.0 != "./"));
        let left: Vec<_> = std::fs::read_dir(out.path()).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("snap.tar.gz")], "no staging left");
    }

    #[test]
    fn a_failed_archive_leaves_no_staging_and_nothing_at_its_name() {
        // No kernel release: the capture fails half-way.
        let source = fixture_copy("roots/idle");
        std::fs::remove_file(source.path().join("proc/sys/kernel/osrelease")).expect("rm");
        let out = tempfile::tempdir().expect("temp dir");
        let root = Root::open(source.path()).expect("root");
        to_archive(&root, &out.path().join("snap.tar.gz")).expect_err("no osrelease");
        assert_eq!(std::fs::read_dir(out.path()).expect("list").count(), 0, "nothing left behind");
    }
}
