//! `twtune watch`: the live view of one network namespace, or of every one, on the terminal.

use crate::config::WatchConfig;
use crate::error::{Error, Outcome, Result};
use crate::inspect::evidence::NetnsTarget;
use crate::inspect::watch;
use crate::watch::Signals;
use crate::watch::screen::Screen;
use crate::watch::state::State;
use crate::watch::view::Palette;

pub(crate) fn run(config: &WatchConfig) -> Result<Outcome> {
    // Problems with the arguments (no such namespace, not root) come first.
    watch::check(&config.request)?;
    if !config.terminal {
        return Err(Error::NoTerminal(
            "twtune watch draws a live view and needs a terminal on stdin and stdout; for numbers to keep or to \
             script, use `twtune audit --sample 5s` (add --format json or prometheus)"
                .into(),
        ));
    }
    let watch = watch::start(config.request.clone(), config.interval)?;
    let state = State::new(config.request.netns == NetnsTarget::All, config.interval);
    let signals = Signals::catch()?;
    let mut screen = Screen::open(config.color)?;
    crate::watch::run(&mut screen, &watch, state, Palette { color: config.color }, &signals)?;
    drop(screen);
    Ok(Outcome::Clean)
}
