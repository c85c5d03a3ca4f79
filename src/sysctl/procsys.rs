//! Writing sysctls: the only module that writes beneath `proc/sys`.
//!
//! Every key is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`
//! relative to a directory descriptor of `ROOT/proc/sys`, so no key can lead out of it, even if the
//! name check in [`SysctlKey`] had a hole. A value goes in one `write(2)` at offset 0 (what the
//! kernel's strict sysctl writes require) and is read back.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Access, AtFlags, Mode, OFlags, ResolveFlags};

use crate::sysctl::{SysctlKey, fold_whitespace};

/// `ROOT/proc/sys`, opened once.
pub(crate) struct ProcSys {
    dir: OwnedFd,
    path: PathBuf,
}

/// Why a sysctl could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the kernel kept {kept:?} instead of {wanted:?}")]
    NotKept { wanted: String, kept: String },
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

impl ProcSys {
    /// Opens `root/proc/sys`, with no link on the way from the root: a tree whose `proc/sys` is a
    /// link (to `/proc/self/root/proc/sys`, say) must not lead the writes to the host's sysctls.
    pub(crate) fn open(root: &Path) -> std::io::Result<ProcSys> {
        let path = root.join("proc/sys");
        let top = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let dir = rustix::fs::openat2(
            &top,
            "proc/sys",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )?;
        Ok(ProcSys { dir, path })
    }

    /// The path of a key, for messages.
    pub(crate) fn path_of(&self, key: &SysctlKey) -> PathBuf {
        self.path.join(key.relative_path())
    }

    /// Whether this process may write `key` (checked with the effective ids, as the write will be).
    pub(crate) fn may_write(&self, key: &SysctlKey) -> std::io::Result<()> {
        rustix::fs::accessat(&self.dir, key.relative_path(), Access::WRITE_OK, AtFlags::EACCESS).map_err(Into::into)
    }

    /// A key's file: `O_NONBLOCK` (a FIFO planted in a tree must not hang an apply), and only a
    /// regular file with one name (procfs keys are; a hard link in a tree could name a host file).
    fn open_key(&self, key: &SysctlKey, flags: OFlags) -> std::io::Result<std::fs::File> {
        let flags = flags | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat2(&self.dir, key.relative_path(), flags, Mode::empty(), RESOLVE)?;
        let stat = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile || stat.st_nlink > 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a sysctl (a regular file of one name)",
            ));
        }
        Ok(std::fs::File::from(fd))
    }

    /// The value of `key`, whitespace folded (at most 1 MiB read).
    pub(crate) fn read(&self, key: &SysctlKey) -> std::io::Result<String> {
        let bytes = crate::files::read_bounded(self.open_key(key, OFlags::RDONLY)?, 1 << 20)?;
        Ok(fold_whitespace(&String::from_utf8_lossy(&bytes)))
    }

    /// Writes `value` to `key` and reads it back; a value the kernel rejects, clamps or rewrites is
    /// an error.
    pub(crate) fn write(&self, key: &SysctlKey, value: &str) -> Result<(), WriteError> {
        let wanted = fold_whitespace(value);
        // A file of a captured tree is rewritten whole instead of keeping the tail of a longer old
        // value.
        let mut file = self.open_key(key, OFlags::WRONLY)?;
        // Truncated only once it is known to be a key (O_TRUNC would act before the checks);
        // procfs ignores or refuses a truncation, which does not matter there.
        let _ = rustix::fs::ftruncate(&file, 0);
        // One write of the whole value: with kernel.sysctl_writes_strict=1 a split write is refused.
        let written = file.write(format!("{wanted}\n").as_bytes())?;
        if written != wanted.len() + 1 {
            return Err(WriteError::Io(std::io::Error::other(format!("short write ({written} bytes)"))));
        }
        drop(file);
        let kept = self.read(key)?;
        if kept != wanted {
            return Err(WriteError::NotKept { wanted, kept });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, ProcSys) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("proc/sys/net/ipv4")).expect("mkdir");
        std::fs::write(dir.path().join("proc/sys/net/ipv4/tcp_tw_reuse"), "2\n").expect("write");
        let procsys = ProcSys::open(dir.path()).expect("open");
        (dir, procsys)
    }

    #[test]
    fn writes_and_reads_back() {
        let (_dir, procsys) = tree();
        let key = SysctlKey::parse("net.ipv4.tcp_tw_reuse").expect("key");
        assert_eq!(procsys.read(&key).expect("read"), "2");
        procsys.write(&key, "1").expect("write");
        assert_eq!(procsys.read(&key).expect("read"), "1");
        procsys.may_write(&key).expect("writable");
    }

    #[test]
    fn a_symlink_inside_proc_sys_is_not_followed() {
        let (dir, procsys) = tree();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "secret\n").expect("write");
        std::os::unix::fs::symlink(&outside, dir.path().join("proc/sys/net/ipv4/tcp_timestamps")).expect("link");
        let key = SysctlKey::parse("net.ipv4.tcp_timestamps").expect("key");
        assert!(procsys.write(&key, "1").is_err(), "a link must not be followed");
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "secret\n");
    }

    #[test]
    fn a_missing_key_is_an_error_not_a_new_file() {
        let (dir, procsys) = tree();
        let key = SysctlKey::parse("net.ipv4.tcp_no_such_key").expect("key");
        assert!(procsys.write(&key, "1").is_err());
        assert!(!dir.path().join("proc/sys/net/ipv4/tcp_no_such_key").exists());
    }

    #[test]
    fn a_proc_sys_that_is_a_link_out_of_the_tree_is_refused() {
        // proc/sys linked elsewhere (in an attack: /proc/self/root/proc/sys, the host's keys).
        let dir = tempfile::tempdir().expect("temp dir");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("net/ipv4")).expect("mkdir");
        std::fs::write(elsewhere.join("net/ipv4/tcp_timestamps"), "0\n").expect("write");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("proc")).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, root.join("proc/sys")).expect("link");
        assert!(ProcSys::open(&root).is_err(), "a linked proc/sys is not opened");
        assert_eq!(std::fs::read_to_string(elsewhere.join("net/ipv4/tcp_timestamps")).expect("read"), "0\n");
    }

    #[test]
    fn a_fifo_or_a_hard_link_as_a_key_is_refused_without_blocking() {
        let (dir, procsys) = tree();
        let key = SysctlKey::parse("net.ipv4.tcp_timestamps").expect("key");
        let file = dir.path().join("proc/sys/net/ipv4/tcp_timestamps");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &file,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        assert!(procsys.read(&key).is_err() && procsys.write(&key, "1").is_err());
        std::fs::remove_file(&file).expect("rm");
        let other = dir.path().join("other");
        std::fs::write(&other, "1\n").expect("write");
        std::fs::hard_link(&other, &file).expect("hard link");
        assert!(procsys.write(&key, "0").is_err(), "a key with two names is not written");
        assert_eq!(std::fs::read_to_string(&other).expect("read"), "1\n");
    }
}
