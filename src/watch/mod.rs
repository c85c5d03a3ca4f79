//! `twtune watch`: the live view. [`state`] holds what is shown and reacts to keys, [`view`] draws
//! it, [`screen`] owns the terminal (raw mode, the alternate screen, and putting both back on every
//! way out), and [`run`] ties them to the ticks of [`crate::inspect::watch`].

pub(crate) mod screen;
pub(crate) mod state;
pub(crate) mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::error::{Error, Result};
use crate::inspect::watch::Watch;
use crate::watch::screen::Screen;
use crate::watch::state::{Action, Key, State};
use crate::watch::view::Palette;

/// How long the loop waits for a key before it looks for a tick again: short enough that a tick is
/// drawn at once, long enough to cost nothing.
const POLL: Duration = Duration::from_millis(50);

/// Runs the view until a quit key or a termination signal; the screen is restored by the caller
/// dropping `screen`, whatever this returns.
pub(crate) fn run(screen: &mut Screen, watch: &Watch, mut state: State, palette: Palette) -> Result<()> {
    let stop = signals()?;
    let mut dirty = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match watch.ticks.try_recv() {
            Ok(tick) => {
                state.update(tick?, SystemTime::now());
                panic_for_tests(state.live.ticks);
                dirty = true;
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Err(Error::NamespaceThread),
        }
        if dirty {
            screen.draw(|frame| view::draw(frame, &state, palette))?;
            dirty = false;
        }
        if event::poll(POLL).map_err(terminal_error)? {
            match event::read().map_err(terminal_error)? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    let Some(key) = translate(key) else { continue };
                    match state.key(key) {
                        Action::Quit => return Ok(()),
                        Action::Redraw => dirty = true,
                        Action::Nothing => {}
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
}

/// Terminal keys as the view knows them. In raw mode Ctrl-C is a key, not a signal.
fn translate(key: KeyEvent) -> Option<Key> {
    Some(match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left => Key::Back,
        _ => return None,
    })
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT end the loop like `q`, so that the screen is restored on the
/// way out rather than left in raw mode.
fn signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| Error::Signal { signal, source })?;
    }
    Ok(stop)
}

fn terminal_error(e: std::io::Error) -> Error {
    Error::Output(e)
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
