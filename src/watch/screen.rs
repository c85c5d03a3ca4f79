//! The terminal of the live view: raw mode and the alternate screen while it runs, and the terminal
//! as it was afterwards, however the view ends: a quit key, a signal, an error, or a panic (a
//! panic hook restores before the message is printed, so the message lands on the normal screen).
//! A suspended view (Ctrl-Z) gives the terminal back while it is stopped.
//!
//! ratatui's terminal is driven through [`Tty`], which never asks the terminal anything: crossterm
//! answers a question for the cursor position (ratatui's `Terminal::clear` asks it) by reading the
//! reply through its own event reader, whose read loop never leaves once the terminal has hung up
//! (a read of 0 bytes or EIO is tried again at once, for ever). A SIGCONT or Ctrl-L at the moment
//! the terminal went away left a view spinning at 91 % of a core on a deleted pseudo-terminal.
//! The size is read from stdout alone, so that a terminal gone is an error that ends the view,
//! rather than a `tput` run found on `PATH`, as crossterm falls back to.

use std::io::Stdout;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::layout::{Position, Rect, Size};

use crate::error::{Error, Result};

/// The terminal while the view runs; dropping it restores the terminal.
pub(crate) struct Screen {
    terminal: Terminal<Tty>,
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
        let opened = take().and_then(|()| Terminal::new(Tty::new()));
        match opened {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(Error::Output(e))
            }
        }
    }

    /// Ctrl-Z or SIGTSTP: gives the terminal back, stops as a stopped job does, and takes the
    /// terminal again once continued (`fg`), drawing everything anew. A view told to stop while it
    /// was stopped (`kill -TERM` then `-CONT`, as shells and systemd send them) leaves the terminal
    /// as it is: `stop` says so.
    pub(crate) fn suspend(&mut self, stop: &AtomicBool) -> Result<()> {
        restore();
        signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGTSTP)
            .map_err(|source| Error::Signal { signal: signal_hook::consts::SIGTSTP, source })?;
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        take().map_err(Error::Output)?;
        self.clear()
    }

    /// Clears the terminal, so that the next frame is drawn whole. (Not ratatui's `clear`, which
    /// asks the terminal where its cursor is: see the module's note.)
    pub(crate) fn clear(&mut self) -> Result<()> {
        let size = self.terminal.size().map_err(Error::Output)?;
        self.terminal.resize(Rect::from((Position::ORIGIN, size))).map_err(Error::Output)
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

/// crossterm's backend, without the two calls that read from the terminal (see the module's note):
/// the cursor position is the one last set, the size that of stdout or an error.
pub(crate) struct Tty {
    inner: CrosstermBackend<Stdout>,
    cursor: Position,
}

impl Tty {
    fn new() -> Tty {
        Tty { inner: CrosstermBackend::new(std::io::stdout()), cursor: Position::ORIGIN }
    }
}

impl Backend for Tty {
    type Error = std::io::Error;

    fn draw<'a, I>(&mut self, content: I) -> std::io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }
    fn hide_cursor(&mut self) -> std::io::Result<()> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> std::io::Result<()> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> std::io::Result<Position> {
        Ok(self.cursor)
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> std::io::Result<()> {
        self.cursor = position.into();
        self.inner.set_cursor_position(self.cursor)
    }
    fn clear(&mut self) -> std::io::Result<()> {
        self.inner.clear()
    }
    fn clear_region(&mut self, clear_type: ClearType) -> std::io::Result<()> {
        self.inner.clear_region(clear_type)
    }
    fn size(&self) -> std::io::Result<Size> {
        let size = rustix::termios::tcgetwinsize(rustix::stdio::stdout())?;
        Ok(Size { width: size.ws_col, height: size.ws_row })
    }
    fn window_size(&mut self) -> std::io::Result<WindowSize> {
        let size = rustix::termios::tcgetwinsize(rustix::stdio::stdout())?;
        let pixels = Size { width: size.ws_xpixel, height: size.ws_ypixel };
        Ok(WindowSize { columns_rows: Size { width: size.ws_col, height: size.ws_row }, pixels })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
