//! The one error type of twtune and the exit statuses it maps to.
//!
//! Every failure the user can cause or meet (a bad argument, a missing root, an unreadable file, text
//! that is not what the kernel prints) is an [`Error`] whose `Display` is one line naming what failed
//! and, where it helps, what to do. Every error exits with status 2; statuses 0 and 1 are outcomes,
//! not errors (see [`Outcome`]).

use std::path::PathBuf;

/// What a command concluded, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing reached the failure threshold (exit 0).
    Clean,
    /// At least one finding reached the failure threshold (exit 1).
    Findings,
    /// The user declined; nothing was changed (exit 1).
    Declined,
}

impl Outcome {
    /// The process exit status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Findings | Outcome::Declined => 1,
        }
    }
}

/// Exit status of every error.
pub const ERROR_EXIT_CODE: u8 = 2;

/// Everything that can make twtune stop without a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--root` directory does not exist or is not a directory.
    #[error("root directory {path}: {reason}; pass an existing directory to --root (default /)")]
    Root { path: PathBuf, reason: String },

    /// A file twtune needs could not be read.
    #[error("cannot read {path}: {source}{hint}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
        /// Extra advice, starting with "; " when not empty.
        hint: &'static str,
    },

    /// A file or directory twtune writes (state, export, snapshot) could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    /// A file was read but does not have the shape the kernel gives it.
    #[error("{path}: {problem}")]
    Malformed { path: PathBuf, problem: String },

    /// A profile is not valid: YAML syntax, unknown fields, bad keys or values, `extends` problems.
    /// `location` is `file`, `file:line` or `file:line:column`.
    #[error("{location}: {message}")]
    Profile { location: String, message: String },

    /// No profile has this name.
    #[error(
        "no profile named {name:?}; `twtune profiles list` shows the profiles there are, or give a path to a YAML file"
    )]
    UnknownProfile { name: String },

    /// A sysctl key name is not valid.
    #[error("invalid sysctl key {key:?}: {problem}")]
    InvalidKey { key: String, problem: String },

    /// The process may not do what it must (write a sysctl, the state directory, the persisted file).
    #[error("not allowed to {what} ({reason}): run as root, e.g. with sudo")]
    NotPermitted { what: String, reason: String },

    /// Another apply or rollback holds the lock.
    #[error(
        "another twtune apply or rollback is running (lock {path} held by process {holder}); wait for it, then try again"
    )]
    Locked { path: PathBuf, holder: String },

    /// A value the kernel would refuse, found before anything was written.
    #[error("refusing {key}: {problem}; nothing was changed")]
    Refused { key: String, problem: String },

    /// A transaction failed; the text says what failed and what was restored.
    #[error("{0}")]
    Apply(String),

    /// Consent is needed and there is no terminal to ask on.
    #[error("{0}")]
    NoTerminal(String),

    /// The prompt itself failed.
    #[error("prompt failed: {0}")]
    Prompt(String),

    /// An error already described in full by its text (one of several found in one run).
    #[error("{0}")]
    Reported(String),

    /// A network namespace to audit could not be entered.
    #[error("cannot enter the network namespace {path}: {problem}")]
    Namespace { path: PathBuf, problem: String },

    /// The netlink socket dump failed.
    #[error("netlink sock_diag: {0}; --socket-source proc reads /proc/net/tcp instead")]
    Netlink(String),

    /// Writing the report failed (other than a closed pipe, which is not an error).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        ERROR_EXIT_CODE
    }

    /// Whether this error is only the reader of our output going away (`twtune audit | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Result with twtune's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_exits_2_and_outcomes_exit_0_or_1() {
        let err = Error::InvalidKey { key: "x".into(), problem: "p".into() };
        assert_eq!(err.exit_code(), 2);
        assert_eq!(Outcome::Clean.code(), 0);
        assert_eq!(Outcome::Findings.code(), 1);
    }

    #[test]
    fn read_error_is_one_line_naming_the_path() {
        let err = Error::Read {
            path: "/x/proc/net/tcp".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
            hint: "; is /x a captured /proc tree?",
        };
        let text = err.to_string();
        assert!(text.starts_with("cannot read /x/proc/net/tcp: "), "{text}");
        assert!(text.ends_with("; is /x a captured /proc tree?"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let err = Error::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(err.is_broken_pipe());
        let err = Error::Output(std::io::Error::from(std::io::ErrorKind::Other));
        assert!(!err.is_broken_pipe());
    }
}
