//! The kernel's tracepoints, armed for a window: failed connect() and bind() calls as they
//! happen, which no counter counts (see [`crate::model::failures`]). Perf events opened with
//! perf_event_open(2), one per CPU and tracepoint, system-wide, each with its own ring buffer; no
//! BPF program, no compiler.
//!
//! - The tracepoints' ids and record formats come from tracefs. Where it is not mounted, a private
//!   instance is made with fsopen(2)/fsmount(2): a detached mount that no path shows and that goes
//!   away with its descriptor. Only a directory that is tracefs (its file system magic) is read.
//! - The syscall tracepoints carry an ftrace filter (`ret == -99`), so the kernel drops every other
//!   return before it reaches a buffer. While any is armed, every syscall of the host takes the
//!   slow path: they are armed for the window only.
//! - The state changes are filtered to those of connections this host opens and their ends
//!   (connect()'s SYN_SENT, and every change out of SYN_SENT or ESTABLISHED): a failed port search,
//!   and each connection's lifetime and who closed it first ([`crate::model::closes`]).
//! - A thread drains the buffers every [`DRAIN_EVERY`] and looks up each new caller's namespace,
//!   command and container while it lives. Records the kernel could not write for want of room
//!   are counted (PERF_RECORD_LOST) and said, never taken for fewer failures.
//! - Every descriptor belongs to a [`Window`]: dropped on any path (an error, a panic unwinding),
//!   it stops the thread, which closes them all. A process killed by a signal loses them with it:
//!   perf events and a detached mount live only as long as their descriptors.
//! - A window is the host's: [`Traced::of`] splits what it saw by network namespace (one window
//!   for every namespace of `audit --all-netns --sample`), and [`Window::take`] by interval (one
//!   window for the whole of `twtune watch`, taken at each read).
//! - What cannot be armed is one line, never an error: the caller reports it as the reason the
//!   window was not traced (`refused` names the capability or setting behind a refusal).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perf_event_open::config::{Cpu, Opts, Proc, SampleOn};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;
use perf_event_open::sample::Sampler;
use perf_event_open::sample::record::Record as PerfRecord;

use crate::inspect::netns;
use crate::model::closes::Closes;
use crate::model::connect::BucketKey;
use crate::model::failures::{
    Call, EADDRINUSE, EADDRNOTAVAIL, Event, ExitLayout, MAX_FORMAT_BYTES, Process, Record, StateLayout,
    TCP_ESTABLISHED, TCP_SYN_SENT, Tally, Tracing,
};
use crate::model::histogram::BucketCloses;

/// How often the ring buffers are emptied.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// Each ring buffer holds 2^this pages (256 KiB with 4 KiB pages): some 4 000 records of a failed
/// call, about 80 000 a second per CPU at [`DRAIN_EVERY`].
const RING_PAGES_EXP: u8 = 6;
/// The state changes' buffers are 2^this times larger (1 MiB a CPU): three or four records a
/// connection, some 8 000 records of 120 bytes, 160 000 a second per CPU at [`DRAIN_EVERY`].
const STATE_RING_FACTOR_EXP: u8 = 2;
/// Processes looked up in one window; callers past this many are counted as unattributed.
const MAX_PROCESSES: usize = 65_536;
/// tracefs's `f_type` (`TRACEFS_MAGIC`).
const TRACEFS_MAGIC: i64 = 0x7472_6163;
/// Where tracefs is mounted, when it is.
const TRACEFS_PATHS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What a tracepoint's records say, once decoded.
#[derive(Clone, Copy)]
enum Decoder {
    Exit(Call, ExitLayout),
    State(StateLayout),
}

/// One tracepoint to arm: its place in tracefs, its in-kernel filter, and how to decode it.
struct Wanted {
    path: &'static str,
    filter: String,
    call: Option<Call>,
}

fn wanted() -> [Wanted; 3] {
    [
        Wanted {
            path: "events/syscalls/sys_exit_connect",
            filter: format!("ret == {EADDRNOTAVAIL}"),
            call: Some(Call::Connect),
        },
        Wanted {
            path: "events/syscalls/sys_exit_bind",
            filter: format!("ret == {EADDRINUSE}"),
            call: Some(Call::Bind),
        },
        Wanted {
            path: "events/sock/inet_sock_set_state",
            filter: format!(
                "protocol == 6 && (oldstate == {TCP_ESTABLISHED} || oldstate == {TCP_SYN_SENT} || newstate == {TCP_SYN_SENT})"
            ),
            call: None,
        },
    ]
}

/// An armed perf event and its ring buffer.
struct Armed {
    decoder: Decoder,
    sampler: Sampler,
    /// Counts every record that passed the filter, written or lost.
    counter: Counter,
}

/// The tracepoints armed for a window, drained by a thread until [`Window::finish`] or drop.
pub(crate) struct Window {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// What the thread gathered since the last [`Window::take`].
    drained: Arc<Mutex<Drained>>,
    /// When the window, or its current interval, began.
    since: Instant,
    /// Tracepoints that could not be armed (the window counts without them), and why.
    unarmed: Vec<String>,
}

/// What the thread gathered.
#[derive(Default)]
struct Drained {
    tally: Tally,
    closes: Closes,
    /// Each caller as looked up while it lived; `None`: it had ended.
    processes: HashMap<u32, Option<Process>>,
}

/// What a window, or an interval of one, traced on the whole host: split by network namespace
/// with [`Traced::of`].
pub(crate) struct Traced {
    tally: Tally,
    closes: Closes,
    processes: HashMap<u32, Process>,
    seconds: f64,
    unarmed: Vec<String>,
    /// Why nothing can be said, where the tracing thread failed.
    failed: Option<String>,
}

impl Traced {
    /// The failures of the processes of network namespace `netns`, and the connections they
    /// opened that ended, per bucket. A process is placed by the namespace it was in when its
    /// first record was read.
    pub(crate) fn of(&self, netns: u64) -> (Tracing, BTreeMap<BucketKey, BucketCloses>) {
        if let Some(reason) = &self.failed {
            return (Tracing::Untraced { reason: reason.clone() }, BTreeMap::new());
        }
        let mut failures = self.tally.finish(&self.processes, netns, self.seconds);
        let (closes, dropped) = self.closes.finish(&self.processes, netns, self.seconds);
        failures.lifetimes_dropped = dropped;
        failures.unarmed.clone_from(&self.unarmed);
        (Tracing::Tracepoints(failures), closes)
    }
}

/// Arms the tracepoints, or says why they cannot be.
pub(crate) fn arm() -> Result<Window, String> {
    arm_with(RING_PAGES_EXP, DRAIN_EVERY)
}

/// [`arm`] with ring buffers of 2^`ring_exp` pages, drained every `drain_every`.
fn arm_with(ring_exp: u8, drain_every: Duration) -> Result<Window, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root: tracing the host's calls needs root (or CAP_PERFMON and a readable tracefs)".into());
    }
    let tracefs = open_tracefs()?;
    let cpus = online_cpus()?;
    let (armed, unarmed) = arm_all(&tracefs, &cpus, ring_exp)?;
    drop(tracefs);
    let stop = Arc::new(AtomicBool::new(false));
    let drained = Arc::new(Mutex::new(Drained::default()));
    let (flag, shared) = (Arc::clone(&stop), Arc::clone(&drained));
    let thread = std::thread::Builder::new()
        .name("twtune-trace".into())
        .spawn(move || drain_until(&armed, &flag, drain_every, &shared))
        .map_err(|e| format!("could not start the tracing thread: {e}"))?;
    Ok(Window { stop, thread: Some(thread), drained, since: Instant::now(), unarmed })
}

/// Opens every tracepoint of [`wanted`] beneath `tracefs` on every CPU; returns them and a line
/// for each that could not be armed but leaves something to count.
fn arm_all(tracefs: &OwnedFd, cpus: &[u32], ring_exp: u8) -> Result<(Vec<Armed>, Vec<String>), String> {
    let mut armed = Vec::new();
    let mut unarmed = Vec::new();
    for want in wanted() {
        match arm_one(tracefs, &want, cpus, ring_exp) {
            Ok(mut events) => armed.append(&mut events),
            // Without the syscalls' exits nothing is counted; without the state change, only the
            // destinations are missing.
            Err(why) if want.call.is_some() => return Err(why),
            Err(why) => unarmed.push(format!(
                "{why}: the destinations of failed connect() and the connections' lifetimes are not known"
            )),
        }
    }
    Ok((armed, unarmed))
}

impl Window {
    /// What was traced since the window began or the last take; the window goes on
    /// (`twtune watch` takes one interval at each read). Connections still open, and port searches
    /// whose connect() has not returned, stay followed into the next.
    pub(crate) fn take(&mut self) -> Traced {
        let seconds = self.since.elapsed().as_secs_f64();
        self.since = Instant::now();
        if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
            return self.failed("the tracing thread ended");
        }
        let Ok(mut drained) = self.drained.lock() else { return self.failed("the tracing thread failed") };
        let processes = std::mem::take(&mut drained.processes);
        Traced {
            tally: drained.tally.take(),
            closes: drained.closes.take(),
            processes: processes.into_iter().filter_map(|(pid, p)| Some((pid, p?))).collect(),
            seconds,
            unarmed: self.unarmed.clone(),
            failed: None,
        }
    }

    /// Disarms the tracepoints and returns what the window (or its last interval) traced.
    pub(crate) fn finish(mut self) -> Traced {
        let joined = self.stop_thread();
        let seconds = self.since.elapsed().as_secs_f64();
        let drained = self.drained.lock().ok().filter(|_| joined).map(|mut d| std::mem::take(&mut *d));
        let Some(drained) = drained else { return self.failed("the tracing thread failed") };
        Traced {
            tally: drained.tally,
            closes: drained.closes,
            processes: drained.processes.into_iter().filter_map(|(pid, p)| Some((pid, p?))).collect(),
            seconds,
            unarmed: std::mem::take(&mut self.unarmed),
            failed: None,
        }
    }

    fn failed(&self, reason: &str) -> Traced {
        Traced {
            tally: Tally::default(),
            closes: Closes::default(),
            processes: HashMap::new(),
            seconds: 0.0,
            unarmed: Vec::new(),
            failed: Some(reason.into()),
        }
    }

    /// Stops the thread, which disarms and closes the events; whether it ended well.
    fn stop_thread(&mut self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().is_some_and(|thread| thread.join().is_ok())
    }
}

impl Drop for Window {
    /// Whatever ends the window (an error, a panic unwinding), the events are closed here.
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Drains `armed` every `every` into `shared` until `stop`, then disables the events and drains
/// them once more; they close when the caller drops them, after this returns.
///
/// What the kernel could not write is counted where it is missed: a failed call's record in the
/// failure counts, a state change in the lifetimes (it misses one connection at most). The state
/// changes of every TCP connection on the host are many more than the failed calls, and a burst of
/// them must not make the failure counts look uncertain.
fn drain_until(armed: &[Armed], stop: &AtomicBool, every: Duration, shared: &Mutex<Drained>) {
    let mut batch = Vec::new();
    // Per kind of event (failed calls, state changes): received, reported lost, accounted.
    let mut kinds = [Losses::default(); 2];
    let kind = |event: &Armed| usize::from(matches!(event.decoder, Decoder::State(_)));
    loop {
        let last = stop.load(Ordering::Relaxed);
        if last {
            armed.iter().for_each(|a| drop(a.counter.disable()));
        }
        // Counted before the buffers are read: what the counters count by now was written (and is
        // read below) or lost, so the difference never counts a record that is merely late.
        let mut counted = [0u64; 2];
        for event in armed {
            counted[kind(event)] += event.counter.stat().map_or(0, |s| s.count);
        }
        for event in armed {
            let (samples, lost) = drain_one(event, &mut batch);
            kinds[kind(event)].received += samples;
            kinds[kind(event)].reported += lost;
        }
        // Records of one thread can sit in two CPUs' buffers when it moved: time orders them.
        batch.sort_by_key(|r: &Record| r.time_ns);
        let [calls, states] = [0, 1].map(|k| kinds[k].newly_lost(counted[k]));
        {
            let Ok(mut drained) = shared.lock() else { return };
            for record in batch.drain(..) {
                look_up(&mut drained.processes, record.pid);
                drained.tally.add(&record);
                drained.closes.add(&record);
            }
            drained.tally.lost(calls);
            drained.closes.lost(states);
        }
        if last {
            return;
        }
        // Short sleeps, so that a window ends without waiting a whole period.
        let slept = Instant::now();
        while slept.elapsed() < every && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(every.min(DRAIN_EVERY));
        }
    }
}

/// The records of one kind of event drained so far, and those lost.
#[derive(Clone, Copy, Default)]
struct Losses {
    received: u64,
    reported: u64,
    /// Lost records already counted.
    accounted: u64,
}

impl Losses {
    /// The records lost since the last call, given what the events have counted by now.
    fn newly_lost(&mut self, counted: u64) -> u64 {
        let lost = lost(counted, self.received, self.reported);
        let new = lost.saturating_sub(self.accounted);
        self.accounted = self.accounted.max(lost);
        new
    }
}

/// The records the kernel could not write. Each event counts what passed its filter, written or
/// not; a PERF_RECORD_LOST says so only once the buffer has room again, which at the end of a
/// window it may never have: the counts are the measure, the records the floor.
fn lost(counted: u64, received: u64, reported: u64) -> u64 {
    counted.saturating_sub(received).max(reported)
}

/// Takes every record out of `event`'s buffer: the samples into `batch`; returns how many samples
/// there were and how many records the kernel said it lost.
fn drain_one(event: &Armed, batch: &mut Vec<Record>) -> (u64, u64) {
    let (mut samples, mut lost) = (0, 0);
    let Some(records) = event.sampler.iter() else { return (0, 0) };
    for (_, record) in records {
        match record {
            PerfRecord::Sample(sample) => {
                samples += 1;
                let (Some(task), Some(raw)) = (&sample.record_id.task, &sample.raw) else { continue };
                let decoded = match event.decoder {
                    Decoder::Exit(call, layout) => layout.ret(raw).map(|ret| Event::Returned { call, ret }),
                    Decoder::State(layout) => layout.decode(raw).map(Event::State),
                };
                if let Some(event) = decoded {
                    let time_ns = sample.record_id.time.unwrap_or_default();
                    batch.push(Record { pid: task.pid, tid: task.tid, time_ns, event });
                }
            }
            PerfRecord::LostRecords(record) => lost += record.lost_records,
            _ => {}
        }
    }
    (samples, lost)
}

/// Looks up a caller the first time it is met, while it (probably) still lives.
fn look_up(processes: &mut HashMap<u32, Option<Process>>, pid: u32) {
    if processes.contains_key(&pid) || processes.len() >= MAX_PROCESSES {
        return;
    }
    let netns = rustix::fs::stat(format!("/proc/{pid}/ns/net").as_str()).ok().map(|s| s.st_ino);
    let process = netns.map(|netns| Process {
        netns,
        command: netns::command(pid).unwrap_or_else(|| "?".into()),
        container: netns::container_of(pid),
    });
    processes.insert(pid, process);
}

/// Opens one tracepoint on every CPU, filtered and with a ring buffer, and enables it.
fn arm_one(tracefs: &OwnedFd, want: &Wanted, cpus: &[u32], ring_exp: u8) -> Result<Vec<Armed>, String> {
    let read = |name: &str| -> Result<String, String> {
        let path = Path::new(want.path).join(name);
        let bytes = crate::files::read_in_root(tracefs, &path, MAX_FORMAT_BYTES as u64).map_err(|e| {
            let event = want.path.trim_start_matches("events/").replace('/', ":");
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("the kernel has no tracepoint {event}")
            } else {
                format!("tracefs {}: {e}", path.display())
            }
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let id: u64 = read("id")?.trim().parse().map_err(|_| format!("tracefs {}/id is not a number", want.path))?;
    let format = read("format")?;
    let decoder = match want.call {
        Some(call) => Decoder::Exit(call, ExitLayout::from_format(&format).map_err(|e| layout_error(want, &e))?),
        None => Decoder::State(StateLayout::from_format(&format).map_err(|e| layout_error(want, &e))?),
    };
    let filter = std::ffi::CString::new(want.filter.as_str()).map_err(|_| "a filter with a NUL".to_string())?;
    let ring_exp = if want.call.is_none() { ring_exp + STATE_RING_FACTOR_EXP } else { ring_exp };
    let mut armed = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let counter =
            Counter::new(Tracepoint { id }, (Proc::ALL, Cpu(cpu)), options()).map_err(|e| open_error(want, &e))?;
        counter.with_ftrace_filter(&filter).map_err(|e| format!("the filter {:?} was refused: {e}", want.filter))?;
        let sampler = counter.sampler(ring_exp).map_err(|e| format!("perf ring buffer: {e}"))?;
        counter.enable().map_err(|e| open_error(want, &e))?;
        armed.push(Armed { decoder, sampler, counter });
    }
    Ok(armed)
}

fn layout_error(want: &Wanted, problem: &str) -> String {
    format!("tracefs {}/format: {problem}", want.path)
}

/// Every record, with its raw data, its caller and its time.
fn options() -> Opts {
    let mut opts = Opts { sample_on: SampleOn::Count(1), ..Opts::default() };
    opts.sample_format.raw = true;
    opts.record_id_format.task = true;
    opts.record_id_format.time = true;
    opts
}

fn open_error(want: &Wanted, e: &std::io::Error) -> String {
    let event = want.path.trim_start_matches("events/").replace('/', ":");
    let why = match e.raw_os_error() {
        Some(1 | 13) => {
            let paranoid = read_small("/proc/sys/kernel/perf_event_paranoid").and_then(|t| t.trim().parse().ok());
            let capable = rustix::thread::capabilities(None).ok().map(|c| {
                use rustix::thread::CapabilitySet;
                c.effective.intersects(CapabilitySet::PERFMON | CapabilitySet::SYS_ADMIN)
            });
            refused(paranoid, capable, lockdown().as_deref())
        }
        Some(2 | 19) => "the kernel cannot trace it (no such event)".into(),
        _ => e.to_string(),
    };
    format!("perf_event_open of {event}: {why}")
}

/// Why the kernel refused to open a system-wide tracepoint, from what decides it: whether twtune
/// holds CAP_PERFMON or CAP_SYS_ADMIN (`capable`), `kernel.perf_event_paranoid` (read, never
/// written: it is the host's), and the lockdown mode. Each `None` where it could not be read.
fn refused(paranoid: Option<i64>, capable: Option<bool>, lockdown: Option<&str>) -> String {
    let setting = paranoid.map(|p| format!("kernel.perf_event_paranoid is {p}")).unwrap_or_default();
    let mut why = match (capable, paranoid) {
        (Some(false), Some(p)) if p > -1 => format!(
            "refused: twtune has neither CAP_PERFMON nor CAP_SYS_ADMIN, which tracing every process needs while \
             {setting} (above -1)"
        ),
        (Some(false), _) => "refused: twtune has neither CAP_PERFMON nor CAP_SYS_ADMIN".to_string(),
        (_, Some(p)) if p > 2 => {
            format!("refused: {setting}, which this kernel's patch takes to refuse perf events to all but the capable")
        }
        (_, Some(_)) => format!("refused ({setting})"),
        (_, None) => "refused".to_string(),
    };
    if let Some(mode) = lockdown {
        why.push_str(&format!("; the kernel is locked down ({mode}), which can refuse tracing to root"));
    }
    why
}

/// A small kernel file (a setting, a mode line), at most 4 KiB of it.
fn read_small(path: &str) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    crate::files::read_bounded(file, 4096).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The kernel's lockdown mode, where it is not `none` (and the file exists: a kernel without the
/// lockdown LSM has none).
fn lockdown() -> Option<String> {
    parse_lockdown(&read_small("/sys/kernel/security/lockdown")?)
}

/// The mode in brackets of `none [integrity] confidentiality`, unless it is `none`.
fn parse_lockdown(text: &str) -> Option<String> {
    let mode = text.split_whitespace().find(|w| w.starts_with('[') && w.ends_with(']'))?;
    let mode = mode.trim_matches(['[', ']']);
    (mode != "none" && !mode.is_empty()).then(|| mode.to_string())
}

/// A directory of tracefs: a mounted one, or a private instance.
fn open_tracefs() -> Result<OwnedFd, String> {
    for path in TRACEFS_PATHS {
        if let Ok(fd) = crate::files::open_root(Path::new(path))
            && is_tracefs(&fd)
        {
            return Ok(fd);
        }
    }
    private_tracefs().map_err(|e| {
        let locked = lockdown().map(|l| format!(" (lockdown {l})")).unwrap_or_default();
        format!("tracefs is not mounted and a private instance could not be made{locked}: {e}")
    })
}

#[allow(clippy::useless_conversion, reason = "f_type is i64 here and another type on other architectures")]
fn is_tracefs(fd: &OwnedFd) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|s| i64::from(s.f_type) == TRACEFS_MAGIC)
}

/// A tracefs instance of our own, attached nowhere.
fn private_tracefs() -> std::io::Result<OwnedFd> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    let context = rustix::mount::fsopen("tracefs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_create(&context)?;
    let attributes = MountAttrFlags::MOUNT_ATTR_RDONLY
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let mount = rustix::mount::fsmount(&context, FsMountFlags::FSMOUNT_CLOEXEC, attributes)?;
    if !is_tracefs(&mount) {
        return Err(std::io::Error::other("the new mount is not tracefs"));
    }
    Ok(mount)
}

/// The CPUs online (`/sys/devices/system/cpu/online`: `0-3,6`).
fn online_cpus() -> Result<Vec<u32>, String> {
    let text =
        read_small("/sys/devices/system/cpu/online").ok_or("/sys/devices/system/cpu/online could not be read")?;
    crate::model::failures::parse_cpu_list(&text)
        .ok_or_else(|| format!("/sys/devices/system/cpu/online: {:?} is not a CPU list", text.trim()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Held by each test that opens perf events, since the one below counts the process's.
    pub(crate) static PERF_EVENTS: Mutex<()> = Mutex::new(());

    /// Holds [`PERF_EVENTS`] (whatever a test that held it before did), where this test can
    /// trace: as root, which the test suite is (under CI a missing capability fails the test);
    /// `None` otherwise, and the test is skipped.
    pub(crate) fn tracing_alone() -> Option<std::sync::MutexGuard<'static, ()>> {
        if !rustix::process::geteuid().is_root() && std::env::var("CI").as_deref() != Ok("true") {
            eprintln!("SKIPPED: tracing needs root");
            return None;
        }
        Some(PERF_EVENTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The perf events this process holds open.
    pub(crate) fn perf_events() -> usize {
        let fds = std::fs::read_dir("/proc/self/fd").expect("own fds");
        fds.flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:[perf_event]"))
            .count()
    }

    /// Fails `n` bind() calls with EADDRINUSE, in a network namespace of a thread of its own (the
    /// port is taken by a listener there first).
    fn failing_binds(n: u32) {
        std::thread::spawn(move || {
            #[allow(deprecated, reason = "unshare_unsafe is unsafe code, which the crate forbids; NEWNET is safe")]
            rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET).expect("a network namespace");
            let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("listen");
            let address = taken.local_addr().expect("address");
            for _ in 0..n {
                let err = std::net::TcpListener::bind(address).expect_err("the port is taken");
                assert_eq!(err.raw_os_error(), Some(98));
            }
        })
        .join()
        .expect("binds")
    }

    #[test]
    fn the_lockdown_mode_is_the_one_in_brackets_unless_none() {
        assert_eq!(parse_lockdown("[none] integrity confidentiality\n"), None);
        assert_eq!(parse_lockdown("none [integrity] confidentiality\n").as_deref(), Some("integrity"));
        assert_eq!(parse_lockdown("none integrity [confidentiality]").as_deref(), Some("confidentiality"));
        for garbage in ["", "none integrity", "[]", "[none"] {
            assert_eq!(parse_lockdown(garbage), None, "{garbage:?}");
        }
    }

    /// The line a refusal becomes, from what decides it; perf_event_paranoid is only ever read.
    #[test]
    fn a_refusal_says_which_capability_or_setting_refused() {
        let without = refused(Some(2), Some(false), None);
        assert_eq!(
            without,
            "refused: twtune has neither CAP_PERFMON nor CAP_SYS_ADMIN, which tracing every process needs while \
             kernel.perf_event_paranoid is 2 (above -1)"
        );
        assert_eq!(refused(Some(-1), Some(false), None), "refused: twtune has neither CAP_PERFMON nor CAP_SYS_ADMIN");
        let patched = refused(Some(4), Some(true), None);
        assert!(patched.starts_with("refused: kernel.perf_event_paranoid is 4, which"), "{patched}");
        assert_eq!(refused(Some(1), Some(true), None), "refused (kernel.perf_event_paranoid is 1)");
        assert_eq!(refused(None, None, None), "refused");
        let locked = refused(Some(2), Some(true), Some("confidentiality"));
        assert_eq!(
            locked,
            "refused (kernel.perf_event_paranoid is 2); the kernel is locked down (confidentiality), which can \
             refuse tracing to root"
        );
    }

    /// A tracefs without the syscalls' exit events (a kernel built without CONFIG_FTRACE_SYSCALLS):
    /// one line saying which, and nothing armed. Needs no privilege: the ids are looked up first.
    #[test]
    fn a_kernel_without_the_syscall_events_is_one_line() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir_all(dir.path().join("events/sock/inet_sock_set_state")).expect("mkdir");
        let tracefs = crate::files::open_root(dir.path()).expect("open");
        let Err(why) = arm_all(&tracefs, &[0], 0) else { panic!("armed without the events") };
        assert_eq!(why, "the kernel has no tracepoint syscalls:sys_exit_connect");
    }

    /// A tracefs with the syscalls' exits and not the state change (copied from the kernel's own,
    /// into a directory twtune reads as it reads tracefs): the failures are still counted, and
    /// one line says what is not measured.
    #[test]
    fn a_kernel_without_the_state_change_counts_failures_and_says_what_it_misses() {
        let Some(_alone) = tracing_alone() else { return };
        let kernel = open_tracefs().expect("tracefs");
        let dir = tempfile::tempdir().expect("temporary directory");
        for event in ["syscalls/sys_exit_connect", "syscalls/sys_exit_bind"] {
            let to = dir.path().join("events").join(event);
            std::fs::create_dir_all(&to).expect("mkdir");
            for file in ["id", "format"] {
                let from = Path::new("events").join(event).join(file);
                let bytes = crate::files::read_in_root(&kernel, &from, 1 << 16).expect("the kernel's tracefs");
                std::fs::write(to.join(file), bytes).expect("copy");
            }
        }
        let tracefs = crate::files::open_root(dir.path()).expect("open");
        let (armed, unarmed) = arm_all(&tracefs, &[0], 0).expect("the syscalls' exits are armed");
        assert_eq!(armed.len(), 2, "two events on CPU 0");
        assert_eq!(
            unarmed,
            ["the kernel has no tracepoint sock:inet_sock_set_state: the destinations of failed connect() and the \
              connections' lifetimes are not known"]
        );
    }

    /// One test for all, since it counts the process's descriptors: tracing needs root, which the
    /// test suite has (under CI a missing capability fails it).
    #[test]
    fn events_close_on_every_path_and_lost_records_are_counted() {
        let Some(_alone) = tracing_alone() else { return };
        let before = perf_events();
        let window = arm().expect("armed");
        assert!(perf_events() > before);
        drop(window);
        assert_eq!(perf_events(), before, "dropped: every event closed");

        let unwound = std::panic::catch_unwind(|| {
            let _window = arm().expect("armed");
            panic!("an error in the window");
        });
        assert!(unwound.is_err());
        assert_eq!(perf_events(), before, "a panic unwinding closes them too");

        // One page per buffer, drained once a minute: most of 20 000 records cannot be written.
        let window = arm_with(0, Duration::from_secs(60)).expect("armed");
        failing_binds(20_000);
        // The process is looked up by its main thread's namespace.
        let own_namespace = rustix::fs::stat("/proc/self/ns/net").expect("namespace").st_ino;
        let (Tracing::Tracepoints(f), _) = window.finish().of(own_namespace) else { panic!("traced") };
        let own = f.processes.iter().find(|p| p.pid == std::process::id()).map_or(0, |p| p.bind);
        assert!(f.lost > 0 && own < 20_000, "{f:?}");
        assert!(own + f.lost >= 20_000, "what was lost is counted: {own} + {} lost", f.lost);

        // State changes lost are the lifetimes' to count, not the failures': 2 000 connections
        // (some 5 records each, host-wide) overflow four pages, and no failed call is said lost.
        let window = arm_with(0, Duration::from_secs(60)).expect("armed");
        loopback_connections(2_000);
        let (Tracing::Tracepoints(f), _) = window.finish().of(own_namespace) else { panic!("traced") };
        assert!(f.lifetimes_dropped > 0 && f.lost == 0, "{f:?}");
        assert_eq!(perf_events(), before);
    }

    /// Makes and closes `n` loopback connections, in a network namespace of a thread of its own.
    fn loopback_connections(n: u32) {
        std::thread::spawn(move || {
            #[allow(deprecated, reason = "unshare_unsafe is unsafe code, which the crate forbids; NEWNET is safe")]
            rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET).expect("a network namespace");
            // A child forked by this thread is in its namespace.
            let up = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("run ip");
            assert!(up.success(), "ip link set lo up: {up}");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            let address = listener.local_addr().expect("address");
            for _ in 0..n {
                let client = std::net::TcpStream::connect(address).expect("connect");
                drop(listener.accept().expect("accept"));
                drop(client);
            }
        })
        .join()
        .expect("connections")
    }
}
