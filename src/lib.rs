//! twtune audits and tunes the Linux settings behind TCP TIME_WAIT build-up and ephemeral-port
//! exhaustion.
//!
//! The pipeline: [`cli`] parses arguments, `config` resolves them once, `cmd` runs one
//! subcommand: `inspect` reads settings, counters, sockets and the sysctl.d tree beneath a root,
//! `rules` and `profile` turn that evidence into findings, `report` renders one model as text,
//! JSON or Prometheus into a writer; `apply` owns every decision about writing. This file only
//! parses, builds the config, dispatches and maps the outcome to an exit status. The layout is
//! described in the README's Development section.
//!
//! The library exists for the binary and its tests; it has no stable API.

mod apply;
pub mod cli;
mod cmd;
mod config;
mod error;
mod explain;
mod export;
mod files;
#[cfg(test)]
mod fuzz;
mod inspect;
mod model;
mod ports;
mod problem;
mod profile;
mod report;
mod root;
mod rules;
mod snapshot;
mod sysctl;
mod sysctl_d;
#[cfg(test)]
mod testing;
mod watch;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::config::{CommandConfig, Config};
use crate::error::{Outcome, Result};

/// Runs twtune with these arguments (the first is the program name) and returns the exit status.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> u8 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // Help and version go to stdout and exit 0.
        Err(err) if !err.use_stderr() => {
            if let Err(closed) = stdout_open() {
                error::say(&closed.to_string());
                return error::ERROR_EXIT_CODE;
            }
            return match err.print().and_then(|()| std::io::stdout().flush()) {
                Ok(()) => 0,
                Err(e) => {
                    error::say(&format!("cannot write output: {e}"));
                    error::ERROR_EXIT_CODE
                }
            };
        }
        // Bare `twtune`: clap would print the description as if it were the error.
        Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            error::say(
                "a command is needed (audit, watch, explain, apply, rollback, export, snapshot, profiles, completions); see 'twtune --help'",
            );
            return error::ERROR_EXIT_CODE;
        }
        // A usage error is one line, like every other error.
        Err(err) => {
            error::say(&format!("{}; see 'twtune --help'", usage_line(&err.render().to_string())));
            return error::ERROR_EXIT_CODE;
        }
    };
    cli.color.write_global();
    let config = Config::from_cli(cli);
    let stdout = std::io::stdout().lock();
    // Reports for people carry styles, which the colour choice may strip; what other tools read
    // (exports, profiles, completion scripts) goes out byte for byte, as it would to `--output`.
    let mut out: Box<dyn Write> = if config.command.writes_a_report() {
        Box::new(anstream::AutoStream::new(stdout, config.color))
    } else {
        Box::new(stdout)
    };
    // `watch` draws on the terminal itself and refuses anything else.
    let writes_stdout = !matches!(config.command, CommandConfig::Snapshot(_) | CommandConfig::Watch(_));
    let checked = if writes_stdout { stdout_open() } else { Ok(()) };
    let result = checked.and_then(|()| execute(&config, &mut out)).and_then(|outcome| match out.flush() {
        // `twtune audit | head`: the reader left, but the verdict stands (pipefail users rely on it).
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(error::Error::Output(e)),
        _ => Ok(outcome),
    });
    let code = match result {
        Ok(outcome) => outcome.code(),
        // The reader went away (`twtune audit | head`): nothing is wrong with the audit.
        Err(err) if err.is_broken_pipe() => 0,
        Err(err) => {
            for line in err.lines() {
                error::say(&line);
            }
            err.exit_code()
        }
    };
    if error::stderr_failed() { error::ERROR_EXIT_CODE } else { code }
}

/// Refuses to run with stdout closed (`twtune audit >&-`), where the report would be lost with exit
/// 0. The Rust runtime reopens a closed stdout on /dev/null read-write before `main`; a shell's
/// `>/dev/null` opens it write-only, so /dev/null read-write on stdout means it was closed.
fn stdout_open() -> Result<()> {
    let stdout = std::io::stdout();
    let closed = match (rustix::fs::fstat(&stdout), rustix::fs::fcntl_getfl(&stdout)) {
        (Ok(stat), Ok(flags)) => {
            let dev_null = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::CharacterDevice
                && rustix::fs::major(stat.st_rdev) == 1
                && rustix::fs::minor(stat.st_rdev) == 3;
            dev_null && flags.contains(rustix::fs::OFlags::RDWR)
        }
        (Err(rustix::io::Errno::BADF), _) | (_, Err(rustix::io::Errno::BADF)) => true,
        _ => false,
    };
    if closed {
        return Err(error::Error::Output(std::io::Error::other(
            "stdout is closed; give the report somewhere to go (a file, a pipe or /dev/null)",
        )));
    }
    Ok(())
}

/// Takes the lock of the state directory `dir` as an apply or rollback does, and holds it until the
/// returned value is dropped: for tests that run twtune while another apply holds it.
pub fn lock_state_dir(dir: &std::path::Path) -> std::result::Result<impl Sized, String> {
    apply::journal::StateDir::new(dir).lock().map_err(|e| e.to_string())
}

fn execute(config: &Config, out: &mut dyn Write) -> Result<Outcome> {
    let terminal = apply::confirm::Terminal;
    match &config.command {
        CommandConfig::Audit(audit) => cmd::audit::run(audit, out),
        CommandConfig::Watch(watch) => cmd::watch::run(watch),
        CommandConfig::Explain(explain) => cmd::explain::run(explain, out),
        CommandConfig::Profiles(profiles) => cmd::profiles::run(profiles, out),
        CommandConfig::Apply(apply) => cmd::apply::run(apply, out, &terminal),
        CommandConfig::Rollback(rollback) => cmd::rollback::run(rollback, out, &terminal),
        CommandConfig::Export(export) => cmd::export::run(export, out),
        CommandConfig::Snapshot(snapshot) => cmd::snapshot::run(snapshot),
        CommandConfig::Completions(shell) => cmd::completions::run(*shell, out),
    }
}

/// clap's usage error in one line: its first paragraph (the problem, and the arguments it names on
/// the lines below it), without the usage and help hints that follow.
fn usage_line(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let text = paragraph.join(" ");
    let text = text.trim_start_matches("error: ").trim_end_matches(':');
    if text.is_empty() { "invalid arguments".to_string() } else { text.to_string() }
}

#[cfg(test)]
mod tests {
    use super::usage_line;

    #[test]
    fn a_usage_error_keeps_the_arguments_it_names() {
        let rendered = "error: the following required arguments were not provided:\n  <DIR>\n\nUsage: twtune \
                        snapshot <DIR>\n\nFor more information, try '--help'.\n";
        assert_eq!(usage_line(rendered), "the following required arguments were not provided: <DIR>");
        assert_eq!(
            usage_line("error: unexpected argument '--x' found\n\n  tip: ...\n"),
            "unexpected argument '--x' found"
        );
        assert_eq!(usage_line(""), "invalid arguments");
    }
}
