//! The sysctl.d tree beneath a root: the configuration files the next boot applies, and what they
//! set each key to.
//!
//! Two orders are in use (docs/kernel-model.md, "Boot-time configuration"), and they can disagree:
//! - **systemd-sysctl** (at boot): `/etc/sysctl.d`, `/run/sysctl.d`, `/usr/local/lib/sysctl.d`,
//!   `/usr/lib/sysctl.d`. A file name in an earlier directory masks the same name in later ones (a
//!   link to `/dev/null` masks it entirely); all files apply sorted by name, the later assignment
//!   wins. `/etc/sysctl.conf` is read only through a `99-sysctl.conf -> ../sysctl.conf` link.
//! - **procps `sysctl --system`**: the same directories plus `/lib/sysctl.d`, then `/etc/sysctl.conf`
//!   last, so it wins over everything.
//!
//! In both, an explicit key beats any glob, whatever the file order, and `-key` keeps a key out of
//! globs (checked against procps 4.0.2 and systemd-sysctl in tests).
//!
//! Reading happens once, in [`Tree::read`]; everything after is pure.

pub(crate) mod parse;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::{link_in_root, list_in_root, read_in_root};
use crate::problem::LineProblem;
use crate::sysctl::fold_whitespace;
use crate::sysctl::keys::Settings;
use crate::sysctl::keys::spec_of;
use parse::{ConfLine, effective_value, glob_matches, is_glob, parse_conf};

/// Directories systemd-sysctl reads, earliest first.
pub(crate) const SYSTEMD_DIRS: &[&str] =
    &["etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d"];
/// Directories `sysctl --system` reads, earliest first; `/etc/sysctl.conf` follows them.
pub(crate) const PROCPS_DIRS: &[&str] =
    &["etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d"];
/// Read last by `sysctl --system`; by systemd only through a link in `/etc/sysctl.d`.
pub(crate) const SYSCTL_CONF: &str = "etc/sysctl.conf";

/// One configuration file as a tool applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfFile {
    /// The path on the configured system (`/etc/sysctl.d/99-sysctl.conf`), not beneath the root.
    pub path: String,
    /// The file actually read, beneath the root, after following a link.
    pub source: PathBuf,
    pub lines: Vec<ConfLine>,
    pub problems: Vec<LineProblem>,
}

/// A value set by a file, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Assignment {
    /// As written, whitespace folded.
    pub value: String,
    pub file: String,
    pub line: usize,
    /// Set through a glob pattern rather than by name.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub glob: bool,
    /// Written with a `-` prefix: a failure to apply it is ignored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
}

impl Assignment {
    /// The value as compared with the kernel's: trailing comment dropped, whitespace folded.
    pub(crate) fn comparable(&self) -> String {
        fold_whitespace(effective_value(&self.value))
    }

    /// `file:line`.
    pub(crate) fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The configuration files both tools would read, in the order each applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    pub systemd: Vec<ConfFile>,
    pub procps: Vec<ConfFile>,
    /// `file:line: problem` for every malformed line, and files that could not be read.
    pub problems: Vec<String>,
    systemd_index: Index,
    procps_index: Index,
}

/// Where each key is assigned in one order's files, so that resolving a key costs its own
/// assignments and the globs, not every line of every file (a tree is untrusted input: 20 000 keys
/// must not take minutes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Index {
    /// (file, line) of every assignment, in application order.
    assignments: Vec<(usize, usize)>,
    /// Explicit key -> positions in `assignments`.
    by_key: HashMap<String, Vec<usize>>,
    /// Positions in `assignments` of glob keys.
    globs: Vec<usize>,
    /// `-key` exclusions of one key.
    excluded_keys: std::collections::HashSet<String>,
    /// `-pattern` exclusions with globs.
    excluded_globs: Vec<String>,
}

/// How many glob lines (assignments and exclusions) a tree may hold: every key resolved is matched
/// against each, and real trees have a handful. The rest are skipped with a problem.
const MAX_GLOBS: usize = 256;

impl Index {
    fn new(files: &[ConfFile]) -> Index {
        let mut index = Index::default();
        for (f, file) in files.iter().enumerate() {
            for (l, entry) in file.lines.iter().enumerate() {
                match entry {
                    ConfLine::Assign { key, .. } => {
                        let position = index.assignments.len();
                        index.assignments.push((f, l));
                        if is_glob(key) {
                            if index.globs.len() + index.excluded_globs.len() < MAX_GLOBS {
                                index.globs.push(position);
                            }
                        } else {
                            index.by_key.entry(key.clone()).or_default().push(position);
                        }
                    }
                    ConfLine::Exclude { pattern, .. } if is_glob(pattern) => {
                        if index.globs.len() + index.excluded_globs.len() < MAX_GLOBS {
                            index.excluded_globs.push(pattern.clone());
                        }
                    }
                    ConfLine::Exclude { pattern, .. } => {
                        index.excluded_keys.insert(pattern.clone());
                    }
                }
            }
        }
        index
    }
}

/// What the configuration does to one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// What systemd-sysctl sets at boot, if anything.
    pub systemd: Option<Assignment>,
    /// What `sysctl --system` sets, if anything.
    pub procps: Option<Assignment>,
    /// Every assignment that reaches the key, in procps order (which includes systemd's files).
    pub all: Vec<Assignment>,
}

impl Resolution {
    /// The assignments that win under neither order.
    pub(crate) fn shadowed(&self) -> Vec<&Assignment> {
        self.all.iter().filter(|a| Some(*a) != self.systemd.as_ref() && Some(*a) != self.procps.as_ref()).collect()
    }

    /// What the next boot sets: systemd-sysctl's value, else procps' (a system without systemd).
    pub(crate) fn next_boot(&self) -> Option<&Assignment> {
        self.systemd.as_ref().or(self.procps.as_ref())
    }

    /// Whether the two orders leave the key with different values.
    pub(crate) fn orders_differ(&self) -> bool {
        match (&self.systemd, &self.procps) {
            (Some(a), Some(b)) => a.comparable() != b.comparable(),
            (None, None) => false,
            _ => true,
        }
    }
}

impl Tree {
    /// Reads the configuration beneath `root`, every link resolved inside it. Missing directories
    /// are normal; an unreadable directory or file is a problem, not an error, so one bad file does
    /// not hide the rest.
    pub(crate) fn read(root: &Path) -> Result<Tree> {
        let dir = crate::files::open_root(root).map_err(|e| {
            Error::if_out_of_files(&e, || format!("opening {}", root.display()))
                .unwrap_or_else(|| Error::Root { path: root.to_path_buf(), reason: e.to_string() })
        })?;
        let tree = Beneath { path: root, dir: &dir };
        // procps reads every directory systemd reads, so its list (and its read problems) covers
        // systemd's too.
        let mut problems = Vec::new();
        let systemd = collect(&tree, SYSTEMD_DIRS, &mut Vec::new())?;
        let mut procps = collect(&tree, PROCPS_DIRS, &mut problems)?;
        if let Some(file) = read_conf(&tree, SYSCTL_CONF, "/etc/sysctl.conf", &mut problems)? {
            procps.push(file);
        }
        // /etc/sysctl.conf is often read twice (as 99-sysctl.conf and at the end): report it once.
        let mut seen = std::collections::BTreeSet::new();
        for file in procps.iter().filter(|f| seen.insert(f.source.clone())) {
            problems.extend(file.problems.iter().map(|p| format!("{}:{}: {}", file.path, p.line, p.problem)));
        }
        let procps_index = Index::new(&procps);
        let globs: usize = procps
            .iter()
            .flat_map(|f| &f.lines)
            .filter(
                |l| matches!(l, ConfLine::Assign { key, .. } | ConfLine::Exclude { pattern: key, .. } if is_glob(key)),
            )
            .count();
        if globs > MAX_GLOBS {
            problems.push(format!(
                "{globs} glob lines in the sysctl.d files: only the first {MAX_GLOBS} are honoured, the rest skipped"
            ));
        }
        Ok(Tree { systemd_index: Index::new(&systemd), procps_index, systemd, procps, problems })
    }

    /// What both orders do to `key` (dotted form).
    pub(crate) fn resolve(&self, key: &str) -> Resolution {
        let all = assignments(&self.procps, &self.procps_index, key);
        Resolution { systemd: winner(&assignments(&self.systemd, &self.systemd_index, key)), procps: winner(&all), all }
    }

    /// Every key assigned by name (not by glob) in any file, sorted.
    pub(crate) fn explicit_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .procps
            .iter()
            .flat_map(|f| &f.lines)
            .filter_map(|e| match e {
                ConfLine::Assign { key, .. } if !is_glob(key) => Some(key.clone()),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// What `key` will be after the next boot, and why: a file's value and its place, or the kernel
    /// default (`None` when twtune does not know it).
    pub(crate) fn boot_value(&self, key: &str, settings: &Settings) -> (Option<String>, String) {
        match self.resolve(key).next_boot() {
            Some(a) => (Some(a.comparable()), a.place()),
            None => {
                (spec_of(key).and_then(|s| s.boot_default(settings)), "the kernel default; no file sets it".to_string())
            }
        }
    }

    /// The files each order reads, in order, for reports.
    pub(crate) fn file_lists(&self) -> (Vec<String>, Vec<String>) {
        let paths = |files: &[ConfFile]| files.iter().map(|f| f.path.clone()).collect();
        (paths(&self.systemd), paths(&self.procps))
    }
}

/// Assignments reaching `key` from `files` (indexed by `index`), in order. Globs are dropped when
/// the key is excluded (`-key`) anywhere; explicit assignments are kept either way.
fn assignments(files: &[ConfFile], index: &Index, key: &str) -> Vec<Assignment> {
    let excluded =
        index.excluded_keys.contains(key) || index.excluded_globs.iter().any(|pattern| glob_matches(pattern, key));
    let mut positions: Vec<usize> = index.by_key.get(key).cloned().unwrap_or_default();
    if !excluded {
        positions.extend(index.globs.iter().copied().filter(|p| {
            let (f, l) = index.assignments[*p];
            matches!(&files[f].lines[l], ConfLine::Assign { key: k, .. } if glob_matches(k, key))
        }));
    }
    positions.sort_unstable();
    positions
        .into_iter()
        .filter_map(|p| {
            let (f, l) = index.assignments[p];
            let file = &files[f];
            let ConfLine::Assign { key: k, value, ignore_failure, line } = &file.lines[l] else { return None };
            Some(Assignment {
                value: fold_whitespace(value),
                file: file.path.clone(),
                line: *line,
                glob: is_glob(k),
                ignore_failure: *ignore_failure,
            })
        })
        .collect()
}

/// The assignment that takes effect: the last explicit one, else the last glob one.
fn winner(assignments: &[Assignment]) -> Option<Assignment> {
    assignments.iter().rev().find(|a| !a.glob).or_else(|| assignments.last()).cloned()
}

/// A root directory: its path, for names in messages, and the descriptor every read resolves in.
struct Beneath<'a> {
    path: &'a Path,
    dir: &'a OwnedFd,
}

/// The largest configuration file read; a larger one is a problem, not memory spent.
const MAX_CONF_BYTES: u64 = 1 << 20;

/// The files of `dirs` beneath the root in application order: first directory wins a file name, a
/// link to /dev/null masks the name, the rest sorted by file name. Running out of descriptors is
/// an error: a file that could not be opened for want of one is no problem of the tree.
fn collect(root: &Beneath<'_>, dirs: &[&str], problems: &mut Vec<String>) -> Result<Vec<ConfFile>> {
    let mut chosen: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for dir in dirs {
        let mut names = match list_in_root(root.dir, Path::new(dir)) {
            Ok(names) => names,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::InvalidInput) => {
                continue;
            }
            Err(e) => {
                if let Some(error) = Error::if_out_of_files(&e, || format!("listing {}", root.path.join(dir).display()))
                {
                    return Err(error);
                }
                problems.push(format!("/{dir}: cannot read the directory: {e}"));
                continue;
            }
        };
        names.retain(|n| n.ends_with(".conf"));
        names.sort();
        for name in names {
            if chosen.contains_key(&name) {
                continue;
            }
            let relative = format!("{dir}/{name}");
            let masked =
                link_in_root(root.dir, Path::new(&relative)).is_ok_and(|target| target == Path::new("/dev/null"));
            chosen.insert(name, (!masked).then_some(relative));
        }
    }
    let mut files = Vec::new();
    for relative in chosen.into_values().flatten() {
        files.extend(read_conf(root, &relative, &format!("/{relative}"), problems)?);
    }
    Ok(files)
}

/// Reads and parses one file, a link resolved inside the root (an absolute target such as
/// `/etc/sysctl.conf` means `ROOT/etc/sysctl.conf`). A missing file is `None`; an unreadable,
/// dangling, oversized or not regular one (a FIFO, a device) is `None` with a problem; running out
/// of descriptors is an error.
fn read_conf(root: &Beneath<'_>, relative: &str, shown: &str, problems: &mut Vec<String>) -> Result<Option<ConfFile>> {
    let path = root.path.join(relative);
    let link = link_in_root(root.dir, Path::new(relative)).ok();
    // The file the link names, for telling two names of one file apart.
    let source = match &link {
        Some(target) if target.is_absolute() => root.path.join(target.strip_prefix("/").unwrap_or(target)),
        Some(target) => path.parent().map_or(target.clone(), |dir| dir.join(target)),
        None => path.clone(),
    };
    match read_in_root(root.dir, Path::new(relative), MAX_CONF_BYTES) {
        Ok(bytes) => {
            let parsed = parse_conf(&String::from_utf8_lossy(&bytes));
            Ok(Some(ConfFile { path: shown.to_string(), source, lines: parsed.lines, problems: parsed.problems }))
        }
        Err(e) if e.kind() == ErrorKind::NotFound && link.is_none() => Ok(None),
        Err(e) => match Error::if_out_of_files(&e, || format!("reading {}", path.display())) {
            Some(error) => Err(error),
            None => {
                problems.push(format!("{shown}: cannot read: {e}"));
                Ok(None)
            }
        },
    }
}

#[cfg(test)]
mod tests;
