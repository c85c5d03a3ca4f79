//! `twtune completions SHELL`: the completion script clap derives from the command line.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Outcome, Result};

pub(crate) fn run(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<Outcome> {
    // clap_complete panics when its writer fails: it writes into memory, and a full disk or a
    // closed pipe is reported like any other write error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "twtune", &mut script);
    out.write_all(&script).map_err(Error::Output)?;
    Ok(Outcome::Clean)
}
