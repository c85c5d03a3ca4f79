//! The process's standard output as the commands use it: the report writer (styled for people,
//! byte for byte for what other tools read), the check that there is somewhere for it to go, and
//! help and version text. Errors go to stderr through [`crate::error::say`].

use std::io::Write;

use crate::config::{CommandConfig, Config};
use crate::error::{Error, Result};

/// The writer a command's output goes to, once stdout is known to be open.
pub(crate) fn report_writer(config: &Config) -> Result<Box<dyn Write>> {
    // `watch` draws on the terminal itself and refuses anything else; a snapshot writes files.
    if !matches!(config.command, CommandConfig::Snapshot(_) | CommandConfig::Watch(_)) {
        stdout_open()?;
    }
    let stdout = std::io::stdout().lock();
    // Reports for people carry styles, which the colour choice may strip; what other tools read
    // (exports, profiles, completion scripts) goes out byte for byte, as it would to `--output`.
    Ok(if config.command.writes_a_report() {
        Box::new(anstream::AutoStream::new(stdout, config.color))
    } else {
        Box::new(stdout)
    })
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
