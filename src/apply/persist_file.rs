//! The file applied values are persisted to: whether an apply writes it at all (not with
//! `--no-persist`, and not from a network namespace other than the initial one unless
//! `--persist`), which files twtune may write (`--persist-file`: an absolute `.conf` path, never a
//! link, absent or written by twtune before), what it holds after an apply, and which other files
//! would override it at the next boot.

use std::path::{Path, PathBuf};

use super::Plan;
use super::journal::Timestamp;
use crate::error::{Error, Result};
use crate::files::beneath;
use crate::sysctl::fold_whitespace;
use crate::sysctl_d::Tree;
use crate::sysctl_d::parse::{ConfLine, parse_conf};

/// Where the applied values are persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PersistTarget {
    /// The file beneath the root.
    pub path: PathBuf,
    /// The same file as the configured system sees it (`/etc/sysctl.d/90-twtune.conf`).
    pub shown: String,
}

/// What an apply does with the persisted file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Persisting {
    /// It writes this file.
    To(PersistTarget),
    /// It leaves it alone: `--no-persist`.
    NotAsked,
    /// It leaves `shown` alone: the values are changed in a network namespace that is not the
    /// initial one, and at boot the file would set the initial one (the host's), not this one.
    OtherNamespace { shown: String },
}

impl Persisting {
    /// The file written, if any.
    pub(crate) fn target(&self) -> Option<&PersistTarget> {
        match self {
            Persisting::To(target) => Some(target),
            Persisting::NotAsked | Persisting::OtherNamespace { .. } => None,
        }
    }

    /// What to warn about once `plan` is applied: the files that override the one written at the
    /// next boot, or, with `--no-persist`, that the values do not survive it. Nothing outside the
    /// initial namespace: not persisting is right there, and the output says why.
    pub(crate) fn warnings(&self, root: &Path, plan: &Plan) -> Vec<String> {
        match self {
            Persisting::To(target) => overrides(root, plan, target),
            Persisting::NotAsked => {
                vec!["not persisted (--no-persist): these values are lost at the next reboot".to_string()]
            }
            Persisting::OtherNamespace { .. } => Vec::new(),
        }
    }
}

/// What to do with the file `shown` (`None`: `--no-persist`) when the values are changed in a
/// network namespace that is the initial one (`Some(true)`), is not (`Some(false)`), or cannot be
/// told (`None`: an offline `--root` tree, or no view of the host's namespace), where it is
/// persisted as ever. Outside the initial namespace it is persisted only when `forced`
/// (`--persist`): systemd-sysctl and `sysctl --system` run at boot in the initial namespace, so the
/// file would set the host's values, not this namespace's.
pub(crate) fn persisting(
    root: &Path,
    shown: Option<&str>,
    initial_namespace: Option<bool>,
    forced: bool,
) -> Result<Persisting> {
    match shown {
        None => Ok(Persisting::NotAsked),
        Some(shown) if initial_namespace == Some(false) && !forced => {
            Ok(Persisting::OtherNamespace { shown: shown.to_string() })
        }
        Some(shown) => persist_target(root, shown).map(Persisting::To),
    }
}

/// The file to persist to: an absolute `.conf` path, not a link (a rename would replace the link,
/// not its target), and either absent or written by twtune before (its header says so), so that
/// no file of someone else's is rewritten.
pub(crate) fn persist_target(root: &Path, shown: &str) -> Result<PersistTarget> {
    let refuse = |why: &str| Error::PersistFile { shown: shown.to_string(), why: why.to_string() };
    // The command line's path was read lossily: a name that was not UTF-8 is refused, not bent.
    if shown.contains('\u{fffd}') {
        return Err(refuse("the path is not valid UTF-8; give a UTF-8 path"));
    }
    if Path::new(shown).components().any(|c| c == std::path::Component::ParentDir) {
        return Err(refuse("the path climbs with `..`; give it plainly"));
    }
    if !shown.starts_with('/') || !shown.ends_with(".conf") {
        return Err(refuse("give an absolute path to a .conf file, such as /etc/sysctl.d/90-twtune.conf"));
    }
    // Absolute, because the journal keeps it: a rollback run from another directory must find the
    // same file when --root was given as a relative path.
    let path = beneath(root, Path::new(shown));
    let path = std::path::absolute(&path).unwrap_or(path);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(refuse("it is a link; give the file itself")),
        Ok(meta) if !meta.is_file() => return Err(refuse("it is not a regular file")),
        Ok(_) => {
            let text = crate::files::read_optional_no_links(&path)
                .map_err(|source| Error::Read { path: path.clone(), source, hint: "" })?
                .unwrap_or_default();
            if !text.starts_with(PERSIST_HEADER) {
                return Err(refuse(
                    "it exists and twtune did not write it (no twtune header); choose a file of twtune's own",
                ));
            }
        }
        Err(_) => {}
    }
    Ok(PersistTarget { path, shown: shown.to_string() })
}

/// How every file twtune persists to begins; a file without it is not twtune's to rewrite.
pub(crate) const PERSIST_HEADER: &str = "# Written by twtune ";

/// The persisted file after an apply: a header, the keys an earlier apply put there and this plan
/// does not touch, then this plan's keys, each after a comment with its why.
pub(crate) fn render_persist_file(previous: Option<&str>, plan: &Plan, now: &Timestamp) -> String {
    let mut text = format!(
        "{PERSIST_HEADER}{} (`twtune apply`, {}) on {}.\n# `twtune rollback` restores what was here before; \
         edits here are kept only for keys twtune does not set.\n",
        env!("CARGO_PKG_VERSION"),
        plan.source,
        now.rfc3339
    );
    let kept: Vec<(String, String)> = previous
        .map(|p| parse_conf(p).lines)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            ConfLine::Assign { key, value, .. } if !plan.changes.iter().any(|c| c.key.as_str() == key) => {
                Some((key, value))
            }
            _ => None,
        })
        .collect();
    for (key, value) in kept {
        text.push_str(&format!("\n# set by an earlier twtune apply\n{key} = {value}\n"));
    }
    for change in &plan.changes {
        // One comment line per key: the why, folded, so the file stays one assignment per line.
        text.push_str(&format!("\n# {}\n{} = {}\n", fold_whitespace(&change.why), change.key, change.new));
    }
    text
}

/// After persisting: every key another file will set at the next boot, under either order, named
/// with that file (one warning each; none when the tree cannot be read).
pub(crate) fn overrides(root: &Path, plan: &Plan, target: &PersistTarget) -> Vec<String> {
    let Ok(tree) = Tree::read(root) else { return Vec::new() };
    let mut warnings = Vec::new();
    for change in &plan.changes {
        let r = tree.resolve(change.key.as_str());
        for (order, winner) in [("systemd-sysctl", &r.systemd), ("sysctl --system", &r.procps)] {
            if let Some(w) = winner
                && w.file != target.shown
            {
                warnings.push(format!(
                    "at the next boot ({order}) {} sets {} = {:?} and overrides {}",
                    w.place(),
                    change.key,
                    w.comparable(),
                    target.shown
                ));
            }
        }
    }
    warnings
}
