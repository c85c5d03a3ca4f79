//! Resolved settings of a run: what the commands work from. Built once from the parsed command
//! line; the only place where clap types turn into twtune's own, and the only place that reads the
//! environment and asks whether there is a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{
    AuditArgs, AuditFormat, Cli, Command, ExplainArgs, ExportFormat as ExportFormatArg, FailOn, ListFormat,
    ProfilesCommand, ShowFormat, SocketSourceArg, TargetArgs, WatchArgs,
};
use crate::export::ExportFormat;
use crate::files::beneath;
use crate::inspect::evidence::{NetnsTarget, Request, SocketSourceChoice};
use crate::report::Format;
use crate::rules::Severity;

/// A whole run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Config {
    /// Colour choice for everything printed to stdout.
    pub color: anstream::ColorChoice,
    pub command: CommandConfig,
}

/// The resolved subcommand.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CommandConfig {
    Apply(ApplyConfig),
    Completions(clap_complete::Shell),
    Snapshot(SnapshotConfig),
    Export(ExportConfig),
    Rollback(RollbackConfig),
    Audit(AuditConfig),
    Watch(WatchConfig),
    Explain(ExplainConfig),
    Profiles(ProfilesConfig),
}

impl CommandConfig {
    /// Whether the output is text for people, fitted to the terminal's width (JSON, YAML,
    /// metrics, exports and completion scripts go out as they are).
    pub(crate) fn writes_text_for_people(&self) -> bool {
        match self {
            CommandConfig::Audit(a) => a.format == crate::report::Format::Human,
            CommandConfig::Explain(e) => e.format == crate::report::Format::Human,
            CommandConfig::Rollback(r) => !r.json,
            CommandConfig::Profiles(ProfilesConfig::List { json, .. }) => !json,
            // `profiles check` says `FILE: ok` per line, as a compiler does: never wrapped.
            CommandConfig::Apply(_) => true,
            _ => false,
        }
    }

    /// Whether the command writes a report for people (styled, colour per `--color`) rather than
    /// text for other tools (exports, profiles, completion scripts), which goes out unchanged.
    pub(crate) fn writes_a_report(&self) -> bool {
        matches!(
            self,
            CommandConfig::Audit(_) | CommandConfig::Explain(_) | CommandConfig::Apply(_) | CommandConfig::Rollback(_)
        )
    }
}

/// Where `apply` and `rollback` act, resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Target {
    /// Whether stdin and stderr are terminals, so that a prompt can be answered.
    pub interactive: bool,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    /// Pause after each write: `TWTUNE_TEST_WRITE_DELAY_MS`, for the interrupt test only.
    pub write_delay: Option<Duration>,
}

/// Everything `twtune apply` needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApplyConfig {
    pub dry_run: bool,
    /// The file to persist to, as the configured system names it; `None` with --no-persist.
    pub persist_file: Option<String>,
    /// `--persist`: persist even from a network namespace that is not the initial one.
    pub persist_in_any_namespace: bool,
    /// A profile name or path; `None` means the audit's recommendations.
    pub profile: Option<String>,
    pub select: bool,
    pub target: Target,
    pub yes: bool,
}

/// Everything `twtune snapshot` needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SnapshotConfig {
    /// A .tar.gz to write instead of a directory.
    pub archive: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub root: PathBuf,
}

/// Everything `twtune export` needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExportConfig {
    pub format: ExportFormat,
    /// `--from-host`: what apply would change on the host beneath `root`.
    pub from_host: bool,
    pub hosts: String,
    pub output: Option<PathBuf>,
    /// A profile name or path; `None` means the audit's recommendations.
    pub profile: Option<String>,
    pub root: PathBuf,
    pub sysctl_file: String,
}

/// Everything `twtune rollback` needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RollbackConfig {
    pub id: Option<String>,
    pub list: bool,
    /// `--format json` (with `--list`): the listing as one JSON object.
    pub json: bool,
    pub target: Target,
    pub yes: bool,
}

impl Target {
    fn from_args(args: TargetArgs) -> Target {
        let state_dir = args.state_dir.unwrap_or_else(|| beneath(&args.root, Path::new("/var/lib/twtune")));
        Target {
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            write_delay: std::env::var("TWTUNE_TEST_WRITE_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
            root: args.root,
            state_dir,
        }
    }
}

/// Everything `twtune explain` needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExplainConfig {
    pub format: Format,
    pub key: String,
    pub profile: Option<String>,
    pub root: PathBuf,
}

/// What a `profiles` subcommand needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ProfilesConfig {
    /// `json`: `--format json`, one JSON object instead of text for people (or YAML).
    List {
        root: PathBuf,
        json: bool,
    },
    Show {
        profile: String,
        root: PathBuf,
        json: bool,
    },
    Check {
        files: Vec<PathBuf>,
        root: PathBuf,
    },
}

/// Everything `twtune audit` needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AuditConfig {
    /// Exit 1 when a finding reaches this severity; `None`: never.
    pub fail_on: Option<Severity>,
    pub format: Format,
    /// `--quiet`: nothing on stdout, the exit status only.
    pub quiet: bool,
    /// `--output`: the file the report replaces, instead of stdout.
    pub output: Option<PathBuf>,
    /// A profile to check the host against (name or path).
    pub profile: Option<String>,
    /// What to inspect, and how.
    pub request: Request,
    /// `--ignore-user-netns`: findings of namespaces owned by users do not count toward the exit
    /// status.
    pub ignore_user_netns: bool,
}

/// Everything `twtune watch` needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WatchConfig {
    /// What to read every interval (`sample` is unused: the interval is below).
    pub request: Request,
    pub interval: Duration,
    /// Whether stdin and stdout are terminals: the view needs both.
    pub terminal: bool,
    /// Whether the view may use colours (`--color`, `NO_COLOR`, `CLICOLOR`, `TERM`).
    pub color: bool,
}

impl WatchConfig {
    fn from_args(args: WatchArgs) -> WatchConfig {
        WatchConfig {
            request: Request {
                root: PathBuf::from("/"),
                netns: netns_target(args.netns, args.netns_pid, args.all_netns),
                socket_source: SocketSourceChoice::Auto,
                top: args.top as usize,
                sample: None,
                trace: !args.no_trace,
            },
            interval: args.interval,
            terminal: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            // The global choice was set from --color before the config is built.
            color: anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never,
        }
    }
}

/// The namespace `--netns NAME`, `--netns-pid PID` or `--all-netns` name.
fn netns_target(netns: Option<String>, netns_pid: Option<u32>, all_netns: bool) -> NetnsTarget {
    match (netns, netns_pid) {
        // A name, not a path: `ip netns` names cannot hold a `/`; `..` would leave /run/netns.
        (Some(name), _) if name.contains('/') || name == ".." || name == "." || name.is_empty() => {
            NetnsTarget::Invalid(name)
        }
        (Some(name), _) => NetnsTarget::File(Path::new("/run/netns").join(name)),
        (None, Some(pid)) => NetnsTarget::File(PathBuf::from(format!("/proc/{pid}/ns/net"))),
        (None, None) if all_netns => NetnsTarget::All,
        (None, None) => NetnsTarget::Own,
    }
}

impl Config {
    /// Resolves the parsed command line.
    pub(crate) fn from_cli(cli: Cli) -> Config {
        let command = match cli.command {
            Command::Audit(args) => CommandConfig::Audit(AuditConfig::from_args(args)),
            Command::Watch(args) => CommandConfig::Watch(WatchConfig::from_args(args)),
            Command::Apply(args) => CommandConfig::Apply(ApplyConfig {
                dry_run: args.dry_run,
                persist_file: (!args.no_persist).then(|| args.persist_file.to_string_lossy().into_owned()),
                persist_in_any_namespace: args.persist,
                profile: args.profile,
                select: args.select,
                target: Target::from_args(args.target),
                yes: args.yes,
            }),
            Command::Completions { shell } => CommandConfig::Completions(shell),
            Command::Snapshot(args) => {
                CommandConfig::Snapshot(SnapshotConfig { archive: args.archive, dir: args.dir, root: args.root })
            }
            Command::Export(args) => CommandConfig::Export(ExportConfig {
                format: match args.format {
                    ExportFormatArg::Ansible => ExportFormat::Ansible,
                    ExportFormatArg::AnsibleRole => ExportFormat::AnsibleRole,
                    ExportFormatArg::SysctlD => ExportFormat::SysctlD,
                    ExportFormatArg::Json => ExportFormat::Json,
                    ExportFormatArg::K8s => ExportFormat::K8s,
                },
                from_host: args.from_host,
                hosts: args.hosts,
                output: args.output,
                profile: args.profile,
                root: args.root,
                sysctl_file: args.sysctl_file,
            }),
            Command::Rollback(args) => CommandConfig::Rollback(RollbackConfig {
                id: args.id,
                list: args.list,
                json: args.format == ListFormat::Json,
                target: Target::from_args(args.target),
                yes: args.yes,
            }),
            Command::Explain(ExplainArgs { key, root, format, profile }) => CommandConfig::Explain(ExplainConfig {
                format: match format {
                    crate::cli::ExplainFormat::Human => Format::Human,
                    crate::cli::ExplainFormat::Json => Format::Json,
                },
                key,
                profile,
                root,
            }),
            Command::Profiles(command) => CommandConfig::Profiles(ProfilesConfig::from_command(command)),
        };
        Config { color: cli.color.as_choice(), command }
    }
}

impl ProfilesConfig {
    fn from_command(command: ProfilesCommand) -> ProfilesConfig {
        match command {
            ProfilesCommand::List { root, format } => {
                ProfilesConfig::List { root: root.root, json: format == ListFormat::Json }
            }
            ProfilesCommand::Show { profile, root, format } => {
                ProfilesConfig::Show { profile, root: root.root, json: format == ShowFormat::Json }
            }
            ProfilesCommand::Check { files, root } => ProfilesConfig::Check { files, root: root.root },
        }
    }
}

impl AuditConfig {
    fn from_args(args: AuditArgs) -> AuditConfig {
        AuditConfig {
            fail_on: match args.fail_on {
                FailOn::Info => Some(Severity::Info),
                FailOn::Warn => Some(Severity::Warn),
                FailOn::Crit => Some(Severity::Crit),
                FailOn::Never => None,
            },
            format: match args.format {
                AuditFormat::Human => Format::Human,
                AuditFormat::Json => Format::Json,
                AuditFormat::Prometheus => Format::Prometheus,
            },
            quiet: args.quiet,
            output: args.output,
            profile: args.profile,
            ignore_user_netns: args.ignore_user_netns,
            request: Request {
                root: args.root,
                top: args.top as usize,
                netns: netns_target(args.netns, args.netns_pid, args.all_netns),
                sample: args.sample,
                trace: !args.no_trace,
                socket_source: match args.socket_source {
                    SocketSourceArg::Auto => SocketSourceChoice::Auto,
                    SocketSourceArg::Netlink => SocketSourceChoice::Netlink,
                    SocketSourceArg::Proc => SocketSourceChoice::Proc,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn audit(args: &[&str]) -> AuditConfig {
        let cli = Cli::try_parse_from(["twtune"].iter().chain(args)).expect("valid arguments");
        match Config::from_cli(cli).command {
            CommandConfig::Audit(audit) => audit,
            other => panic!("not audit: {other:?}"),
        }
    }

    #[test]
    fn watch_traces_unless_told_not_to() {
        let watch = |args: &[&str]| {
            let cli = Cli::try_parse_from(["twtune", "watch"].iter().chain(args)).expect("valid arguments");
            match Config::from_cli(cli).command {
                CommandConfig::Watch(watch) => watch.request.trace,
                other => panic!("not watch: {other:?}"),
            }
        };
        assert!(watch(&[]));
        assert!(!watch(&["--no-trace"]));
        assert!(!watch(&["--all-netns", "--no-trace"]));
    }

    #[test]
    fn audit_defaults() {
        let config = audit(&["audit"]);
        assert_eq!(
            config,
            AuditConfig {
                fail_on: Some(Severity::Warn),
                format: Format::Human,
                quiet: false,
                output: None,
                profile: None,
                ignore_user_netns: false,
                request: Request {
                    root: "/".into(),
                    top: 10,
                    netns: NetnsTarget::Own,
                    sample: None,
                    trace: true,
                    socket_source: SocketSourceChoice::Auto,
                },
            }
        );
    }

    #[test]
    fn audit_flags() {
        let config = audit(&[
            "audit",
            "--root",
            "/tmp/x",
            "--format",
            "json",
            "--top",
            "3",
            "--fail-on",
            "never",
            "--profile",
            "./p.yaml",
            "-o",
            "/tmp/r.json",
        ]);
        let expected = AuditConfig {
            fail_on: None,
            format: Format::Json,
            quiet: false,
            output: Some("/tmp/r.json".into()),
            profile: Some("./p.yaml".into()),
            ignore_user_netns: false,
            request: Request {
                root: "/tmp/x".into(),
                top: 3,
                netns: NetnsTarget::Own,
                sample: None,
                trace: true,
                socket_source: SocketSourceChoice::Auto,
            },
        };
        assert_eq!(config, expected);
        assert_eq!(audit(&["audit", "--fail-on", "crit"]).fail_on, Some(Severity::Crit));
        assert_eq!(audit(&["audit", "--netns", "blue"]).request.netns, NetnsTarget::File("/run/netns/blue".into()));
        assert_eq!(audit(&["audit", "--netns-pid", "42"]).request.netns, NetnsTarget::File("/proc/42/ns/net".into()));
        assert_eq!(audit(&["audit", "--sample", "2s"]).request.sample, Some(Duration::from_secs(2)));
        assert!(!audit(&["audit", "--sample", "2s", "--no-trace"]).request.trace);
        assert_eq!(audit(&["audit", "--socket-source", "proc"]).request.socket_source, SocketSourceChoice::Proc);
        for conflicting in [
            &["twtune", "audit", "--netns", "a", "--netns-pid", "1"][..],
            &["twtune", "audit", "--netns", "a", "--root", "/x"],
        ] {
            assert!(Cli::try_parse_from(conflicting).is_err(), "{conflicting:?}");
        }
    }

    #[test]
    fn profiles_subcommands() {
        let parse = |args: &[&str]| {
            Config::from_cli(Cli::try_parse_from(["twtune"].iter().chain(args)).expect("valid")).command
        };
        assert_eq!(
            parse(&["profiles", "list"]),
            CommandConfig::Profiles(ProfilesConfig::List { root: "/".into(), json: false })
        );
        assert_eq!(
            parse(&["profiles", "list", "--format", "json"]),
            CommandConfig::Profiles(ProfilesConfig::List { root: "/".into(), json: true })
        );
        assert_eq!(
            parse(&["profiles", "show", "baseline", "--root", "/r"]),
            CommandConfig::Profiles(ProfilesConfig::Show {
                profile: "baseline".into(),
                root: "/r".into(),
                json: false
            })
        );
        assert_eq!(
            parse(&["profiles", "show", "baseline", "--format", "json"]),
            CommandConfig::Profiles(ProfilesConfig::Show { profile: "baseline".into(), root: "/".into(), json: true })
        );
        assert_eq!(
            parse(&["profiles", "check", "a.yaml", "b.yaml"]),
            CommandConfig::Profiles(ProfilesConfig::Check {
                files: vec!["a.yaml".into(), "b.yaml".into()],
                root: "/".into()
            })
        );
        assert!(Cli::try_parse_from(["twtune", "profiles", "check"]).is_err(), "check needs files");
    }

    #[test]
    fn apply_and_rollback_resolve_paths_beneath_the_root() {
        let parse = |args: &[&str]| {
            Config::from_cli(Cli::try_parse_from(["twtune"].iter().chain(args)).expect("valid")).command
        };
        match parse(&["apply", "outbound-heavy", "--root", "/r", "--yes"]) {
            CommandConfig::Apply(a) => {
                assert_eq!(a.profile.as_deref(), Some("outbound-heavy"));
                assert_eq!(a.persist_file.as_deref(), Some("/etc/sysctl.d/90-twtune.conf"));
                assert_eq!(a.target.state_dir, PathBuf::from("/r/var/lib/twtune"));
                assert!(a.yes && !a.dry_run && !a.select && !a.persist_in_any_namespace);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["apply", "--recommended", "--no-persist", "--state-dir", "/s"]) {
            CommandConfig::Apply(a) => {
                assert_eq!((a.profile, a.persist_file), (None, None));
                assert_eq!(a.target.state_dir, PathBuf::from("/s"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["apply", "--recommended", "--persist"]) {
            CommandConfig::Apply(a) => {
                assert_eq!(a.persist_file.as_deref(), Some("/etc/sysctl.d/90-twtune.conf"));
                assert!(a.persist_in_any_namespace);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["rollback", "--list"]) {
            CommandConfig::Rollback(r) => assert!(r.list && r.id.is_none() && !r.json),
            other => panic!("{other:?}"),
        }
        match parse(&["rollback", "--list", "--format", "json"]) {
            CommandConfig::Rollback(r) => assert!(r.list && r.json),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["apply"][..],
            &["apply", "p", "--recommended"],
            &["apply", "p", "--no-persist", "--persist-file", "/x"],
            &["apply", "p", "--no-persist", "--persist"],
            &["rollback", "ID", "--list"],
            &["rollback", "--format", "json"],
        ] {
            assert!(Cli::try_parse_from(["twtune"].iter().chain(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn color_is_global() {
        let cli = Cli::try_parse_from(["twtune", "audit", "--color", "never"]).expect("valid");
        assert_eq!(Config::from_cli(cli).color, anstream::ColorChoice::Never);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in
            [&["twtune", "audit", "--top", "0"][..], &["twtune", "audit", "--format", "xml"], &["twtune", "bogus"]]
        {
            let err = Cli::try_parse_from(args).expect_err("invalid");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
