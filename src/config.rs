//! Resolved settings of a run: what the core works from. Built once from the parsed command line;
//! the only place where clap types turn into twtune's own.

use std::path::PathBuf;

use crate::cli::{AuditArgs, Cli, Command, ExplainArgs, FailOn, ProfilesCommand};
use crate::report::Format;
use crate::rules::Severity;

/// A whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Colour choice for everything printed to stdout.
    pub color: anstream::ColorChoice,
    pub command: CommandConfig,
}

/// The resolved subcommand.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandConfig {
    Audit(AuditConfig),
    Explain(ExplainConfig),
    Profiles(ProfilesConfig),
}

/// Everything `twtune explain` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplainConfig {
    pub format: Format,
    pub key: String,
    pub profile: Option<String>,
    pub root: PathBuf,
}

/// What a `profiles` subcommand needs.
#[derive(Clone, Debug, PartialEq)]
pub enum ProfilesConfig {
    List { root: PathBuf },
    Show { profile: String, root: PathBuf },
    Check { files: Vec<PathBuf>, root: PathBuf },
}

/// Everything `twtune audit` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditConfig {
    /// Exit 1 when a finding reaches this severity; `None`: never.
    pub fail_on: Option<Severity>,
    pub format: Format,
    /// A profile to check the host against (name or path).
    pub profile: Option<String>,
    /// The directory standing for `/`.
    pub root: PathBuf,
    /// How many destination buckets to list.
    pub top: usize,
}

impl Config {
    /// Resolves the parsed command line.
    pub fn from_cli(cli: Cli) -> Config {
        let command = match cli.command {
            Command::Audit(args) => CommandConfig::Audit(AuditConfig::from_args(args)),
            Command::Explain(ExplainArgs { key, root, format, profile }) => {
                CommandConfig::Explain(ExplainConfig { format, key, profile, root })
            }
            Command::Profiles(ProfilesCommand::List(root)) => {
                CommandConfig::Profiles(ProfilesConfig::List { root: root.root })
            }
            Command::Profiles(ProfilesCommand::Show { profile, root }) => {
                CommandConfig::Profiles(ProfilesConfig::Show { profile, root: root.root })
            }
            Command::Profiles(ProfilesCommand::Check { files, root }) => {
                CommandConfig::Profiles(ProfilesConfig::Check { files, root: root.root })
            }
        };
        Config { color: cli.color.as_choice(), command }
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
            format: args.format,
            profile: args.profile,
            root: args.root,
            top: args.top as usize,
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
    fn audit_defaults() {
        let config = audit(&["audit"]);
        assert_eq!(
            config,
            AuditConfig {
                fail_on: Some(Severity::Warn),
                format: Format::Human,
                profile: None,
                root: "/".into(),
                top: 10
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
        ]);
        let expected = AuditConfig {
            fail_on: None,
            format: Format::Json,
            profile: Some("./p.yaml".into()),
            root: "/tmp/x".into(),
            top: 3,
        };
        assert_eq!(config, expected);
        assert_eq!(audit(&["audit", "--fail-on", "crit"]).fail_on, Some(Severity::Crit));
    }

    #[test]
    fn profiles_subcommands() {
        let parse = |args: &[&str]| {
            Config::from_cli(Cli::try_parse_from(["twtune"].iter().chain(args)).expect("valid")).command
        };
        assert_eq!(parse(&["profiles", "list"]), CommandConfig::Profiles(ProfilesConfig::List { root: "/".into() }));
        assert_eq!(
            parse(&["profiles", "show", "baseline", "--root", "/r"]),
            CommandConfig::Profiles(ProfilesConfig::Show { profile: "baseline".into(), root: "/r".into() })
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
