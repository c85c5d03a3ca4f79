//! The filesystem twtune reads, beneath one root directory (`--root`, default `/`), so the same code
//! inspects the live host or a captured tree holding `proc/sys/...` and `proc/net/...`.
//!
//! A captured tree is untrusted input: every read is resolved inside the root (a link to
//! `/etc/shadow` in the tree means `ROOT/etc/shadow`), only regular files are read (a FIFO or a
//! device is refused, never waited on), and every read is bounded ([`crate::files`]). Malformed
//! text, including invalid UTF-8, is the parsers' business: it is read lossily, never an error.

use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::files::{open_file_in_root, open_root, read_in_root};
use crate::sysctl::SysctlKey;

/// Said when a file every kernel has is missing beneath a root.
const NOT_A_PROC_TREE: &str = "; --root must hold proc/sys and proc/net laid out as on a live host";
/// The longest sysctl value read (`ip_local_reserved_ports` listing every other port is ~200 KB).
const MAX_VALUE_BYTES: u64 = 1 << 20;
/// The longest `/proc/net` counter table read (sockstat, netstat, snmp are a few KB).
const MAX_TABLE_BYTES: u64 = 1 << 20;

/// A directory standing for `/`.
#[derive(Clone, Debug)]
pub(crate) struct Root {
    path: PathBuf,
    /// The root, opened once: every read is resolved beneath it.
    dir: Arc<OwnedFd>,
    /// Where the `proc/net` tables are, beneath the root: `proc/net`, or `proc/thread-self/net` for a
    /// thread that joined another network namespace (`/proc/net` follows the process, not the
    /// thread).
    net_dir: PathBuf,
}

impl Root {
    /// Checks that `path` is a directory and uses it as the root.
    pub(crate) fn open(path: &Path) -> Result<Root> {
        let root = |dir| Root { path: path.to_path_buf(), dir: Arc::new(dir), net_dir: PathBuf::from("proc/net") };
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => open_root(path).map(root).map_err(|e| {
                Error::if_out_of_files(&e, || format!("opening {}", path.display()))
                    .unwrap_or_else(|| Error::Root { path: path.to_path_buf(), reason: e.to_string() })
            }),
            Ok(_) => Err(Error::Root { path: path.to_path_buf(), reason: "not a directory".into() }),
            Err(e) => Err(Error::Root { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }

    /// The live system as seen by the calling thread after it joined another network namespace.
    pub(crate) fn thread_network_namespace() -> Result<Root> {
        let mut root = Root::open(Path::new("/"))?;
        root.net_dir = PathBuf::from("proc/thread-self/net");
        Ok(root)
    }

    /// Whether this is the live system rather than a captured tree.
    pub(crate) fn is_live(&self) -> bool {
        self.path == Path::new("/")
    }

    /// The root directory itself.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `proc/net/NAME` beneath the root, for messages.
    pub(crate) fn proc_net_path(&self, name: &str) -> PathBuf {
        self.path.join(&self.net_dir).join(name)
    }

    /// A regular file beneath the root (`relative`, resolved inside it), for copying.
    pub(crate) fn open_file(&self, relative: &Path) -> std::io::Result<File> {
        open_file_in_root(&self.dir, relative)
    }

    /// The names in a directory beneath the root, resolved inside it.
    pub(crate) fn list(&self, relative: &Path) -> std::io::Result<Vec<String>> {
        crate::files::list_in_root(&self.dir, relative)
    }

    /// `proc/net/NAME` relative to the root (in the namespace this root reads).
    pub(crate) fn proc_net_relative(&self, name: &str) -> PathBuf {
        self.net_dir.join(name)
    }

    /// A regular file beneath the root, whole and lossily decoded; `Ok(None)` when it is missing.
    fn read_text(&self, relative: &Path, limit: u64) -> std::io::Result<Option<String>> {
        match read_in_root(&self.dir, relative, limit) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a sysctl's text as the kernel prints it. `Ok(None)` when this kernel (or this network
    /// namespace, for global keys such as `tcp_max_orphans`) does not have the key.
    pub(crate) fn read_sysctl(&self, key: &SysctlKey) -> Result<Option<String>> {
        let relative = Path::new("proc/sys").join(key.relative_path());
        self.read_text(&relative, MAX_VALUE_BYTES).map_err(|source| Error::read(self.path.join(&relative), source, ""))
    }

    /// The kernel release (`proc/sys/kernel/osrelease`), trimmed.
    pub(crate) fn kernel_release(&self) -> Result<String> {
        let relative = Path::new("proc/sys/kernel/osrelease");
        read_in_root(&self.dir, relative, 4096)
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
            .map_err(|source| Error::read(self.path.join(relative), source, NOT_A_PROC_TREE))
    }

    /// The host name (`proc/sys/kernel/hostname`), trimmed; `None` when it cannot be read.
    pub(crate) fn hostname(&self) -> Option<String> {
        self.read_text(Path::new("proc/sys/kernel/hostname"), 4096).ok().flatten().map(|h| h.trim().to_string())
    }

    /// Reads `proc/net/NAME` whole. A missing file is an error when `required`, else `Ok(None)`.
    pub(crate) fn read_proc_net(&self, name: &str, required: bool) -> Result<Option<String>> {
        match read_in_root(&self.dir, &self.net_dir.join(name), MAX_TABLE_BYTES) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound && !required => Ok(None),
            Err(source) => Err(Error::read(self.proc_net_path(name), source, hint_for(required))),
        }
    }

    /// Opens `proc/net/NAME` for streaming. A missing file is an error when `required`.
    pub(crate) fn open_proc_net(&self, name: &str, required: bool) -> Result<Option<BufReader<File>>> {
        match open_file_in_root(&self.dir, &self.net_dir.join(name)) {
            // The kernel produces these tables a page at a time; a larger buffer means fewer reads.
            Ok(file) => Ok(Some(BufReader::with_capacity(128 * 1024, file))),
            Err(e) if e.kind() == ErrorKind::NotFound && !required => Ok(None),
            Err(source) => Err(Error::read(self.proc_net_path(name), source, hint_for(required))),
        }
    }
}

fn hint_for(required: bool) -> &'static str {
    if required { NOT_A_PROC_TREE } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_root_is_a_clear_error() {
        let err = Root::open(Path::new("/nonexistent/twtune-root")).expect_err("missing");
        let text = err.to_string();
        assert!(text.starts_with("root directory /nonexistent/twtune-root: "), "{text}");
        assert!(text.contains("--root"), "{text}");
    }

    #[test]
    fn a_file_is_not_a_root() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let err = Root::open(file.path()).expect_err("file");
        assert!(err.to_string().contains("not a directory"));
    }

    #[test]
    fn absent_sysctl_is_none_not_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("proc/sys/net/ipv4")).expect("mkdir");
        std::fs::write(dir.path().join("proc/sys/net/ipv4/tcp_tw_reuse"), "2\n").expect("write");
        let root = Root::open(dir.path()).expect("root");
        let key = |k: &str| SysctlKey::parse(k).expect("valid key");
        assert_eq!(root.read_sysctl(&key("net.ipv4.tcp_tw_reuse")).expect("read"), Some("2\n".into()));
        assert_eq!(root.read_sysctl(&key("net.ipv4.tcp_tw_recycle")).expect("read"), None);
        assert!(root.read_proc_net("tcp6", false).expect("optional").is_none());
        let err = root.read_proc_net("sockstat", true).expect_err("required");
        assert!(err.to_string().contains("proc/net/sockstat"), "{err}");
        assert!(root.kernel_release().is_err());
    }
}
