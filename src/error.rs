//! The one error type of twtune and the exit statuses it maps to.
//!
//! Every failure the user can cause or meet (a bad argument, a missing root, an unreadable file, text
//! that is not what the kernel prints) is an [`Error`] whose `Display` is one line naming what failed
//! and, where it helps, what to do. Every error exits with status 2; statuses 0 and 1 are outcomes,
//! not errors (see [`Outcome`]).

use std::path::PathBuf;

/// What a command concluded, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing reached the failure threshold (exit 0).
    Clean,
    /// At least one finding reached the failure threshold (exit 1).
    Findings,
    /// The user declined; nothing was changed (exit 1).
    Declined,
}

impl Outcome {
    /// The process exit status for this outcome.
    pub(crate) fn code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Findings | Outcome::Declined => 1,
        }
    }
}

/// Exit status of every error.
pub(crate) const ERROR_EXIT_CODE: u8 = 2;

/// Set once a line could not be written to stderr (a full disk, a closed descriptor): the run then
/// exits 2 whatever it concluded, since what it had to say was lost.
static STDERR_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Text from files made safe for a terminal: every control character (an escape sequence, a
/// carriage return, a bell) shown as `\u{..}`, so that nothing read from a host or a tree can
/// move the cursor, recolour or rewrite what twtune prints.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect(),
    )
}

/// Writes `twtune: LINE` to stderr, control characters escaped; a failure to write is remembered,
/// never a panic.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    if writeln!(anstream::stderr(), "twtune: {}", printable(line)).is_err() {
        STDERR_FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether a line to stderr was lost.
pub(crate) fn stderr_failed() -> bool {
    STDERR_FAILED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Everything that can make twtune stop without a result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
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

    /// The state directory (or a file in it) could be changed by someone other than the user running
    /// twtune, or is a link: its journal would steer root's writes.
    #[error("state directory {}: {why}; twtune keeps its journal only where no one else can write", path.display())]
    UntrustedState { path: PathBuf, why: String },

    /// Another apply or rollback holds the lock.
    #[error(
        "another twtune apply or rollback is running (lock {path} held by process {holder}); wait for it, then try again"
    )]
    Locked { path: PathBuf, holder: String },

    /// A value the kernel would refuse, found before anything was written.
    #[error("refusing {key}: {problem}; nothing was changed")]
    Refused { key: String, problem: String },

    /// Options that parse one by one but do not fit together or with the system (a `--netns`
    /// path, `--socket-source netlink` on a `--root` tree, a role without `--output`).
    #[error("{0}")]
    Usage(String),

    /// An apply or rollback failed after it began; the text says what failed and what was restored.
    #[error("{0}")]
    Transaction(String),

    /// An apply failed and some keys could not be restored: they keep their new values, and the
    /// journal entry (status `incomplete`) holds their previous ones for a rollback.
    #[error("{0}")]
    Incomplete(String),

    /// The journal has no entry to act on, or the entry cannot be rolled back now.
    #[error("{0}")]
    Journal(String),

    /// The file `--persist-file` names is not one twtune may write.
    #[error("--persist-file {shown}: {why}; nothing was changed")]
    PersistFile { shown: String, why: String },

    /// `/proc/sys` is mounted read-only (inside a container), so no privilege helps.
    #[error("cannot {what}: /proc/sys is read-only here (a container?); change it on the host or in the pod spec")]
    ReadOnly { what: String },

    /// The file system of a file to write is mounted read-only.
    #[error("cannot {what}: its file system is read-only; give another --persist-file or --state-dir, or remount it")]
    ReadOnlyFile { what: String },

    /// A signal handler could not be installed, so an interrupt could leave half a change.
    #[error("cannot catch signal {signal}: {source}; nothing was changed")]
    Signal { signal: i32, source: std::io::Error },

    /// A directory to write into (a snapshot, a role) could be changed by someone else meanwhile.
    #[error("{}: {why}; give a new directory, or one of your own that no one else can write", path.display())]
    UnsafeDirectory { path: PathBuf, why: String },

    /// A directory to write into (a snapshot, a role) already has files.
    #[error("{} is not empty: give a new or empty directory{purpose}", path.display())]
    NotEmpty {
        path: PathBuf,
        /// What the directory is for, starting with " for " when not empty.
        purpose: &'static str,
    },

    /// The snapshot archive was refused (its name is a link, a FIFO, or no file name); the text
    /// names the archive.
    #[error("{0}")]
    Archive(String),

    /// The thread that enters another network namespace stopped without a result (a bug).
    #[error("the namespace thread stopped unexpectedly")]
    NamespaceThread,

    /// An export would carry text that the target format would run or misread.
    #[error("{0}")]
    Export(String),

    /// Consent is needed and there is no terminal to ask on.
    #[error("{0}")]
    NoTerminal(String),

    /// The prompt itself failed.
    #[error("prompt failed: {0}")]
    Prompt(String),

    /// Several independent errors of one run (every bad file of `profiles check`); each is printed
    /// on a line of its own.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),

    /// A network namespace to audit could not be entered.
    #[error("cannot enter the network namespace {path}: {problem}")]
    Namespace { path: PathBuf, problem: String },

    /// The netlink socket dump failed.
    #[error("netlink sock_diag: {0}; --socket-source proc reads /proc/net/tcp instead")]
    Netlink(String),

    /// The process ran out of file descriptors (EMFILE: its open-files limit; ENFILE: the system's
    /// table) while reading: what could not be opened is not missing from the host, so this is an
    /// error, never a finding, a note or a hint about the arguments.
    #[error(
        "out of file descriptors ({what}): raise the open-files limit (ulimit -n, LimitNOFILE= of a service; for \
         ENFILE the system's fs.file-max) and run again"
    )]
    OutOfFiles { what: String },

    /// Writing the report failed (other than a closed pipe, which is not an error).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

/// Whether `e` is running out of file descriptors (EMFILE or ENFILE).
pub(crate) fn out_of_files(e: &std::io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::MFILE.raw_os_error()) || code == Some(rustix::io::Errno::NFILE.raw_os_error())
}

impl Error {
    /// [`Error::Read`], or [`Error::OutOfFiles`] when the file could not be opened for want of a
    /// descriptor (the hint about the file would then mislead).
    pub(crate) fn read(path: PathBuf, source: std::io::Error, hint: &'static str) -> Error {
        if out_of_files(&source) {
            return Error::OutOfFiles { what: format!("reading {}: {source}", path.display()) };
        }
        Error::Read { path, source, hint }
    }

    /// [`Error::OutOfFiles`] for `e` when it is that, naming `what` was being done.
    pub(crate) fn if_out_of_files(e: &std::io::Error, what: impl FnOnce() -> String) -> Option<Error> {
        out_of_files(e).then(|| Error::OutOfFiles { what: format!("{}: {e}", what()) })
    }

    /// The process exit status for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        ERROR_EXIT_CODE
    }

    /// The lines to print for this error: one, or one per error of [`Error::Several`].
    pub(crate) fn lines(&self) -> Vec<String> {
        match self {
            Error::Several(errors) => errors.iter().flat_map(Error::lines).collect(),
            other => vec![other.to_string()],
        }
    }

    /// Whether this error is only the reader of our output going away (`twtune audit | head`).
    pub(crate) fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Result with twtune's [`Error`].
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

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
    fn several_errors_print_one_line_each() {
        let several = Error::Several(vec![
            Error::UnknownProfile { name: "a".into() },
            Error::Usage("give a directory, or --archive FILE.tar.gz".into()),
        ]);
        let lines = several.lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("no profile named \"a\""), "{lines:?}");
        assert_eq!(lines[1], "give a directory, or --archive FILE.tar.gz");
        assert!(lines.iter().all(|l| !l.contains('\n')));
        assert_eq!(several.exit_code(), 2);
    }

    #[test]
    fn running_out_of_descriptors_is_its_own_error_without_the_files_hint() {
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let err = Error::read("/proc/sys/kernel/osrelease".into(), emfile, "; --root must hold proc/sys");
        let text = err.to_string();
        assert!(text.starts_with("out of file descriptors (reading /proc/sys/kernel/osrelease: "), "{text}");
        assert!(text.contains("ulimit -n") && !text.contains("--root") && !text.contains('\n'), "{text}");
        let enfile = std::io::Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error());
        assert!(out_of_files(&enfile));
        let other = Error::read("/x".into(), std::io::Error::from(std::io::ErrorKind::NotFound), "; hint");
        assert!(matches!(other, Error::Read { .. }));
    }

    #[test]
    fn broken_pipe_is_recognised() {
        let err = Error::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(err.is_broken_pipe());
        let err = Error::Output(std::io::Error::from(std::io::ErrorKind::Other));
        assert!(!err.is_broken_pipe());
    }
}
