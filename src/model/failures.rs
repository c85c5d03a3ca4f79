//! Failed connect() and bind() calls, as the kernel's tracepoints show them (docs/port-model.md,
//! "Failed calls"). The kernel counts no connect() that fails for want of a port: no counter moves,
//! and no packet leaves. Three tracepoints see it happen, in the caller's context:
//! - `syscalls:sys_exit_connect` returning -EADDRNOTAVAIL (-99), and `syscalls:sys_exit_bind`
//!   returning -EADDRINUSE (-98): one record per failed call, with the caller's pid;
//! - `sock:inet_sock_set_state` from SYN_SENT to CLOSE: `tcp_v4_connect` (and `tcp_v6_connect`)
//!   moves the socket to SYN_SENT before the port search and back to CLOSE when it fails, with
//!   the addresses already chosen, so the same thread's next failed connect() is toward them.
//!
//! Pure: the reader (`inspect::trace`) hands over each record's raw bytes and the tracepoint's
//! `format` text; this file finds the fields in the format (their offsets are never assumed),
//! decodes records bounded by their length, and counts. A record that is too short or names no
//! known field is skipped, never trusted.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use crate::model::connect::BucketKey;
use crate::model::records::Container;

/// `-EADDRNOTAVAIL`: connect() found no free port for its destination.
pub(crate) const EADDRNOTAVAIL: i64 = -99;
/// `-EADDRINUSE`: bind(addr, 0) found no free port on its address.
pub(crate) const EADDRINUSE: i64 = -98;
/// TCP states of `include/net/tcp_states.h`, as `inet_sock_set_state` reports them.
pub(crate) const TCP_ESTABLISHED: i32 = 1;
pub(crate) const TCP_SYN_SENT: i32 = 2;
pub(crate) const TCP_FIN_WAIT1: i32 = 4;
pub(crate) const TCP_CLOSE: i32 = 7;
pub(crate) const TCP_CLOSE_WAIT: i32 = 8;
/// `AF_INET` and `AF_INET6`.
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// A `format` file longer than this is not a tracepoint's.
pub(crate) const MAX_FORMAT_BYTES: usize = 16 * 1024;
/// Threads remembered between their failed port search and their connect()'s return: a thread
/// whose connect() failed otherwise leaves an entry; past this many they are forgotten at once.
const MAX_PENDING: usize = 65_536;
/// Distinct (process, destination) pairs counted; the rest are counted as of an unknown destination.
const MAX_KEYS: usize = 65_536;
/// Processes and destinations listed in a report.
pub(crate) const MAX_LISTED: usize = 10;

/// Where a field of a tracepoint's raw record lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub offset: usize,
    pub size: usize,
}

impl Field {
    fn bytes<'a>(&self, raw: &'a [u8]) -> Option<&'a [u8]> {
        raw.get(self.offset..self.offset.checked_add(self.size)?)
    }

    /// The field as a signed integer of its size (1, 2, 4 or 8 bytes, the host's byte order).
    fn int(&self, raw: &[u8]) -> Option<i64> {
        let b = self.bytes(raw)?;
        Some(match b.len() {
            1 => i64::from(b[0] as i8),
            2 => i64::from(i16::from_ne_bytes(b.try_into().ok()?)),
            4 => i64::from(i32::from_ne_bytes(b.try_into().ok()?)),
            8 => i64::from_ne_bytes(b.try_into().ok()?),
            _ => return None,
        })
    }

    /// The field as an unsigned integer of its size.
    fn uint(&self, raw: &[u8]) -> Option<u64> {
        let b = self.bytes(raw)?;
        Some(match b.len() {
            1 => u64::from(b[0]),
            2 => u64::from(u16::from_ne_bytes(b.try_into().ok()?)),
            4 => u64::from(u32::from_ne_bytes(b.try_into().ok()?)),
            8 => u64::from_ne_bytes(b.try_into().ok()?),
            _ => return None,
        })
    }
}

/// The fields of a tracepoint's `format` file, by name (`field:long ret; offset:16; size:8; ...`;
/// an array's name loses its `[N]`). Lines that are not fields are skipped.
pub(crate) fn parse_format(text: &str) -> BTreeMap<String, Field> {
    let mut fields = BTreeMap::new();
    for line in text.lines().take(256) {
        let mut parts = line.trim().split(';').map(str::trim);
        let Some(declaration) = parts.next().and_then(|p| p.strip_prefix("field:")) else { continue };
        let Some(name) = declaration.split_whitespace().last() else { continue };
        let name = name.split('[').next().unwrap_or(name).trim_start_matches('*');
        let number =
            |key: &str| -> Option<usize> { parts.clone().find_map(|p| p.strip_prefix(key)?.trim().parse().ok()) };
        let (Some(offset), Some(size)) = (number("offset:"), number("size:")) else { continue };
        if size > 0 && offset.checked_add(size).is_some() {
            fields.insert(name.to_string(), Field { offset, size });
        }
    }
    fields
}

fn field(fields: &BTreeMap<String, Field>, name: &str, sizes: &[usize]) -> Result<Field, String> {
    match fields.get(name) {
        Some(f) if sizes.contains(&f.size) => Ok(*f),
        Some(f) => Err(format!("its field {name} has {} bytes, not {sizes:?}", f.size)),
        None => Err(format!("it has no field {name}")),
    }
}

/// Where a `sys_exit_*` record keeps the call's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExitLayout {
    ret: Field,
}

impl ExitLayout {
    pub(crate) fn from_format(text: &str) -> Result<ExitLayout, String> {
        Ok(ExitLayout { ret: field(&parse_format(text), "ret", &[4, 8])? })
    }

    /// The value the call returned.
    pub(crate) fn ret(&self, raw: &[u8]) -> Option<i64> {
        self.ret.int(raw)
    }
}

/// Where an `inet_sock_set_state` record keeps what twtune reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StateLayout {
    skaddr: Field,
    oldstate: Field,
    newstate: Field,
    sport: Field,
    dport: Field,
    family: Field,
    saddr: Field,
    daddr: Field,
    saddr_v6: Field,
    daddr_v6: Field,
}

/// A TCP socket moving from one state to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StateChange {
    /// The socket's kernel address: the same socket from one change to the next (and another
    /// socket's once it is freed).
    pub sk: u64,
    pub old: i32,
    pub new: i32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl StateLayout {
    pub(crate) fn from_format(text: &str) -> Result<StateLayout, String> {
        let f = parse_format(text);
        Ok(StateLayout {
            skaddr: field(&f, "skaddr", &[8])?,
            oldstate: field(&f, "oldstate", &[4])?,
            newstate: field(&f, "newstate", &[4])?,
            sport: field(&f, "sport", &[2])?,
            dport: field(&f, "dport", &[2])?,
            family: field(&f, "family", &[2])?,
            saddr: field(&f, "saddr", &[4])?,
            daddr: field(&f, "daddr", &[4])?,
            saddr_v6: field(&f, "saddr_v6", &[16])?,
            daddr_v6: field(&f, "daddr_v6", &[16])?,
        })
    }

    /// The state change a record holds (ports in host order, as the tracepoint stores them).
    pub(crate) fn decode(&self, raw: &[u8]) -> Option<StateChange> {
        let port = |f: &Field| f.uint(raw).and_then(|p| u16::try_from(p).ok());
        let (local, remote) = match u16::try_from(self.family.uint(raw)?).ok()? {
            AF_INET => {
                let v4 = |f: &Field| -> Option<IpAddr> {
                    Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(f.bytes(raw)?).ok()?)))
                };
                (v4(&self.saddr)?, v4(&self.daddr)?)
            }
            AF_INET6 => {
                let v6 = |f: &Field| -> Option<IpAddr> {
                    Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(f.bytes(raw)?).ok()?)).to_canonical())
                };
                (v6(&self.saddr_v6)?, v6(&self.daddr_v6)?)
            }
            _ => return None,
        };
        Some(StateChange {
            sk: self.skaddr.uint(raw)?,
            old: i32::try_from(self.oldstate.int(raw)?).ok()?,
            new: i32::try_from(self.newstate.int(raw)?).ok()?,
            local: SocketAddr::new(local, port(&self.sport)?),
            remote: SocketAddr::new(remote, port(&self.dport)?),
        })
    }
}

/// The call a failure is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Call {
    Connect,
    Bind,
}

/// What one traced record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The call returned `ret` (the reader arms only the failures twtune counts).
    Returned {
        call: Call,
        ret: i64,
    },
    State(StateChange),
}

/// One traced record: who made it, when (ns, the perf clock), and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub pid: u32,
    pub tid: u32,
    pub time_ns: u64,
    pub event: Event,
}

/// The failures of a window, counted as the records come (in time order per thread).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    /// Per thread, the destination of its last port search that failed, until its connect() returns.
    pending: HashMap<u32, BucketKey>,
    /// Failures per (pid, call, destination); `None`: a destination not known.
    counts: HashMap<(u32, Call, Option<BucketKey>), u64>,
    /// Failed calls' records the kernel could not write.
    lost: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, record: &Record) {
        match record.event {
            Event::State(change) if change.old == TCP_SYN_SENT && change.new == TCP_CLOSE => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
                let key = BucketKey {
                    local_ip: change.local.ip().to_canonical(),
                    remote_ip: change.remote.ip().to_canonical(),
                    remote_port: change.remote.port(),
                };
                self.pending.insert(record.tid, key);
            }
            Event::State(_) => {}
            Event::Returned { call, ret } => {
                let failed = match call {
                    Call::Connect => ret == EADDRNOTAVAIL,
                    Call::Bind => ret == EADDRINUSE,
                };
                // A thread's failed search belongs to its own next connect() only.
                let destination = self.pending.remove(&record.tid).filter(|_| call == Call::Connect);
                if failed {
                    let key = if self.counts.len() < MAX_KEYS { destination } else { None };
                    *self.counts.entry((record.pid, call, key)).or_default() += 1;
                }
            }
        }
    }

    /// Records of failed calls the kernel dropped for want of room in a ring buffer.
    pub(crate) fn lost(&mut self, records: u64) {
        self.lost = self.lost.saturating_add(records);
    }

    /// The failures counted so far, leaving an empty count that goes on from here: a thread's
    /// port search whose connect() has not returned yet stays pending, so that a call is counted
    /// in the interval it returns in (`twtune watch`).
    pub(crate) fn take(&mut self) -> Tally {
        Tally {
            pending: HashMap::new(),
            counts: std::mem::take(&mut self.counts),
            lost: std::mem::take(&mut self.lost),
        }
    }
}

/// A process that made traced calls, as the reader found it while it lived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Process {
    /// The inode of its network namespace.
    pub netns: u64,
    pub command: String,
    pub container: Option<Container>,
}

/// A process whose calls failed in the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct FailingProcess {
    pub pid: u32,
    pub command: String,
    pub container: Option<Container>,
    pub connect: u64,
    pub bind: u64,
    /// The local address its binds failed on, where that can be told (see [`Failures::place_binds`]).
    pub bind_local_ip: Option<String>,
}

/// A destination bucket toward which connect() failed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct FailingDestination {
    pub local_ip: String,
    pub remote: String,
    pub connect: u64,
    pub per_sec: f64,
    /// The processes whose connect() to it failed, most failures first.
    pub pids: Vec<u32>,
}

/// The failed calls of one network namespace over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Failures {
    pub seconds: f64,
    /// connect() calls that failed with EADDRNOTAVAIL, and per second.
    pub connect: u64,
    pub connect_per_sec: f64,
    /// bind() calls that failed with EADDRINUSE, and per second.
    pub bind: u64,
    pub bind_per_sec: f64,
    /// connect() failures whose destination the trace did not give.
    pub connect_destination_unknown: u64,
    /// The processes, most failures first (at most [`MAX_LISTED`]).
    pub processes: Vec<FailingProcess>,
    /// The destinations, most failures first (at most [`MAX_LISTED`]).
    pub destinations: Vec<FailingDestination>,
    /// Failed calls of processes that ended before their namespace could be read: not counted
    /// above, since they may be another namespace's.
    pub unattributed: u64,
    /// Records of failed calls the kernel could not write, host-wide: the counts above miss that
    /// many at most.
    pub lost: u64,
    /// Tracepoints that could not be armed, and what that leaves out.
    pub unarmed: Vec<String>,
    /// Connections whose lifetime was not followed for want of room, in twtune's table or in the
    /// kernel's buffers (host-wide; see `model::closes`).
    pub lifetimes_dropped: u64,
}

impl Failures {
    /// Names the local address of each process's failed binds (the tracepoint does not carry the
    /// address bind() asked for): of `exhausted`, the addresses with no port left for
    /// bind(addr, 0), the only one on which the process holds sockets (`held`: pid and local
    /// address of each bucket it owns), or else the only one there is.
    pub(crate) fn place_binds(&mut self, exhausted: &[&str], held: &[(u32, &str)]) {
        for p in self.processes.iter_mut().filter(|p| p.bind > 0) {
            let own: Vec<&str> = exhausted.iter().copied().filter(|ip| held.contains(&(p.pid, *ip))).collect();
            p.bind_local_ip = match (own.as_slice(), exhausted) {
                ([one], _) | ([], [one]) => Some((*one).to_string()),
                _ => None,
            };
        }
    }
}

/// One second or more of figures, rounded to a tenth.
fn per_sec(count: u64, seconds: f64) -> f64 {
    (count as f64 / seconds.max(0.001) * 10.0).round() / 10.0
}

impl Tally {
    /// The failures of the processes of network namespace `netns` over `seconds`: `processes`
    /// says what each pid was while it lived (a pid missing from it ended before it was looked at).
    pub(crate) fn finish(&self, processes: &HashMap<u32, Process>, netns: u64, seconds: f64) -> Failures {
        let mut out = Failures { seconds, lost: self.lost, ..Failures::default() };
        let mut by_pid: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let mut by_destination: BTreeMap<BucketKey, BTreeMap<u32, u64>> = BTreeMap::new();
        for (&(pid, call, destination), &n) in &self.counts {
            match processes.get(&pid) {
                None => out.unattributed += n,
                Some(p) if p.netns != netns => {}
                Some(_) => {
                    let counts = by_pid.entry(pid).or_default();
                    match call {
                        Call::Connect => counts.0 += n,
                        Call::Bind => counts.1 += n,
                    }
                    match (call, destination) {
                        (Call::Connect, Some(key)) => {
                            *by_destination.entry(key).or_default().entry(pid).or_default() += n
                        }
                        (Call::Connect, None) => out.connect_destination_unknown += n,
                        (Call::Bind, _) => {}
                    }
                }
            }
        }
        out.connect = by_pid.values().map(|c| c.0).sum();
        out.bind = by_pid.values().map(|c| c.1).sum();
        out.connect_per_sec = per_sec(out.connect, seconds);
        out.bind_per_sec = per_sec(out.bind, seconds);
        out.processes = listed_processes(by_pid, processes);
        out.destinations = listed_destinations(by_destination, seconds);
        out
    }
}

fn listed_processes(by_pid: BTreeMap<u32, (u64, u64)>, processes: &HashMap<u32, Process>) -> Vec<FailingProcess> {
    let mut listed: Vec<FailingProcess> = by_pid
        .into_iter()
        .filter_map(|(pid, (connect, bind))| {
            let p = processes.get(&pid)?;
            Some(FailingProcess {
                pid,
                command: p.command.clone(),
                container: p.container.clone(),
                connect,
                bind,
                bind_local_ip: None,
            })
        })
        .collect();
    listed.sort_by(|a, b| (b.connect + b.bind).cmp(&(a.connect + a.bind)).then(a.pid.cmp(&b.pid)));
    listed.truncate(MAX_LISTED);
    listed
}

fn listed_destinations(
    by_destination: BTreeMap<BucketKey, BTreeMap<u32, u64>>,
    seconds: f64,
) -> Vec<FailingDestination> {
    let mut listed: Vec<FailingDestination> = by_destination
        .into_iter()
        .map(|(key, pids)| {
            let connect = pids.values().sum();
            let mut by_count: Vec<(u32, u64)> = pids.into_iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            FailingDestination {
                local_ip: key.local_ip.to_string(),
                remote: SocketAddr::new(key.remote_ip, key.remote_port).to_string(),
                connect,
                per_sec: per_sec(connect, seconds),
                pids: by_count.into_iter().take(MAX_LISTED).map(|(pid, _)| pid).collect(),
            }
        })
        .collect();
    listed.sort_by(|a, b| b.connect.cmp(&a.connect).then_with(|| a.remote.cmp(&b.remote)));
    listed.truncate(MAX_LISTED);
    listed
}

/// The CPUs of a kernel CPU list (`0-3,6`), at most 8192 of them; `None` if it is not one.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    const MAX_CPUS: u32 = 8192;
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let (low, high): (u32, u32) = (low.parse().ok()?, high.parse().ok()?);
        if low > high || high >= MAX_CPUS {
            return None;
        }
        cpus.extend(low..=high);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// How the failed calls of a window were measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub(crate) enum Tracing {
    /// The tracepoints were armed for the window.
    Tracepoints(Failures),
    /// They were not, and why: the failures are not counted.
    Untraced { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/tracefs/{name}.format", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).expect("fixture")
    }

    /// A raw `inet_sock_set_state` record laid out as Linux 6.18's format says.
    fn state_record(old: i32, new: i32, local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
        let mut raw = vec![0u8; 76];
        raw[16..20].copy_from_slice(&old.to_ne_bytes());
        raw[20..24].copy_from_slice(&new.to_ne_bytes());
        raw[24..26].copy_from_slice(&local.port().to_ne_bytes());
        raw[26..28].copy_from_slice(&remote.port().to_ne_bytes());
        match (local.ip(), remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                raw[28..30].copy_from_slice(&AF_INET.to_ne_bytes());
                raw[32..36].copy_from_slice(&l.octets());
                raw[36..40].copy_from_slice(&r.octets());
            }
            (l, r) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V6(v6) => v6,
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                };
                raw[28..30].copy_from_slice(&AF_INET6.to_ne_bytes());
                raw[40..56].copy_from_slice(&v6(l).octets());
                raw[56..72].copy_from_slice(&v6(r).octets());
            }
        }
        raw
    }

    fn exit_record(ret: i64) -> Vec<u8> {
        let mut raw = vec![0u8; 24];
        raw[16..24].copy_from_slice(&ret.to_ne_bytes());
        raw
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn fields_are_found_in_the_format_not_assumed() {
        let fields = parse_format(&fixture("inet_sock_set_state"));
        assert_eq!(fields.get("daddr_v6"), Some(&Field { offset: 56, size: 16 }));
        assert_eq!(fields.get("skaddr"), Some(&Field { offset: 8, size: 8 }));
        assert_eq!(fields.get("common_pid"), Some(&Field { offset: 4, size: 4 }));
        let exit = ExitLayout::from_format(&fixture("sys_exit_connect")).expect("layout");
        assert_eq!(exit.ret(&exit_record(-99)), Some(-99));
        // A kernel that moved the field: its offset is read, not assumed.
        let moved = fixture("sys_exit_bind").replace("offset:16;", "offset:8;");
        let exit = ExitLayout::from_format(&moved).expect("layout");
        assert_eq!(exit.ret(&(-98i64).to_ne_bytes().repeat(2)), Some(-98));
        assert!(ExitLayout::from_format("name: x\nformat:\n").expect_err("no ret").contains("no field ret"));
    }

    #[test]
    fn state_changes_decode_both_families_and_short_records_are_skipped() {
        let layout = StateLayout::from_format(&fixture("inet_sock_set_state")).expect("layout");
        let raw = state_record(TCP_SYN_SENT, TCP_CLOSE, addr("10.0.0.1:0"), addr("10.0.0.2:443"));
        let change = layout.decode(&raw).expect("decoded");
        assert_eq!(
            (change.old, change.new, change.local, change.remote),
            (2, 7, addr("10.0.0.1:0"), addr("10.0.0.2:443"))
        );
        let raw6 = state_record(1, 4, addr("[fd00::1]:40000"), addr("[fd00::2]:80"));
        assert_eq!(layout.decode(&raw6).expect("v6").remote, addr("[fd00::2]:80"));
        // An IPv4 record ends, for twtune, with daddr (offset 36, 4 bytes).
        for len in 0..40 {
            assert_eq!(layout.decode(&raw[..len]), None, "a record cut to {len} bytes");
        }
    }

    #[test]
    fn any_bytes_and_any_format_are_decoded_or_refused_without_panicking() {
        let layout = StateLayout::from_format(&fixture("inet_sock_set_state")).expect("layout");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 96) as usize;
            let raw: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8).collect();
            let _ = layout.decode(&raw);
            let text = String::from_utf8_lossy(&raw).replace('\u{fffd}', ";");
            let _ = parse_format(&format!("field:long ret;\toffset:{};\tsize:{};{text}", seed % 1000, seed % 9));
        }
        let huge = "\tfield:long ret;\toffset:18446744073709551615;\tsize:8;\n";
        assert!(parse_format(huge).is_empty(), "an offset past the end of memory is no field");
    }

    fn record(pid: u32, tid: u32, event: Event) -> Record {
        Record { pid, tid, time_ns: 0, event }
    }

    fn process(netns: u64, command: &str) -> Process {
        Process { netns, command: command.into(), container: None }
    }

    #[test]
    fn failures_are_counted_per_process_and_destination_in_the_namespace_only() {
        let mut tally = Tally::default();
        let failed_search = |local: &str, remote: &str| {
            Event::State(StateChange {
                sk: 1,
                old: TCP_SYN_SENT,
                new: TCP_CLOSE,
                local: addr(local),
                remote: addr(remote),
            })
        };
        for _ in 0..7 {
            tally.add(&record(10, 11, failed_search("10.0.0.1:0", "10.0.0.2:443")));
            tally.add(&record(10, 11, Event::Returned { call: Call::Connect, ret: EADDRNOTAVAIL }));
        }
        // Another thread of another process, whose search the first must not take.
        tally.add(&record(20, 21, failed_search("10.0.0.1:0", "10.0.0.3:80")));
        for _ in 0..3 {
            tally.add(&record(20, 22, Event::Returned { call: Call::Bind, ret: EADDRINUSE }));
        }
        tally.add(&record(20, 21, Event::Returned { call: Call::Connect, ret: EADDRNOTAVAIL }));
        tally.add(&record(30, 30, Event::Returned { call: Call::Connect, ret: EADDRNOTAVAIL }));
        tally.add(&record(40, 40, Event::Returned { call: Call::Connect, ret: EADDRNOTAVAIL }));
        tally.lost(2);
        let processes =
            HashMap::from([(10, process(1, "client")), (20, process(1, "binder")), (30, process(9, "elsewhere"))]);
        let mut f = tally.finish(&processes, 1, 2.0);
        f.place_binds(&["10.0.0.1", "10.0.0.9"], &[(20, "10.0.0.9"), (10, "10.0.0.1")]);
        assert_eq!((f.connect, f.bind, f.connect_per_sec, f.bind_per_sec), (8, 3, 4.0, 1.5));
        assert_eq!((f.unattributed, f.lost, f.connect_destination_unknown), (1, 2, 0));
        let listed: Vec<(u32, &str, u64, u64)> =
            f.processes.iter().map(|p| (p.pid, p.command.as_str(), p.connect, p.bind)).collect();
        assert_eq!(listed, [(10, "client", 7, 0), (20, "binder", 1, 3)]);
        let destinations: Vec<(&str, &str, u64, &[u32])> =
            f.destinations.iter().map(|d| (d.local_ip.as_str(), d.remote.as_str(), d.connect, &d.pids[..])).collect();
        assert_eq!(
            destinations,
            [("10.0.0.1", "10.0.0.2:443", 7, &[10][..]), ("10.0.0.1", "10.0.0.3:80", 1, &[20][..])]
        );
        assert_eq!(f.processes[1].bind_local_ip.as_deref(), Some("10.0.0.9"), "the exhausted address it holds");
        assert_eq!(f.processes[0].bind_local_ip, None, "no bind of its failed");
        f.place_binds(&["10.0.0.1"], &[]);
        assert_eq!(f.processes[1].bind_local_ip.as_deref(), Some("10.0.0.1"), "the only exhausted address");
        f.place_binds(&["10.0.0.1", "10.0.0.9"], &[]);
        assert_eq!(f.processes[1].bind_local_ip, None, "two exhausted, none of them its own");
    }

    #[test]
    fn cpu_lists_are_read_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-3,6\n"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        for bad in ["", "3-1", "a", "0-99999", "1,"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn other_errors_count_nothing_and_consume_the_threads_search() {
        let mut tally = Tally::default();
        let search = StateChange {
            sk: 1,
            old: TCP_SYN_SENT,
            new: TCP_CLOSE,
            local: addr("10.0.0.1:0"),
            remote: addr("10.0.0.2:1"),
        };
        tally.add(&record(1, 1, Event::State(search)));
        tally.add(&record(1, 1, Event::Returned { call: Call::Connect, ret: -111 }));
        tally.add(&record(1, 1, Event::Returned { call: Call::Connect, ret: EADDRNOTAVAIL }));
        tally.add(&record(1, 1, Event::Returned { call: Call::Bind, ret: -13 }));
        let f = tally.finish(&HashMap::from([(1, process(5, "c"))]), 5, 1.0);
        assert_eq!((f.connect, f.bind, f.connect_destination_unknown), (1, 0, 1));
        assert!(f.destinations.is_empty());
    }
}
