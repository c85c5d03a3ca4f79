//! Asking the user: one yes/no question (default no) and, with `--select`, a multi-select of the
//! plan. Behind a trait so that everything else is tested without a terminal; the dialoguer
//! implementation is tested through a pseudo-terminal.

use crate::error::{Error, Result};

/// How a command asks for consent.
pub trait Confirm {
    /// Asks `prompt` (answered `y` or `n`, default no).
    fn confirm(&self, prompt: &str) -> Result<bool>;
    /// Lets the user pick among `items` (all picked at first); returns the picked indexes.
    fn select(&self, prompt: &str, items: &[String]) -> Result<Vec<usize>>;
}

/// Prompts on the terminal with dialoguer (on stderr, so stdout stays clean).
pub struct Terminal;

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
pub struct Scripted {
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
