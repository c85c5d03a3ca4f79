//! The command line as clap sees it. Only parsing and validation of single flags happen here; the
//! resolved settings live in `config`, and clap types go no further (but for `completions`, which
//! generates its script from this definition).

use std::path::PathBuf;

use std::ffi::OsString;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::error::Error;

const EXIT_STATUS: &str = "\
Exit status:
  0  no finding reaches --fail-on
  1  at least one finding reaches --fail-on
  2  error: bad argument, missing root, unreadable file (one line on stderr)";

/// Audit and tune the Linux settings behind TCP TIME_WAIT build-up and ephemeral-port exhaustion.
#[derive(Debug, Parser)]
#[command(name = "twtune", version, after_help = EXIT_STATUS, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub color: colorchoice_clap::Color,

    #[command(subcommand)]
    pub command: Command,
}

/// What twtune is asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect TIME_WAIT and ephemeral-port use and explain what to change and why.
    ///
    /// Reads the net.ipv4 and net.core settings, the TCP counters and the TCP socket table; splits
    /// TIME_WAIT into outbound (this host closed first; holds ephemeral ports) and inbound (server
    /// side; memory only); measures how full each (local IP, remote IP, remote port) bucket is; and
    /// runs the rules. Changes nothing.
    #[command(after_help = EXIT_STATUS)]
    Audit(AuditArgs),

    /// Watch TIME_WAIT, connection rates, the fullest destinations and the findings live, on a
    /// full-screen view refreshed every interval.
    ///
    /// Keys: q (or Ctrl-C) quits, p pauses the view (reading goes on), s changes the sort order,
    /// ? shows help, Ctrl-L redraws, Ctrl-Z suspends, Up/Down (k/j) scroll the findings when they
    /// are longer than their box (PgUp/PgDn by ten lines); with --all-netns, Up/Down pick a
    /// namespace (PgUp/PgDn scroll its findings), Enter opens it, Esc goes back. A terminal that
    /// goes away (closed, hung up, EIO) ends the view within a second.
    /// Needs a terminal: for a measurement to keep or to script, use `twtune audit --sample 5s`.
    #[command(after_help = WATCH_EXIT_STATUS)]
    Watch(WatchArgs),

    /// Explain one key: its value now, what the next boot sets and from which file and line, under
    /// both systemd-sysctl and `sysctl --system`, and the assignments that lose.
    Explain(ExplainArgs),

    /// Change settings to meet a profile, or the audit's recommendations, after confirmation.
    ///
    /// Prints the plan (key, current -> new, why, risk) and asks once. Writes are transactional: a
    /// journal entry records the old state first, each write is read back, and any failure or
    /// Ctrl-C restores every key already written. The values are then persisted to a sysctl.d file;
    /// from a network namespace other than the host's initial one only with --persist, since at boot
    /// that file sets the initial namespace.
    #[command(after_help = APPLY_EXIT_STATUS)]
    Apply(ApplyArgs),

    /// Undo an apply: restore the runtime values and the persisted file of a journal entry.
    #[command(after_help = APPLY_EXIT_STATUS)]
    Rollback(RollbackArgs),

    /// Export a profile's settings (or the audit's recommendations) for Ansible, sysctl.d,
    /// Kubernetes or as JSON.
    Export(ExportArgs),

    /// Capture what an audit reads (net sysctls, /proc/net tables, sysctl.d trees) into a
    /// directory laid out as a root, for `audit --root DIR` on another machine.
    Snapshot(SnapshotArgs),

    /// Print a shell completion script (bash, zsh, fish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// List, show and check tuning profiles.
    ///
    /// Profiles come built in, from /etc/twtune/profiles.d/*.yaml (beneath --root; a file there
    /// overrides the built-in profile of the same name), or from any path given instead of a name.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
}

/// The `profiles` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// List every profile with its source and description.
    List {
        #[command(flatten)]
        root: RootArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Print a profile as YAML (or JSON), with its `extends` chain resolved.
    Show {
        /// Profile name, or path to a YAML file.
        #[arg(value_name = "NAME|PATH")]
        profile: String,
        #[command(flatten)]
        root: RootArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ShowFormat::Yaml)]
        format: ShowFormat,
    },
    /// Validate profile files; exit 0 when all are valid, 2 otherwise.
    Check {
        /// Profile files to check.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        root: RootArg,
    },
}

/// The root directory option of commands that read beneath it.
#[derive(Debug, Args)]
pub struct RootArg {
    /// Read etc/twtune/profiles.d beneath DIR instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Options of `twtune audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Read everything beneath DIR instead of the live system (a captured tree with proc/sys and
    /// proc/net, for offline audits).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Human)]
    pub format: AuditFormat,

    /// Print nothing on stdout: the exit status alone says whether a finding reached --fail-on
    /// (errors still go to stderr).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write the report to PATH instead of stdout, whole or not at all: into a new file beside it,
    /// renamed over it once complete, so that a reader (node_exporter's textfile collector) never
    /// sees half a report and a failed audit leaves the last one in place.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// How many of the fullest destination buckets to list.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub top: u32,

    /// Also check the host against this profile (a name, or a path to a YAML file).
    #[arg(long, value_name = "NAME|PATH")]
    pub profile: Option<String>,

    /// Exit 1 when a finding reaches this severity.
    #[arg(long, value_enum, value_name = "SEVERITY", default_value_t = FailOn::Warn)]
    pub fail_on: FailOn,

    /// Where to read the socket table: netlink sock_diag (fast, the default on a live system, with
    /// /proc as fallback) or /proc/net/tcp{,6} (the only choice for --root trees).
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = SocketSourceArg::Auto)]
    pub socket_source: SocketSourceArg,

    /// Audit the network namespace /run/netns/NAME (as made by `ip netns add`). Needs root.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["netns_pid", "root"])]
    pub netns: Option<String>,

    /// Audit the network namespace of process PID (a container's). Needs root.
    #[arg(long, value_name = "PID", conflicts_with = "root")]
    pub netns_pid: Option<u32>,

    /// Audit every network namespace of the host: those of all processes (containers, pods) and
    /// those under /run/netns, with a summary table. Needs root.
    #[arg(long, conflicts_with_all = ["netns", "netns_pid", "root"])]
    pub all_netns: bool,

    /// With --all-netns: leave the findings of network namespaces that belong to a user namespace
    /// other than the host's (made by a user, such as a rootless container) out of the exit status.
    /// They are still reported, marked with the uid that owns them. Their owner can make them say
    /// anything, so a gate that only root may trip wants this.
    #[arg(long, requires = "all_netns")]
    pub ignore_user_netns: bool,

    /// Read counters and sockets twice, DURATION apart (e.g. 5s, 500ms, 1m), and add rates
    /// (connects, SYN retransmits, TIME_WAIT entries) and each bucket's time to exhaustion.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sample: Option<std::time::Duration>,

    /// With --sample: do not arm the kernel's tracepoints. As root, twtune otherwise traces the
    /// window's failed connect() (EADDRNOTAVAIL) and bind() (EADDRINUSE), which no counter counts.
    #[arg(long, requires = "sample")]
    pub no_trace: bool,
}

const WATCH_EXIT_STATUS: &str = "\
Exit status:
  0  quit with q, Ctrl-C or a termination signal
  2  error: no terminal, bad argument, or a read failed (one line on stderr)";

/// Options of `twtune watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch the network namespace /run/netns/NAME (as made by `ip netns add`). Needs root.
    #[arg(long, value_name = "NAME", conflicts_with = "netns_pid")]
    pub netns: Option<String>,

    /// Watch the network namespace of process PID (a container's). Needs root.
    #[arg(long, value_name = "PID")]
    pub netns_pid: Option<u32>,

    /// Watch every network namespace of the host, one row each. Needs root.
    #[arg(long, conflicts_with_all = ["netns", "netns_pid"])]
    pub all_netns: bool,

    /// Time between two reads (e.g. 1s, 500ms, 5s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: std::time::Duration,

    /// How many of the fullest destination buckets to show.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub top: u32,

    /// Do not arm the kernel's tracepoints. As root, the view otherwise traces failed connect()
    /// and bind() calls and connection lifetimes for as long as it runs, which puts every system
    /// call of the host on a slower path (about 60 ns more each).
    #[arg(long)]
    pub no_trace: bool,
}

/// Output formats of `audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// A readable report for people.
    Human,
    /// One JSON object (documented in docs/json-schema.md).
    Json,
    /// Prometheus text format for the node_exporter textfile collector (audit only).
    Prometheus,
}

/// `--socket-source` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SocketSourceArg {
    /// netlink on a live system (falling back to proc), proc for --root trees.
    Auto,
    Netlink,
    Proc,
}

/// `5s`, `500ms`, `2m`, or plain seconds; from 100 ms to 10 minutes.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 5s, 500ms or 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s or m")),
    };
    if !(0.1..=600.0).contains(&seconds) {
        return Err(format!("{text} is outside 100ms..10m"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

const APPLY_EXIT_STATUS: &str = "\
Exit status:
  0  done, or nothing to do, or --dry-run
  1  declined at the prompt: nothing was changed
  2  error: refused, not permitted, no terminal without --yes, locked, or a write failed (and was undone)";

/// Options of `twtune apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Profile to apply: a name, or a path to a YAML file.
    #[arg(value_name = "PROFILE", required_unless_present = "recommended", conflicts_with = "recommended")]
    pub profile: Option<String>,

    /// Apply the audit's own recommendations (findings that carry a recommended value) instead.
    #[arg(long)]
    pub recommended: bool,

    /// Apply without asking.
    #[arg(long, short)]
    pub yes: bool,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Pick which changes of the plan to apply first (needs a terminal).
    #[arg(long)]
    pub select: bool,

    #[command(flatten)]
    pub target: TargetArgs,

    /// File to persist the applied values to, on the configured system.
    #[arg(long, value_name = "PATH", default_value = "/etc/sysctl.d/90-twtune.conf", conflicts_with = "no_persist")]
    pub persist_file: PathBuf,

    /// Change the running values only; they are lost at the next reboot.
    #[arg(long)]
    pub no_persist: bool,

    /// Persist even from a network namespace that is not the host's initial one (a pod's, or under
    /// `ip netns exec`). There apply otherwise changes the running values only, and says so: at
    /// boot the sysctl.d file sets the initial namespace, not this one.
    #[arg(long, conflicts_with = "no_persist")]
    pub persist: bool,
}

/// Options of `twtune export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Profile to export: a name, or a path to a YAML file.
    #[arg(value_name = "PROFILE", required_unless_present = "recommended", conflicts_with = "recommended")]
    pub profile: Option<String>,

    /// Export the recommendations of an audit of this host (or of --root) instead.
    #[arg(long)]
    pub recommended: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Ansible)]
    pub format: ExportFormat,

    /// sysctl-d and json: write what `twtune apply PROFILE` would change on this host (or on the
    /// tree beneath --root, such as a snapshot), read now. Without it these formats hold only the
    /// profile's settings that are one value: a file cannot read the host it lands on, so each
    /// bound is left out with its reason. (The Ansible formats judge each host themselves; a
    /// Kubernetes Pod is judged against the kernel defaults a new pod starts from.)
    #[arg(long, conflicts_with = "recommended")]
    pub from_host: bool,

    /// Write to PATH instead of stdout (for ansible-role: a new or empty directory).
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Ansible: the hosts pattern of the play.
    #[arg(long, value_name = "PATTERN", default_value = "all")]
    pub hosts: String,

    /// Ansible: the sysctl.d file the settings are kept in on the hosts.
    #[arg(long, value_name = "PATH", default_value = "/etc/sysctl.d/90-twtune.conf")]
    pub sysctl_file: String,

    /// Read profiles.d (and, with --recommended, the system to audit) beneath DIR.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Options of `twtune snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// A new or empty directory to write the snapshot into (not needed with --archive).
    #[arg(value_name = "DIR", required_unless_present = "archive")]
    pub dir: Option<PathBuf>,

    /// Write one .tar.gz file instead of a directory.
    #[arg(long, value_name = "FILE.tar.gz", conflicts_with = "dir")]
    pub archive: Option<PathBuf>,

    /// Capture the system beneath DIR instead of the live one.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Options of `twtune rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Journal entry to restore (default: the last applied one).
    #[arg(value_name = "ID")]
    pub id: Option<String>,

    /// List the journal entries (date, source, keys, status) and change nothing.
    #[arg(long, conflicts_with = "id")]
    pub list: bool,

    /// Output format of --list.
    #[arg(long, value_enum, default_value_t = ListFormat::Human, requires = "list")]
    pub format: ListFormat,

    /// Roll back without asking.
    #[arg(long, short)]
    pub yes: bool,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// Where `apply` and `rollback` act.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Act on the system beneath DIR: DIR/proc/sys, DIR/etc/sysctl.d.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Journal and lock directory [default: /var/lib/twtune beneath --root].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Options of `twtune explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The sysctl key, dotted (net.ipv4.tcp_tw_reuse) or as a path (net/ipv4/tcp_tw_reuse).
    pub key: String,

    /// Read everything beneath DIR instead of the live system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Human)]
    pub format: ExplainFormat,

    /// Also show what this profile (a name, or a path to a YAML file) expects of the key.
    #[arg(long, value_name = "NAME|PATH")]
    pub profile: Option<String>,
}

/// Output formats of `export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// An Ansible playbook using ansible.posix.sysctl.
    Ansible,
    /// An Ansible role in the --output directory.
    AnsibleRole,
    /// A sysctl.d drop-in, loadable with `sysctl -p FILE`.
    SysctlD,
    /// An object from dotted key to value.
    Json,
    /// A complete Pod whose securityContext.sysctls holds the sysctls Kubernetes treats as safe.
    K8s,
}

/// Output formats of `explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    Human,
    Json,
}

/// Output formats of listings (`profiles list`, `rollback --list`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table for people.
    Human,
    /// One JSON object (documented in docs/json-schema.md).
    Json,
}

/// Output formats of `profiles show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// The profile file format, `extends` resolved.
    Yaml,
    /// One JSON object (documented in docs/json-schema.md).
    Json,
}

/// The severity from which `audit` exits 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Info,
    Warn,
    Crit,
    /// Never exit 1 for findings.
    Never,
}

/// What the command line asks for: a run, or text clap prints itself (help, version).
pub(crate) enum Parsed {
    Run(Cli),
    Print(clap::Error),
}

/// Parses the arguments (the first is the program name). A usage error is one line, like every
/// other error.
pub(crate) fn parse(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Result<Parsed, Error> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => Ok(Parsed::Run(cli)),
        Err(err) if !err.use_stderr() => Ok(Parsed::Print(err)),
        // A command without its subcommand (`twtune`, `twtune profiles`): clap would print the
        // help as if it were the error.
        Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let (command, subcommands) = missing_subcommand(&args);
            Err(Error::Usage(format!(
                "a command is needed after '{command}' ({}); see '{command} --help'",
                subcommands.join(", ")
            )))
        }
        Err(err) => Err(Error::Usage(format!("{}; see 'twtune --help'", usage_line(&err.render().to_string())))),
    }
}

/// clap's usage error in one line: its first paragraph (the problem, and the arguments it names on
/// the lines below it), without the usage and help hints that follow.
fn usage_line(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let text = paragraph.join(" ");
    let text = text.trim_start_matches("error: ").trim_end_matches(':');
    // clap's suggestions ("tip: a similar subcommand exists: 'audit'") are kept.
    let tips: Vec<&str> = rendered.lines().map(str::trim).filter(|l| l.starts_with("tip: ")).collect();
    let text = if text.is_empty() { "invalid arguments" } else { text };
    [text].into_iter().chain(tips).collect::<Vec<_>>().join("; ")
}

/// The subcommands of the command the arguments name, as far as they name one (`twtune profiles`
/// gives `profiles` and its `list`, `show`, `check`).
fn missing_subcommand(args: &[OsString]) -> (String, Vec<String>) {
    let mut command = Cli::command();
    let mut path = vec!["twtune".to_string()];
    for arg in args.iter().skip(1).filter_map(|a| a.to_str()) {
        let Some(sub) = command.find_subcommand(arg).cloned() else { break };
        path.push(arg.to_string());
        command = sub;
    }
    let names = command.get_subcommands().map(|c| c.get_name().to_string()).filter(|n| n != "help").collect();
    (path.join(" "), names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        for bad in ["", "x", "5h", "0s", "11m", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_usage_error_keeps_the_arguments_it_names() {
        let rendered = "error: the following required arguments were not provided:\n  <DIR>\n\nUsage: twtune \
                        snapshot <DIR>\n\nFor more information, try '--help'.\n";
        assert_eq!(usage_line(rendered), "the following required arguments were not provided: <DIR>");
        assert_eq!(
            usage_line("error: unexpected argument '--x' found\n\n  tip: ...\n"),
            "unexpected argument '--x' found; tip: ..."
        );
        assert_eq!(usage_line(""), "invalid arguments");
    }
}
