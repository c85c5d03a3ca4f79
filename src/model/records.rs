//! The records readers produce and the model takes: a TCP socket as the socket table lists it, a
//! conntrack entry as ctnetlink dumps it, and the process (and container) holding a socket. Plain
//! data: no reader and no arithmetic lives here.

use std::net::SocketAddr;

use serde::Serialize;

/// How long TIME_WAIT lasts (`TCP_TIMEWAIT_LEN`, fixed in the kernel), in milliseconds.
pub(crate) const TIME_WAIT_MS: u32 = 60_000;

/// TCP states with the numbers the kernel uses in `/proc/net/tcp` and sock_diag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
    BoundInactive = 13,
}

impl TcpState {
    pub(crate) const ALL: [TcpState; 13] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
        TcpState::BoundInactive,
    ];

    /// The state with the kernel's number, if there is one.
    pub(crate) fn from_code(code: u8) -> Option<TcpState> {
        TcpState::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The name `ss` prints, upper-cased (`TIME_WAIT`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
            TcpState::BoundInactive => "BOUND_INACTIVE",
        }
    }
}

/// One TCP socket as a source reports it. `Copy`, so sources hand it over without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Socket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// For a TIME_WAIT socket: milliseconds until its timer fires, which tells its age (TIME_WAIT
    /// lasts [`TIME_WAIT_MS`]); `None` when the source does not say.
    pub expires_ms: Option<u32>,
    /// The interface the socket is bound to (SO_BINDTODEVICE); 0 when none or not known.
    pub interface: u32,
    /// For a live connection: whether it carries TCP timestamps (both ends agreed); `None` when the
    /// source does not say (`/proc/net/tcp`, TIME_WAIT sockets).
    pub timestamps: Option<bool>,
    /// The socket's inode (what `/proc/PID/fd/N` links name as `socket:[inode]`), which tells the
    /// process holding it; 0 for TIME_WAIT sockets, which no process holds, and when unknown.
    pub inode: u32,
    /// The kernel's cookie of the connection (sock_diag), which a TIME_WAIT socket keeps from the
    /// socket it replaces: what tells a connection from a later one on the same port. 0 when the
    /// source does not say (`/proc/net/tcp`).
    pub cookie: u64,
}

impl Socket {
    /// A socket with no timer, no bound interface and no owner.
    pub(crate) fn new(state: TcpState, local: SocketAddr, remote: SocketAddr) -> Socket {
        Socket { state, local, remote, expires_ms: None, interface: 0, timestamps: None, inode: 0, cookie: 0 }
    }

    /// The same socket with its timer firing in `ms` milliseconds.
    pub(crate) fn expiring_in(self, ms: u32) -> Socket {
        Socket { expires_ms: Some(ms), ..self }
    }
}

/// `IPS_SRC_NAT` of a conntrack entry's status.
pub(crate) const IPS_SRC_NAT: u32 = 1 << 4;
/// Protocol numbers of the flows the NAT pool counts.
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
/// Conntrack's TCP states (`enum tcp_conntrack`) that end a flow.
pub(crate) const CT_TCP_TIME_WAIT: u8 = 7;
pub(crate) const CT_TCP_CLOSE: u8 = 8;

/// One conntrack entry, as far as twtune needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flow {
    pub protocol: u8,
    pub original_source: SocketAddr,
    pub original_destination: SocketAddr,
    /// Where replies come from: the real destination, after any DNAT (a Service address's backend).
    pub reply_source: SocketAddr,
    /// Where replies go: the translated source, for a source-NAT flow.
    pub reply_destination: SocketAddr,
    pub status: u32,
    pub tcp_state: Option<u8>,
}

impl Flow {
    /// Whether the NAT translated the flow's source (`IPS_SRC_NAT`).
    pub(crate) fn source_natted(&self) -> bool {
        self.status & IPS_SRC_NAT != 0
    }
}

/// A process holding sockets of a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Owner {
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub command: String,
    /// The container it runs in, if any.
    pub container: Option<Container>,
    /// How many of the bucket's sockets it holds.
    pub sockets: u32,
    /// What it runs (runtime, version, HTTP client libraries), read from its executable and the
    /// files it maps, for the few owners of churning buckets that are identified; absent for the
    /// others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// What a process runs, as read from its files without executing it. Unknown stays unknown:
/// nothing is guessed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Identity {
    /// `go`, `python`, `java`, `node`, the proxies `nginx`, `haproxy` and `envoy`, or `unknown`.
    pub runtime: &'static str,
    /// The runtime's version (`go1.19.8`, `3.11`, `17.0.15`, `v20.20.2`, `1.22.1`), when its files
    /// say it.
    pub version: Option<String>,
    /// Go: the path of the main module.
    pub main_module: Option<String>,
    /// The libraries found, at most [`MAX_LIBRARIES`]: every module of a Go binary, the HTTP
    /// client packages of a Python interpreter, the HTTP client jars a JVM has open or mapped.
    pub libraries: Vec<Library>,
    /// nginx: what its configuration says about keep-alive to the backends, when it was read.
    pub proxy_config: Option<ProxyConfig>,
    /// Why the runtime or its version is not known, when it is not.
    pub unknown: Option<String>,
}

/// What an nginx configuration (the main file and its includes) says about connections to its
/// backends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ProxyConfig {
    /// The main file, as a path of the process's tree (`/etc/nginx/nginx.conf`, or `-c`'s).
    pub path: String,
    /// Files read, the main one and its includes.
    pub files_read: u32,
    /// `upstream` blocks without a `keepalive` directive, by name.
    pub upstreams_without_keepalive: Vec<String>,
    /// `upstream` blocks with one.
    pub upstreams_with_keepalive: Vec<String>,
    /// `proxy_pass` targets naming an address or host, not an `upstream` block: such a backend
    /// cannot keep connections alive.
    pub direct_proxy_pass: Vec<String>,
    /// What was left unread (a file past the bounds, an include too deep), if anything.
    pub unread: Option<String>,
}

/// Libraries kept per identified process (a Go binary lists every module it was built with).
pub(crate) const MAX_LIBRARIES: usize = 500;

/// A library a process runs, with where that was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Library {
    /// The module path (`github.com/valyala/fasthttp`) or the distribution name (`requests`).
    pub name: String,
    /// Its version as the build information or the package metadata gives it (`v1.31.0`, `2.32.3`).
    pub version: Option<String>,
    /// `build information` (linked into the binary), `mapped` (one of its files is mapped into the
    /// process), `open` (a jar the process has open), or `search path` (installed where the
    /// interpreter imports from, which does not prove it is imported).
    pub found_in: &'static str,
}

impl Identity {
    /// The library named `name`, if the process runs it.
    pub(crate) fn library(&self, name: &str) -> Option<&Library> {
        self.libraries.iter().find(|l| l.name == name)
    }
}

/// The container (and pod) a process belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Container {
    /// `docker`, `containerd`, `cri-o`, `podman`, or `kubernetes` for a pod's cgroup whose
    /// container scope is not one of those.
    pub runtime: &'static str,
    /// The full container id (64 hex digits), when the path names one.
    pub id: Option<String>,
    /// Its first 12 digits, as `docker ps` and `crictl ps` show it.
    pub short_id: Option<String>,
    /// The Kubernetes pod UID, when the container is in a pod.
    pub pod_uid: Option<String>,
    /// The pod's QoS class: `guaranteed`, `burstable` or `besteffort`.
    pub qos: Option<&'static str>,
}

impl Container {
    /// How a person recognises it: `docker 0123456789ab`, `pod 5f1c...(burstable) 0123456789ab`.
    pub(crate) fn label(&self) -> String {
        let id = self.short_id.as_deref().unwrap_or("?");
        match &self.pod_uid {
            Some(uid) => format!("pod {uid} {} {id}", self.qos.unwrap_or("?")),
            None => format!("{} {id}", self.runtime),
        }
    }
}
