//! The filesystem twtune reads, beneath one root directory (`--root`, default `/`), so the same code
//! inspects the live host or a captured tree holding `proc/sys/...` and `proc/net/...`.
//!
//! This is the only module that opens files for the inspector.

use std::fs::File;
use std::io::{BufReader, ErrorKind};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sysctl::SysctlKey;

/// Said when a file every kernel has is missing beneath a root.
const NOT_A_PROC_TREE: &str = "; --root must hold proc/sys and proc/net laid out as on a live host";

/// A directory standing for `/`.
#[derive(Clone, Debug)]
pub(crate) struct Root {
    path: PathBuf,
    /// Where the `proc/net` tables are: `ROOT/proc/net`, or `/proc/thread-self/net` for a thread
    /// that joined another network namespace (`/proc/net` follows the process, not the thread).
    net_dir: PathBuf,
}

impl Root {
    /// Checks that `path` is a directory and uses it as the root.
    pub(crate) fn open(path: &Path) -> Result<Root> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(Root { path: path.to_path_buf(), net_dir: path.join("proc/net") }),
            Ok(_) => Err(Error::Root { path: path.to_path_buf(), reason: "not a directory".into() }),
            Err(e) => Err(Error::Root { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }

    /// The live system as seen by the calling thread after it joined another network namespace.
    pub(crate) fn thread_network_namespace() -> Root {
        Root { path: PathBuf::from("/"), net_dir: PathBuf::from("/proc/thread-self/net") }
    }

    /// Whether this is the live system rather than a captured tree.
    pub(crate) fn is_live(&self) -> bool {
        self.path == Path::new("/")
    }

    /// The root directory itself.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `proc/net/NAME` beneath the root.
    pub(crate) fn proc_net_path(&self, name: &str) -> PathBuf {
        self.net_dir.join(name)
    }

    /// Reads a sysctl's text as the kernel prints it. `Ok(None)` when this kernel (or this network
    /// namespace, for global keys such as `tcp_max_orphans`) does not have the key.
    pub(crate) fn read_sysctl(&self, key: &SysctlKey) -> Result<Option<String>> {
        let path = self.path.join("proc/sys").join(key.relative_path());
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Read { path, source, hint: "" }),
        }
    }

    /// The kernel release (`proc/sys/kernel/osrelease`), trimmed.
    pub(crate) fn kernel_release(&self) -> Result<String> {
        let path = self.path.join("proc/sys/kernel/osrelease");
        std::fs::read_to_string(&path).map(|text| text.trim().to_string()).map_err(|source| Error::Read {
            path,
            source,
            hint: NOT_A_PROC_TREE,
        })
    }

    /// The host name (`proc/sys/kernel/hostname`), trimmed; `None` when it cannot be read.
    pub(crate) fn hostname(&self) -> Option<String> {
        std::fs::read_to_string(self.path.join("proc/sys/kernel/hostname")).ok().map(|h| h.trim().to_string())
    }

    /// Reads `proc/net/NAME` whole. A missing file is an error when `required`, else `Ok(None)`.
    pub(crate) fn read_proc_net(&self, name: &str, required: bool) -> Result<Option<String>> {
        let path = self.proc_net_path(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == ErrorKind::NotFound && !required => Ok(None),
            Err(source) => Err(Error::Read { path, source, hint: hint_for(required) }),
        }
    }

    /// Opens `proc/net/NAME` for streaming. A missing file is an error when `required`.
    pub(crate) fn open_proc_net(&self, name: &str, required: bool) -> Result<Option<BufReader<File>>> {
        let path = self.proc_net_path(name);
        match File::open(&path) {
            // The kernel produces these tables a page at a time; a larger buffer means fewer reads.
            Ok(file) => Ok(Some(BufReader::with_capacity(128 * 1024, file))),
            Err(e) if e.kind() == ErrorKind::NotFound && !required => Ok(None),
            Err(source) => Err(Error::Read { path, source, hint: hint_for(required) }),
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
