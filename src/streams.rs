//! The process's standard output as the commands use it: the report writer (styled for people,
//! byte for byte for what other tools read), the check that there is somewhere for it to go, and
//! help and version text. Errors go to stderr through [`crate::error::say`].

use std::io::Write;

use crate::config::{CommandConfig, Config};
use crate::error::{Error, Result};
use crate::report::fit::{Fit, set_width};

/// The writer a command's output goes to, once stdout is known to be open.
pub(crate) fn report_writer(config: &Config) -> Result<Box<dyn Write>> {
    // `watch` draws on the terminal itself and refuses anything else; a snapshot writes files.
    if !matches!(config.command, CommandConfig::Snapshot(_) | CommandConfig::Watch(_)) {
        stdout_open()?;
    }
    if matches!(&config.command, CommandConfig::Audit(audit) if audit.quiet) {
        return Ok(Box::new(std::io::sink()));
    }
    let stdout = std::io::stdout().lock();
    // Reports for people carry styles, which the colour choice may strip; what other tools read
    // (exports, profiles, completion scripts) goes out byte for byte, as it would to `--output`.
    let styled: Box<dyn Write> = if config.command.writes_a_report() {
        Box::new(anstream::AutoStream::new(stdout, config.color))
    } else {
        Box::new(stdout)
    };
    // Text for people fits the terminal (80 columns when stdout is none); the styles it carries
    // take no columns, so the fitting happens before they are stripped.
    Ok(if config.command.writes_text_for_people() {
        let width = set_width(std::env::var("COLUMNS").ok().as_deref(), terminal_width());
        Box::new(Fit::new(styled, width))
    } else {
        styled
    })
}

/// The width of the terminal stdout is, if it is one.
fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !rustix::termios::isatty(&stdout) {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout).ok().map(|w| usize::from(w.ws_col)).filter(|c| *c > 0)
}

/// Flushes what a command wrote. `twtune audit | head`: the reader left, but the verdict stands
/// (pipefail users rely on it), so a broken pipe is no error.
pub(crate) fn flush(out: &mut dyn Write) -> Result<()> {
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e)),
        _ => Ok(()),
    }
}

/// Prints help or version text (clap's, styled as clap styles it) to stdout.
pub(crate) fn print(text: &clap::Error) -> Result<()> {
    stdout_open()?;
    text.print().and_then(|()| std::io::stdout().flush()).map_err(Error::Output)
}

/// Refuses to run with stdout closed (`twtune audit >&-` where nothing reopened it), where the
/// report would be lost: only when fd 1 is not open at all (EBADF). The Rust runtime opens a closed
/// stdout on /dev/null read-write before `main`, which is also what a parent gives a child whose
/// output it discards (Python's `subprocess.DEVNULL`, Go's `exec.Cmd` without `Stdout`): that
/// child writes its report to /dev/null and its exit status still tells the verdict, as it must
/// for a monitoring check, so /dev/null is never refused, however it was opened.
fn stdout_open() -> Result<()> {
    if let Err(rustix::io::Errno::BADF) = rustix::fs::fcntl_getfl(std::io::stdout()) {
        return Err(Error::Output(std::io::Error::other(
            "stdout is closed; give the report somewhere to go (a file, a pipe or /dev/null)",
        )));
    }
    Ok(())
}
