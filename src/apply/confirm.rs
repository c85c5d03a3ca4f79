//! Asking the user: one yes/no question (default no) and, with `--select`, a multi-select of the
//! plan; and the rule of consent (`--yes`, or a yes at a terminal; without a terminal, refused).
//! Behind a trait so that everything else is tested without a terminal; the dialoguer
//! implementation is tested through a pseudo-terminal.

use crate::error::{Error, Result};

/// Fails with `message` when there is no terminal to ask on (stdin and stderr).
pub(crate) fn require_terminal(interactive: bool, message: &str) -> Result<()> {
    if interactive { Ok(()) } else { Err(Error::NoTerminal(message.to_string())) }
}

/// `--yes`, or a yes at the prompt. Without a terminal and without `--yes`: refused.
pub(crate) fn consent(yes: bool, interactive: bool, confirm: &dyn Confirm, prompt: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    require_terminal(
        interactive,
        "refusing to change anything without confirmation, and there is no terminal to ask on (stdin and stderr); \
         re-run with --yes to go ahead, or with --dry-run to see the plan",
    )?;
    confirm.confirm(prompt)
}

/// How a command asks for consent.
pub(crate) trait Confirm {
    /// Asks `prompt` (answered `y` or `n`, default no).
    fn confirm(&self, prompt: &str) -> Result<bool>;
    /// Lets the user pick among `items` (all picked at first); returns the picked indexes.
    fn select(&self, prompt: &str, items: &[String]) -> Result<Vec<usize>>;
}

/// Prompts on the terminal with dialoguer (on stderr, so stdout stays clean).
pub(crate) struct Terminal;

fn prompt_error(e: dialoguer::Error) -> Error {
    Error::Prompt(e.to_string())
}

impl Confirm for Terminal {
    fn confirm(&self, prompt: &str) -> Result<bool> {
        dialoguer::Confirm::new()
            .with_prompt(prompt)
            .default(false)
            .wait_for_newline(false)
            .interact()
            .map_err(prompt_error)
    }

    fn select(&self, prompt: &str, items: &[String]) -> Result<Vec<usize>> {
        let defaults = vec![true; items.len()];
        dialoguer::MultiSelect::new()
            .with_prompt(prompt)
            .items(items)
            .defaults(&defaults)
            .interact()
            .map_err(prompt_error)
    }
}

/// Answers for tests: a fixed reply and a fixed selection.
#[cfg(test)]
pub(crate) struct Scripted {
    pub answer: bool,
    pub selection: Vec<usize>,
}

#[cfg(test)]
impl Confirm for Scripted {
    fn confirm(&self, _: &str) -> Result<bool> {
        Ok(self.answer)
    }
    fn select(&self, _: &str, _: &[String]) -> Result<Vec<usize>> {
        Ok(self.selection.clone())
    }
}
