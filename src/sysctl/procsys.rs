//! Writing sysctls: the only module that writes beneath `proc/sys`.
//!
//! Every key is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`
//! relative to a directory descriptor of `ROOT/proc/sys`, so no key can lead out of it, even if the
//! name check in [`SysctlKey`] had a hole. A value goes in one `write(2)` at offset 0 (what the
//! kernel's strict sysctl writes require) and is read back.

use std::io::{Read, Write};
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
    /// Opens `root/proc/sys`.
    pub(crate) fn open(root: &Path) -> std::io::Result<ProcSys> {
        let path = root.join("proc/sys");
        let dir = rustix::fs::open(&path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
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

    fn open_key(&self, key: &SysctlKey, flags: OFlags) -> std::io::Result<std::fs::File> {
        let fd = rustix::fs::openat2(&self.dir, key.relative_path(), flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE)?;
        Ok(std::fs::File::from(fd))
    }

    /// The value of `key`, whitespace folded.
    pub(crate) fn read(&self, key: &SysctlKey) -> std::io::Result<String> {
        let mut text = String::new();
        self.open_key(key, OFlags::RDONLY)?.read_to_string(&mut text)?;
        Ok(fold_whitespace(&text))
    }

    /// Writes `value` to `key` and reads it back; a value the kernel rejects, clamps or rewrites is
    /// an error.
    pub(crate) fn write(&self, key: &SysctlKey, value: &str) -> Result<(), WriteError> {
        let wanted = fold_whitespace(value);
        // O_TRUNC as a shell redirection does: procfs ignores it, and a file of a captured tree is
        // rewritten whole instead of keeping the tail of a longer old value.
        let mut file = self.open_key(key, OFlags::WRONLY | OFlags::TRUNC)?;
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
}
