//! What a source-NAT pool admits (docs/port-model.md, "What the NAT admits"): the NAT's port
//! search replayed on a pool of `usable` ports of which `held` are taken by live flows and
//! `closed` by TCP entries in TIME_WAIT or CLOSE, for a client that waits through its SYN
//! retransmissions, connecting until one connect() fails.
//!
//! The search is `nf_nat_l4proto_unique_tuple` (net/netfilter/nf_nat_core.c): rounds of
//! `min(range, 128)` probes (`NF_NAT_MAX_ATTEMPTS`) of consecutive ports from a random 16-bit
//! offset, taken modulo the range; a round that finds nothing is followed by one of half as many
//! probes from a new offset, unless the round covered the range or had fewer than 16 probes
//! (128, 64, 32, 16, 8: 248 probes at most). Since Linux 6.5 ("netfilter: snat: evict closing tcp
//! entries on reply tuple collision"), the last `NF_NAT_HARDER_THRESH` (32) probes of each round
//! of a new TCP flow (`nf_nat_used_tuple_harder`) may evict the source-NAT entry they collide with
//! when it is in TIME_WAIT or CLOSE and the new flow's sequence number (`td_end` of its SYN) is
//! after the old entry's (`nf_seq_has_advanced`). Conntrack does not export `td_end`, and two
//! flows from different source ports start from unrelated sequence numbers, so each old entry
//! holds a random 32-bit `td_end` here, and each new flow a random sequence number, compared as
//! the kernel compares them. A retransmitted SYN keeps its sequence number and searches anew from
//! new offsets: what its first SYN missed, a later one may find.
//!
//! Where the entries sit in the range is not known (it would take a bitmap per bucket), so they
//! are placed as the NAT's own search places them: the closed entries (the older flows) first,
//! then the live ones, each at the first free port from a random offset, in clusters as the
//! kernel leaves them (placed at random instead, the replays admitted 2 % more than the kernel, and
//! said a first SYN is dropped less often than it is). The answer is the mean of a number of replays with a fixed seed: the same
//! pool gives the same answer. A replay costs about `usable × ln(usable)` probes, so the number of
//! replays falls with the pool's size, to 2 for a pool of 64 512 ports; memory is a byte and a
//! `u32` per port of one pool, whatever the conntrack table holds. Pure.

use serde::Serialize;

use crate::sysctl::KernelVersion;

/// The release whose NAT evicts TIME_WAIT entries of the same tuple for new TCP flows.
pub(crate) const EVICTING_KERNEL: KernelVersion = KernelVersion::new(6, 5);
/// The release from which a connect()'s first four SYN retransmissions come 1 s apart
/// (`tcp_syn_linear_timeouts`, default 4).
const LINEAR_SYN_KERNEL: KernelVersion = KernelVersion::new(6, 5);
/// `NF_NAT_MAX_ATTEMPTS` and `NF_NAT_HARDER_THRESH`.
const MAX_ATTEMPTS: u32 = 128;
const HARDER_THRESH: u32 = 32;
/// How long the client waits in connect(): the definition of a patient client.
pub(crate) const PATIENT_SECONDS: f64 = 7.5;
/// Probes the replays of one pool may make in all (a few milliseconds of work); a large pool,
/// whose count varies little from replay to replay, gets at least two.
const PROBE_BUDGET: u64 = 1 << 23;
const MIN_REPLAYS: u64 = 2;
const MAX_REPLAYS: u64 = 256;

/// A pool as conntrack shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pool {
    pub usable: u32,
    /// Live entries: they hold their port.
    pub held: u32,
    /// TCP entries in TIME_WAIT or CLOSE.
    pub closed: u32,
    /// TCP: only a TCP flow may evict.
    pub tcp: bool,
}

impl Pool {
    pub(crate) fn free(&self) -> u32 {
        self.usable.saturating_sub(self.held).saturating_sub(self.closed)
    }
}

/// What the NAT admits to a patient client.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Admission {
    /// New flows admitted before the first connect() that fails however long it waits (the mean
    /// of the replays, rounded).
    pub admitted: u32,
    /// Of those, the flows that got a port by evicting a TIME_WAIT or CLOSE entry.
    pub evicted: u32,
    /// Of the flows admitted when no port was free, the share whose first SYN the NAT dropped (a
    /// connect() of a second or more), in %; `None` where no flow needed to evict.
    pub first_syn_dropped_pct: Option<f64>,
    /// SYNs the patient client sends in [`PATIENT_SECONDS`].
    pub syns: u32,
    /// Whether this kernel's NAT evicts at all.
    pub evicts: bool,
}

/// The SYNs a connect() sends in [`PATIENT_SECONDS`] on `kernel`'s default schedule (the
/// client's kernel is not known; the NAT's is taken): 0, 1, 2, 3, 4, 5 and 7 s with the linear
/// timeouts of 6.5 and later; 0, 1, 3 and 7 s before.
pub(crate) fn patient_syns(kernel: Option<KernelVersion>) -> u32 {
    if kernel.is_some_and(|k| k >= LINEAR_SYN_KERNEL) { 7 } else { 4 }
}

/// What `pool` admits on `kernel` (`None`: unknown, judged by the older rule, which evicts nothing).
pub(crate) fn admission(pool: Pool, kernel: Option<KernelVersion>) -> Admission {
    let evicts = pool.tcp && kernel.is_some_and(|k| k >= EVICTING_KERNEL);
    let syns = patient_syns(kernel);
    let usable = pool.usable.min(1 << 16);
    let held = pool.held.min(usable);
    let closed = pool.closed.min(usable - held);
    let (free, none) =
        (usable - held - closed, Admission { admitted: 0, evicted: 0, first_syn_dropped_pct: None, syns, evicts });
    // Nothing to search, or a range searched whole with nothing to evict: the free ports, exactly.
    if usable == 0 || ((!evicts || closed == 0) && usable <= MAX_ATTEMPTS) {
        return Admission { admitted: free, ..none };
    }
    let cost = u64::from(usable) * u64::from(32 - usable.leading_zeros()) * 4;
    let replays = (PROBE_BUDGET / cost.max(1)).clamp(MIN_REPLAYS, MAX_REPLAYS);
    let mut rng = Rng(0x7477_7475_6e65 ^ u64::from(usable) << 32 ^ u64::from(held) << 16 ^ u64::from(closed));
    let mut total = Tally::default();
    let mut pool = Ring::new(usable, held, closed);
    for _ in 0..replays {
        pool.place(held, closed, &mut rng);
        total.add(pool.replay(&mut rng, evicts, syns));
    }
    let mean = |n: u64| ((n as f64) / replays as f64).round() as u32;
    Admission {
        admitted: mean(total.admitted),
        evicted: mean(total.evicted),
        first_syn_dropped_pct: (total.needed > 0)
            .then(|| (total.first_dropped as f64 * 1000.0 / total.needed as f64).round() / 10.0),
        ..none
    }
}

/// Counts of one replay, or of all.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    admitted: u64,
    evicted: u64,
    /// Flows admitted when no port was free, and those of them whose first SYN was dropped.
    needed: u64,
    first_dropped: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.evicted += other.evicted;
        self.needed += other.needed;
        self.first_dropped += other.first_dropped;
    }
}

const FREE: u8 = 0;
const HELD: u8 = 1;
const CLOSED: u8 = 2;

/// One pool's ports, by offset in the range: who holds each, and a closed entry's `td_end`.
struct Ring {
    state: Vec<u8>,
    end: Vec<u32>,
    free: u32,
}

impl Ring {
    fn new(usable: u32, held: u32, closed: u32) -> Ring {
        let n = usable as usize;
        Ring { state: vec![FREE; n], end: vec![0; n], free: usable - held - closed }
    }

    /// The entries where the NAT's own search would have put them: the closed ones first (they
    /// are the older flows), then the live ones, each at the first free port of a round from a
    /// random offset (a full round falls back to the next free port after it). A port search fills
    /// runs of neighbours, so entries sit in clusters, which a Fisher-Yates shuffle would not
    /// give: the eviction probes, consecutive ports, then meet fewer closed entries than at random.
    fn place(&mut self, held: u32, closed: u32, rng: &mut Rng) {
        self.state.iter_mut().for_each(|s| *s = FREE);
        self.free = self.state.len() as u32;
        for kind in std::iter::repeat_n(CLOSED, closed as usize).chain(std::iter::repeat_n(HELD, held as usize)) {
            let port = self.first_free(rng);
            self.state[port] = kind;
            self.free -= 1;
        }
        self.end.iter_mut().for_each(|e| *e = rng.next() as u32);
    }

    /// The port a new flow takes with ports free and nothing to evict: the first free one of its
    /// search, tried again as a client retransmits its SYN; where all of a patient client's SYNs
    /// miss (a nearly full pool larger than a round), the next free one after the last offset, so
    /// that the placement always succeeds.
    fn first_free(&mut self, rng: &mut Rng) -> usize {
        let size = self.state.len();
        let mut off = 0;
        for _ in 0..patient_syns(Some(EVICTING_KERNEL)) {
            let mut attempts = size.min(MAX_ATTEMPTS as usize);
            loop {
                off = rng.next() as u16 as usize;
                if let Some(port) = (0..attempts).map(|i| (off + i) % size).find(|&p| self.state[p] == FREE) {
                    return port;
                }
                if attempts >= size || attempts < 16 {
                    break;
                }
                attempts /= 2;
            }
        }
        (0..size).map(|i| (off + i) % size).find(|&p| self.state[p] == FREE).expect("a free port")
    }

    /// New flows, each a patient connect(), until one fails.
    fn replay(&mut self, rng: &mut Rng, evicts: bool, syns: u32) -> Tally {
        let mut tally = Tally::default();
        loop {
            let needed = self.free == 0;
            let seq = rng.next() as u32;
            let Some((syn, evicted)) = (0..syns).find_map(|syn| Some((syn, self.search(rng, seq, evicts)?))) else {
                return tally;
            };
            tally.admitted += 1;
            tally.evicted += u64::from(evicted);
            tally.needed += u64::from(needed);
            tally.first_dropped += u64::from(needed && syn > 0);
        }
    }

    /// One SYN's search for a port (`nf_nat_l4proto_unique_tuple`): the port taken, and whether an
    /// entry was evicted for it; `None`: the SYN is dropped.
    fn search(&mut self, rng: &mut Rng, seq: u32, evicts: bool) -> Option<bool> {
        let size = self.state.len() as u32;
        let mut attempts = size.min(MAX_ATTEMPTS);
        loop {
            let mut off = rng.next() as u16;
            // With no port free only the harder probes can succeed: the others are skipped.
            let first = if self.free == 0 { attempts.saturating_sub(HARDER_THRESH) } else { 0 };
            if self.free > 0 || evicts {
                off = off.wrapping_add(first as u16);
                for i in first..attempts {
                    let port = (u32::from(off) % size) as usize;
                    off = off.wrapping_add(1);
                    let harder = evicts && attempts - i <= HARDER_THRESH;
                    if let Some(evicted) = self.take(port, seq, harder) {
                        return Some(evicted);
                    }
                }
            }
            if attempts >= size || attempts < 16 {
                return None;
            }
            attempts /= 2;
        }
    }

    /// Port `port` for a flow of sequence number `seq`, if it is free or, in a harder probe, held
    /// by a closed entry that `seq` has passed (`nf_seq_has_advanced`).
    fn take(&mut self, port: usize, seq: u32, harder: bool) -> Option<bool> {
        match self.state[port] {
            FREE => {
                self.free -= 1;
                self.state[port] = HELD;
                Some(false)
            }
            CLOSED if harder && (seq.wrapping_sub(self.end[port]) as i32) > 0 => {
                self.state[port] = HELD;
                Some(true)
            }
            _ => None,
        }
    }
}

/// splitmix64: a fixed seed gives the same replays on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: Option<KernelVersion> = Some(KernelVersion::new(6, 18));
    const OLD: Option<KernelVersion> = Some(KernelVersion::new(6, 1));

    fn pool(usable: u32, held: u32, closed: u32) -> Pool {
        Pool { usable, held, closed, tcp: true }
    }

    #[test]
    fn a_range_searched_whole_admits_its_free_ports_exactly() {
        for kernel in [NEW, OLD, None] {
            let a = admission(pool(100, 40, 0), kernel);
            assert_eq!((a.admitted, a.evicted, a.first_syn_dropped_pct), (60, 0, None), "{kernel:?}");
        }
        assert_eq!(admission(pool(0, 0, 0), NEW).admitted, 0);
        // Counts beyond the range are cut to it.
        assert_eq!(admission(pool(100, 90, 30), OLD).admitted, 0);
    }

    #[test]
    fn before_6_5_time_wait_holds_its_port_and_from_6_5_it_is_evicted_by_chance() {
        // The older rule: the free ports, and no first SYN said to be dropped.
        let old = admission(pool(500, 300, 200), OLD);
        assert_eq!((old.admitted, old.evicted, old.evicts, old.syns), (0, 0, false, 4));
        let old = admission(pool(100, 40, 30), OLD);
        assert_eq!((old.admitted, old.first_syn_dropped_pct), (30, None));
        // The measurement on 6.18: 500 ports, 300 live, 200 closed: 187 to 200 admitted.
        let new = admission(pool(500, 300, 200), NEW);
        assert!((185..=200).contains(&new.admitted), "{new:?}");
        assert_eq!((new.evicted, new.evicts, new.syns), (new.admitted, true, 7));
        let dropped = new.first_syn_dropped_pct.expect("evictions needed");
        assert!(dropped > 0.0 && dropped < 50.0, "{new:?}");
        // UDP never evicts.
        assert_eq!(admission(Pool { tcp: false, ..pool(500, 300, 0) }, NEW).admitted, 200);
        // A mix: the free ones first, then most of the closed ones.
        let mix = admission(pool(100, 40, 40), NEW);
        assert!(mix.admitted > 20 + 30 && mix.admitted < 60, "{mix:?}");
        assert_eq!(mix.admitted - mix.evicted, 20, "{mix:?}");
    }

    #[test]
    fn a_patient_client_sends_seven_syns_in_7_5_s_from_6_5_and_four_before() {
        assert_eq!((patient_syns(NEW), patient_syns(OLD), patient_syns(None)), (7, 4, 4));
        // More SYNs, more chances: a client that sends one SYN gets fewer.
        let mut ring = Ring::new(100, 40, 40);
        let mut rng = Rng(1);
        let (mut one, mut seven) = (0, 0);
        for _ in 0..200 {
            ring.place(40, 40, &mut rng);
            one += ring.replay(&mut rng, true, 1).admitted;
            ring.place(40, 40, &mut rng);
            seven += ring.replay(&mut rng, true, 7).admitted;
        }
        assert!(one < seven, "{one} {seven}");
    }

    #[test]
    fn a_large_pool_is_searched_in_halving_rounds_and_replayed_cheaply() {
        // 64 512 ports, one free: 248 probes per SYN rarely meet it.
        let nearly = admission(Pool { usable: 64512, held: 64511, closed: 0, tcp: true }, NEW);
        assert_eq!(nearly.admitted, 0, "{nearly:?}");
        let big = admission(Pool { usable: 64512, held: 24512, closed: 30000, tcp: true }, NEW);
        assert!(big.admitted > 10000 + 27000 && big.admitted <= 40000, "{big:?}");
        assert_eq!(big.admitted - big.evicted, 10000);
        // The same pool, the same answer.
        assert_eq!(admission(Pool { usable: 64512, held: 24512, closed: 30000, tcp: true }, NEW), big);
    }
}
