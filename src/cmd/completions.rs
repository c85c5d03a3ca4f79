//! `twtune completions SHELL`: the completion script clap derives from the command line.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Outcome, Result};

pub(crate) fn run(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<Outcome> {
    clap_complete::generate(shell, &mut Cli::command(), "twtune", out);
    Ok(Outcome::Clean)
}
