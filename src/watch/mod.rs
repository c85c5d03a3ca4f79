//! `twtune watch`: the live view. [`state`] holds what is shown and reacts to keys, [`view`] draws
//! it, [`screen`] owns the terminal (raw mode, the alternate screen, and putting both back on every
//! way out), and [`run`] ties them to the ticks of [`crate::inspect::watch`].

pub(crate) mod keys;
pub(crate) mod screen;
pub(crate) mod state;
pub(crate) mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TryRecvError;
use std::time::SystemTime;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::BorrowedFd;

use crate::error::{Error, Result};
use crate::inspect::watch::Watch;
use crate::watch::screen::Screen;
use crate::watch::state::{Action, State};
use crate::watch::view::Palette;

/// How long the loop waits for a key before it looks for a tick again: short enough that a tick is
/// drawn at once, long enough to cost nothing.
const POLL: Timespec = Timespec { tv_sec: 0, tv_nsec: 50_000_000 };

/// Runs the view until a quit key, a termination signal or the terminal hanging up; the screen is
/// restored by the caller dropping `screen`, whatever this returns.
pub(crate) fn run(
    screen: &mut Screen,
    watch: &Watch,
    mut state: State,
    palette: Palette,
    signals: &Signals,
) -> Result<()> {
    let Signals { stop, resized, continued, .. } = signals;
    let stdin = rustix::stdio::stdin();
    let mut input = [0u8; 256];
    let mut dirty = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        dirty |= job_control(screen, signals)?;
        dirty |= next_tick(watch, &mut state)?;
        if resized.swap(false, Ordering::Relaxed) || dirty {
            let mut room = 0;
            screen.draw(|frame| room = view::draw(frame, &state, palette))?;
            state.findings_room = room;
            state.findings_scroll = state.findings_scroll.min(room);
            dirty = false;
        }
        let read = match wait_for_keys(stdin, &mut input)? {
            Input::Keys(read) => read,
            Input::Nothing => continue,
            Input::HungUp => return Ok(()),
        };
        for key in keys::parse(read) {
            match state.key(key) {
                Action::Quit => return Ok(()),
                Action::Redraw => dirty = true,
                Action::Repaint => {
                    screen.clear()?;
                    dirty = true;
                }
                Action::Suspend => {
                    screen.suspend(stop)?;
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    continued.store(false, Ordering::Relaxed);
                    dirty = true;
                }
                Action::Nothing => {}
            }
        }
    }
}

/// Suspends on SIGTSTP and clears the screen on SIGCONT; returns whether the view needs drawing.
fn job_control(screen: &mut Screen, signals: &Signals) -> Result<bool> {
    let mut redraw = false;
    if signals.suspend.swap(false, Ordering::Relaxed) {
        screen.suspend(&signals.stop)?;
        redraw = true;
    }
    // Continued after a stop twtune did not ask for (SIGSTOP): the terminal may hold anything.
    if signals.continued.swap(false, Ordering::Relaxed) {
        screen.clear()?;
        redraw = true;
    }
    Ok(redraw)
}

/// Takes the next tick into `state`, if one has come; returns whether one has.
fn next_tick(watch: &Watch, state: &mut State) -> Result<bool> {
    match watch.ticks.try_recv() {
        Ok(tick) => {
            state.update(tick?, SystemTime::now());
            panic_for_tests(state.live.ticks);
            Ok(true)
        }
        Err(TryRecvError::Empty) => Ok(false),
        Err(TryRecvError::Disconnected) => Err(Error::NamespaceThread),
    }
}

/// What one wait on the terminal gave.
enum Input<'a> {
    /// Bytes read: keys to parse.
    Keys(&'a [u8]),
    /// Nothing to read yet: look at the ticks and signals again.
    Nothing,
    /// The terminal is gone, or the input ended: the view ends.
    HungUp,
}

/// Reads what the terminal has into `input`, after waiting for it at most [`POLL`].
fn wait_for_keys<'a>(stdin: BorrowedFd<'_>, input: &'a mut [u8]) -> Result<Input<'a>> {
    // Wait for a key, a signal (SIGWINCH interrupts the wait) or the next look at the ticks.
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    match rustix::event::poll(&mut fds, Some(&POLL)) {
        Ok(0) | Err(rustix::io::Errno::INTR) => return Ok(Input::Nothing),
        Ok(_) => {}
        Err(e) => return Err(Error::Output(e.into())),
    }
    let events = fds[0].revents();
    if !events.contains(PollFlags::IN) {
        // Hung up (the ssh session or the terminal window is gone): nothing left to draw on.
        return Ok(Input::HungUp);
    }
    match rustix::io::read(stdin, &mut *input) {
        Ok(0) => Ok(Input::HungUp),
        Ok(n) => Ok(Input::Keys(&input[..n])),
        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => Ok(Input::Nothing),
        // EIO: the terminal hung up between the wait and the read.
        Err(_) => Ok(Input::HungUp),
    }
}

/// The signals the loop heeds: SIGINT, SIGTERM, SIGHUP and SIGQUIT end it like `q`, so that the
/// screen is restored on the way out rather than left in raw mode; SIGWINCH redraws; SIGTSTP
/// suspends as Ctrl-Z does, and SIGCONT draws everything anew.
pub(crate) struct Signals {
    stop: Arc<AtomicBool>,
    resized: Arc<AtomicBool>,
    /// SIGTSTP: suspend as Ctrl-Z does.
    suspend: Arc<AtomicBool>,
    /// SIGCONT: draw everything anew.
    continued: Arc<AtomicBool>,
}

impl Signals {
    /// Catches them; before the screen changes, so that none can leave it changed.
    pub(crate) fn catch() -> Result<Signals> {
        let flag = || Arc::new(AtomicBool::new(false));
        let signals = Signals { stop: flag(), resized: flag(), suspend: flag(), continued: flag() };
        for signal in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGQUIT,
        ] {
            signal_hook::flag::register(signal, Arc::clone(&signals.stop))
                .map_err(|source| Error::Signal { signal, source })?;
        }
        for (signal, flag) in [
            (signal_hook::consts::SIGWINCH, &signals.resized),
            (signal_hook::consts::SIGTSTP, &signals.suspend),
            (signal_hook::consts::SIGCONT, &signals.continued),
        ] {
            signal_hook::flag::register(signal, Arc::clone(flag)).map_err(|source| Error::Signal { signal, source })?;
        }
        Ok(signals)
    }
}

/// Debug builds only: panics once `TWTUNE_TEST_WATCH_PANIC` ticks have been shown, so that a test
/// can check the screen is restored after a panic.
fn panic_for_tests(ticks: u64) {
    #[cfg(debug_assertions)]
    if std::env::var("TWTUNE_TEST_WATCH_PANIC").is_ok_and(|n| n.parse() == Ok(ticks)) {
        panic!("TWTUNE_TEST_WATCH_PANIC: a panic for the test");
    }
    #[cfg(not(debug_assertions))]
    let _ = ticks;
}
