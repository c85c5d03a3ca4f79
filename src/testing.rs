//! Test-only builders shared by the unit tests: [`Host`], an [`Inspection`] described by its
//! settings, counters, sockets and sysctl.d tree, and [`fixture_copy`], a writable copy of a
//! captured root.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::inspect::Inspection;
use crate::model::records::{Socket, TcpState};
use crate::model::reuse::Reuse;
use crate::model::table::{SocketCounter, Tracking};
use crate::ports::{PortRange, PortSet};
use crate::sysctl::KernelVersion;
use crate::sysctl::keys::Settings;
use crate::sysctl_d::Tree;

#[path = "../tests/support/copy_tree.rs"]
mod copy_tree;
use copy_tree::copy_tree;

/// A host to build an [`Inspection`] of. [`Host::new`] has no settings at all; [`Host::defaults`]
/// has the Linux 6.18 defaults of the keys the rules read.
pub(crate) struct Host {
    pub kernel: Option<KernelVersion>,
    pub settings: BTreeMap<String, Option<String>>,
    pub counters: BTreeMap<String, i64>,
    pub sockets: Vec<Socket>,
    pub sysctl_d: Tree,
    pub conntrack: Option<crate::inspect::conntrack::Conntrack>,
    pub top: usize,
    /// Whether the host's namespace is the initial one (`None`: unknown, as offline).
    pub initial_namespace: Option<bool>,
}

/// A parsed test address.
pub(crate) fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

impl Host {
    /// Kernel 6.18, nothing set, nothing counted, no sockets, no sysctl.d files.
    pub(crate) fn new() -> Host {
        Host {
            kernel: Some(KernelVersion::new(6, 18)),
            settings: BTreeMap::new(),
            counters: BTreeMap::new(),
            sockets: Vec::new(),
            sysctl_d: Tree::default(),
            conntrack: None,
            top: 10,
            initial_namespace: None,
        }
    }

    /// Kernel 6.18 with its defaults for the keys the rules read, and quiet counters.
    pub(crate) fn defaults() -> Host {
        let defaults = [
            ("net.core.somaxconn", "4096"),
            ("net.ipv4.ip_local_port_range", "32768 60999"),
            ("net.ipv4.ip_local_reserved_ports", ""),
            ("net.ipv4.ip_unprivileged_port_start", "1024"),
            ("net.ipv4.tcp_ehash_entries", "262144"),
            ("net.ipv4.tcp_fin_timeout", "60"),
            ("net.ipv4.tcp_max_tw_buckets", "131072"),
            ("net.ipv4.tcp_syncookies", "1"),
            ("net.ipv4.tcp_timestamps", "1"),
            ("net.ipv4.tcp_tw_reuse", "2"),
            ("net.ipv4.tcp_tw_reuse_delay", "1000"),
        ];
        defaults
            .iter()
            .fold(Host::new(), |host, (key, value)| host.set(key, value))
            .counter("TCPTimeWaitOverflow", 0)
            .counter("ListenOverflows", 0)
    }

    /// The kernel version; `None` for a release without one.
    pub(crate) fn kernel(mut self, version: Option<KernelVersion>) -> Host {
        self.kernel = version;
        self
    }

    /// Whether the inspected network namespace is the initial one (`None`: unknown).
    pub(crate) fn initial_namespace(mut self, initial: Option<bool>) -> Host {
        self.initial_namespace = initial;
        self
    }

    pub(crate) fn set(mut self, key: &str, value: &str) -> Host {
        self.settings.insert(key.to_string(), Some(value.to_string()));
        self
    }

    pub(crate) fn counter(mut self, name: &str, value: i64) -> Host {
        self.counters.insert(name.to_string(), value);
        self
    }

    pub(crate) fn socket(mut self, state: TcpState, local: &str, remote: &str) -> Host {
        self.sockets.push(Socket::new(state, addr(local), addr(remote)));
        self
    }

    /// `n` sockets in `state` from consecutive ports starting at `first_port` of 10.0.0.1 to `remote`.
    pub(crate) fn outbound(mut self, n: u16, state: TcpState, first_port: u16, remote: &str) -> Host {
        for i in 0..n {
            self.sockets.push(Socket::new(state, addr(&format!("10.0.0.1:{}", first_port + i)), addr(remote)));
        }
        self
    }

    /// A listener on `port` and `n` server-side TIME_WAIT sockets on it.
    pub(crate) fn inbound_time_wait(mut self, n: u16, port: u16) -> Host {
        self = self.socket(TcpState::Listen, &format!("0.0.0.0:{port}"), "0.0.0.0:0");
        for i in 0..n {
            self.sockets.push(Socket::new(
                TcpState::TimeWait,
                addr(&format!("10.0.0.1:{port}")),
                addr(&format!("10.0.0.9:{}", 40000 + i)),
            ));
        }
        self
    }

    /// The sysctl.d tree read beneath `root`.
    pub(crate) fn sysctl_d(mut self, root: &Path) -> Host {
        self.sysctl_d = Tree::read(root).expect("fixture tree");
        self
    }

    /// The inspection of this host, its sockets counted against its port range and reserved ports
    /// (the kernel defaults where they are not set).
    pub(crate) fn inspection(&self) -> Inspection {
        self.inspection_with(Tracking::default())
    }

    /// [`Host::inspection`], with the counter recording what `tracking` asks for.
    pub(crate) fn inspection_with(&self, tracking: Tracking) -> Inspection {
        let settings = Settings(self.settings.clone());
        let range = PortRange::parse(settings.get("net.ipv4.ip_local_port_range").unwrap_or("32768 60999"))
            .expect("valid range");
        let reserved =
            PortSet::parse(settings.get("net.ipv4.ip_local_reserved_ports").unwrap_or("")).expect("valid set");
        let mut counter = SocketCounter::new(range, reserved).reuse(Reuse::from_settings(&settings)).tracking(tracking);
        self.sockets.iter().for_each(|s| counter.add(*s));
        Inspection {
            kernel: self.kernel.map_or_else(|| "unknown".to_string(), |v| format!("{v}.0")),
            kernel_version: self.kernel,
            settings,
            counters: self.counters.clone(),
            sockets: counter.finish("test", self.top),
            sysctl_d: self.sysctl_d.clone(),
            conntrack: self.conntrack.clone(),
            counter_growth: None,
            sample_seconds: None,
            warnings: Vec::new(),
            initial_namespace: self.initial_namespace,
            tracing: None,
        }
    }
}

/// A committed fixture beneath `tests/fixtures` (`roots/idle`, `sysctl-trees/precedence`).
pub(crate) fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(relative)
}

/// A writable copy of a fixture beneath `tests/fixtures`, in a temporary directory.
pub(crate) fn fixture_copy(relative: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(&fixture(relative), dir.path());
    dir
}
