//! The terminal of the live view: raw mode and the alternate screen while it runs, and the terminal
//! as it was afterwards, however the view ends: a quit key, a signal, an error, or a panic (a
//! panic hook restores before the message is printed, so the message lands on the normal screen).
//! A suspended view (Ctrl-Z) gives the terminal back while it is stopped.

use std::io::Stdout;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};

use crate::error::{Error, Result};

/// The terminal while the view runs; dropping it restores the terminal.
pub(crate) struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Switches the terminal to raw mode and the alternate screen. `color` is twtune's own choice
    /// (`--color`, `NO_COLOR`, ...), which overrides crossterm's reading of `NO_COLOR`.
    pub(crate) fn open(color: bool) -> Result<Screen> {
        ratatui::crossterm::style::force_color_output(color);
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let opened = take().and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        match opened {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(Error::Output(e))
            }
        }
    }

    /// Ctrl-Z or SIGTSTP: gives the terminal back, stops as a stopped job does, and takes the
    /// terminal again once continued (`fg`), drawing everything anew.
    pub(crate) fn suspend(&mut self) -> Result<()> {
        restore();
        signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGTSTP)
            .map_err(|source| Error::Signal { signal: signal_hook::consts::SIGTSTP, source })?;
        take().map_err(Error::Output)?;
        self.clear()
    }

    /// Clears the terminal, so that the next frame is drawn whole.
    pub(crate) fn clear(&mut self) -> Result<()> {
        self.terminal.clear().map_err(Error::Output)
    }

    /// Draws one frame (ratatui sends only what changed since the last).
    pub(crate) fn draw(&mut self, render: impl FnOnce(&mut ratatui::Frame)) -> Result<()> {
        self.terminal.draw(render).map(drop).map_err(Error::Output)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Whether the terminal is ours to restore.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Raw mode, the alternate screen, no cursor.
fn take() -> std::io::Result<()> {
    ACTIVE.store(true, Ordering::SeqCst);
    enable_raw_mode().and_then(|()| execute!(std::io::stdout(), EnterAlternateScreen, Hide))
}

/// Leaves raw mode and the alternate screen and shows the cursor, once: leaving the alternate
/// screen also moves the cursor back to where it was on entering, so a second time (the panic hook,
/// then the drop while unwinding) would write over the panic's message.
fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // Raw mode first: it changes more than the screen does.
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, Show);
}
