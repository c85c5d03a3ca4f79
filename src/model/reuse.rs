//! TIME_WAIT reuse (docs/port-model.md, "Reuse"): when connect() may take over a TIME_WAIT tuple
//! instead of skipping its port, as `tcp_twsk_unique` decides. Pure.

use std::net::IpAddr;

use crate::model::records::{Socket, TIME_WAIT_MS, TcpState};
use crate::sysctl::keys::Settings;

/// `LOOPBACK_IFINDEX`: a socket bound to `lo` with SO_BINDTODEVICE.
const LOOPBACK_INTERFACE: u32 = 1;

/// When connect() may take over a TIME_WAIT tuple instead of skipping the port (`tcp_twsk_unique`):
/// reuse is on for the destination (`tcp_tw_reuse` 1: all; 2: a loopback address at either end, or a
/// socket bound to `lo`), the old connection carried timestamps, and it has been in TIME_WAIT
/// longer than `tcp_tw_reuse_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reuse {
    /// `tcp_tw_reuse`: 0 off, 1 every destination, 2 loopback only.
    pub mode: i64,
    /// `tcp_timestamps` is not 0. Whether the peer answered with timestamps is not in the table;
    /// loopback peers are this kernel, and `TWRecycled` in `--sample` shows whether reuse happens.
    pub timestamps: bool,
    /// `tcp_tw_reuse_delay`; 1000 ms where the kernel has no such key (about 1 s before 6.14).
    pub delay_ms: u32,
}

impl Reuse {
    /// No reuse at all (`tcp_tw_reuse=0`).
    pub(crate) const OFF: Reuse = Reuse { mode: 0, timestamps: true, delay_ms: 1000 };

    /// The policy the namespace's settings make; an absent `tcp_tw_reuse` (before 4.18 it had no
    /// value 2, before 3.x no key) is taken as off.
    pub(crate) fn from_settings(settings: &Settings) -> Reuse {
        Reuse {
            mode: settings.int("net.ipv4.tcp_tw_reuse").unwrap_or(0),
            timestamps: settings.int("net.ipv4.tcp_timestamps") != Some(0),
            // The kernel takes 1..=60000 ms (TIME_WAIT's length); a captured tree may say anything.
            delay_ms: settings
                .int("net.ipv4.tcp_tw_reuse_delay")
                .map(|ms| ms.clamp(1, i64::from(TIME_WAIT_MS)) as u32)
                .unwrap_or(Reuse::OFF.delay_ms),
        }
    }

    /// Whether reuse can ever apply between these addresses (ignoring the age of a socket).
    pub(crate) fn applies(&self, local: IpAddr, remote: IpAddr, interface: u32) -> bool {
        self.timestamps
            && match self.mode {
                1 => true,
                2 => {
                    interface == LOOPBACK_INTERFACE
                        || local.to_canonical().is_loopback()
                        || remote.to_canonical().is_loopback()
                }
                _ => false,
            }
    }

    /// Whether connect() may take over this TIME_WAIT socket now.
    pub(crate) fn can_take_over(&self, socket: &Socket) -> bool {
        socket.state == TcpState::TimeWait
            && self.applies(socket.local.ip(), socket.remote.ip(), socket.interface)
            && socket.expires_ms.is_some_and(|left| TIME_WAIT_MS.saturating_sub(left) > self.delay_ms)
    }
}
