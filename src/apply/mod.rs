//! `twtune apply` and `twtune rollback`: a plan of changes, checked up front, applied as one
//! transaction (journal first, each write read back, everything restored on any failure or Ctrl-C),
//! then persisted atomically to a sysctl.d file.

pub mod confirm;
pub mod journal;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keys::spec_of;
use crate::persisted::parse::{Entry as ConfEntry, parse_conf};
use crate::ports::PortRange;
use crate::procsys::ProcSys;
use crate::rules::Finding;
use crate::sysctl::{SysctlKey, fold_whitespace};
use journal::{Entry, KeyChange, PersistRecord, StateDir, Status, Timestamp};

/// One key to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: SysctlKey,
    pub current: String,
    pub new: String,
    pub why: String,
    pub risk: String,
}

/// The changes an apply would make, and where they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `profile NAME` or `recommended`.
    pub source: String,
    pub changes: Vec<Change>,
}

impl Plan {
    /// The plan for findings that name a key and a value to set: the first finding per key wins
    /// (findings come most severe first), and keys already at that value are left out.
    /// `why` gives the reason to show for a finding (a profile's `why` rather than the message).
    pub fn from_findings(source: &str, findings: &[Finding], why: impl Fn(&Finding) -> String) -> Result<Plan> {
        let mut changes: Vec<Change> = Vec::new();
        for f in findings {
            let (Some(key), Some(current), Some(new)) = (&f.key, &f.current, &f.recommended) else { continue };
            if fold_whitespace(current) == fold_whitespace(new) || changes.iter().any(|c| c.key.as_str() == key) {
                continue;
            }
            changes.push(Change {
                key: SysctlKey::parse(key)?,
                current: current.clone(),
                new: fold_whitespace(new),
                why: why(f),
                risk: fold_whitespace(&f.risk),
            });
        }
        Ok(Plan { source: source.to_string(), changes })
    }

    /// Refuses what the kernel would refuse, before anything is written: values outside a key's
    /// range, and a port range below the unprivileged port start (current or new).
    pub fn check(&self, current_value: impl Fn(&str) -> Option<String>) -> Result<()> {
        let refuse = |key: &SysctlKey, problem: String| Error::Refused { key: key.to_string(), problem };
        for change in &self.changes {
            if let Some(spec) = spec_of(change.key.as_str()) {
                spec.check_value(&change.new).map_err(|p| refuse(&change.key, p))?;
                if spec.read_only {
                    return Err(refuse(&change.key, "the kernel does not allow writing it".into()));
                }
            }
        }
        let after = |key: &str| {
            self.changes.iter().find(|c| c.key.as_str() == key).map(|c| c.new.clone()).or_else(|| current_value(key))
        };
        if let (Some(range), Some(start)) =
            (after("net.ipv4.ip_local_port_range"), after("net.ipv4.ip_unprivileged_port_start"))
            && let (Ok(range), Ok(start)) = (PortRange::parse(&range), start.parse::<i64>())
            && range.starts_below(start)
        {
            let key = SysctlKey::parse("net.ipv4.ip_local_port_range")?;
            return Err(refuse(
                &key,
                format!("{range} would start below ip_unprivileged_port_start {start}, which the kernel refuses"),
            ));
        }
        Ok(())
    }

    /// The changes in the order to write them: the kernel checks ip_local_port_range against
    /// ip_unprivileged_port_start on each write, so a lowered start goes first and a raised one last.
    pub fn write_order(&self) -> Vec<&Change> {
        let start = "net.ipv4.ip_unprivileged_port_start";
        let lowering = self
            .changes
            .iter()
            .find(|c| c.key.as_str() == start)
            .is_some_and(|c| c.new.parse::<i64>().ok() < c.current.parse::<i64>().ok());
        let mut ordered: Vec<&Change> = self.changes.iter().collect();
        ordered.sort_by_key(|c| match (c.key.as_str() == start, lowering) {
            (true, true) => 0,
            (true, false) => 2,
            (false, _) => 1,
        });
        ordered
    }

    /// Keeps only the changes at these indexes (from a multi-select).
    pub fn select(&mut self, indexes: &[usize]) {
        let mut index = 0;
        self.changes.retain(|_| {
            let keep = indexes.contains(&index);
            index += 1;
            keep
        });
    }
}

/// Where the applied values are persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistTarget {
    /// The file beneath the root.
    pub path: PathBuf,
    /// The same file as the configured system sees it (`/etc/sysctl.d/90-twtune.conf`).
    pub shown: String,
}

/// What a transaction may be told while it runs.
pub struct Controls {
    /// Set by SIGINT/SIGTERM; checked between writes.
    pub interrupted: Arc<AtomicBool>,
    /// Pause after each write (tests use it to interrupt mid-way).
    pub write_delay: Option<Duration>,
}

/// What an apply did.
#[derive(Debug)]
pub struct Applied {
    pub entry: Entry,
}

/// Applies `plan`: takes the lock, journals the old state, writes every key (reading each back),
/// persists, and marks the entry applied. On any failure or interrupt every written key is
/// restored, the persisted file is left as it was, and the error says what was restored.
pub fn apply(
    plan: &Plan,
    procsys: &ProcSys,
    state: &StateDir,
    persist: Option<&PersistTarget>,
    controls: &Controls,
) -> Result<Applied> {
    let _lock = state.lock()?;
    let now = Timestamp::now();
    // Read again under the lock: the plan's view may be stale.
    let mut changes = Vec::new();
    for change in plan.write_order() {
        let before = procsys.read(&change.key).map_err(|source| Error::Read {
            path: procsys.path_of(&change.key),
            source,
            hint: "",
        })?;
        changes.push((change, before));
    }
    let persist_record = match persist {
        Some(target) => Some(PersistRecord { path: target.path.clone(), previous: read_optional(&target.path)? }),
        None => None,
    };
    let new_content = persist.map(|target| {
        let previous = persist_record.as_ref().and_then(|r| r.previous.as_deref());
        (target, render_persist_file(previous, plan, &now))
    });
    let mut entry = Entry {
        id: state.new_id(&now),
        created: now.rfc3339.clone(),
        twtune_version: env!("CARGO_PKG_VERSION").to_string(),
        source: plan.source.clone(),
        status: Status::Pending,
        changes: changes
            .iter()
            .map(|(c, before)| KeyChange { key: c.key.to_string(), before: before.clone(), after: c.new.clone() })
            .collect(),
        persist: persist_record,
    };
    state.save(&entry)?;

    let writes: Vec<(SysctlKey, String, String)> =
        changes.iter().map(|(c, before)| (c.key.clone(), before.clone(), c.new.clone())).collect();
    let file = new_content.map(|(target, content)| (target.path.clone(), Some(content)));
    match transaction(procsys, &writes, file.as_ref(), controls) {
        Ok(()) => {
            entry.status = Status::Applied;
            state.save(&entry)?;
            Ok(Applied { entry })
        }
        Err(err) => {
            entry.status = Status::Failed;
            // The failure is what the user needs to read; a journal that cannot be marked is secondary.
            let _ = state.save(&entry);
            Err(err)
        }
    }
}

/// Restores a journal entry: every key back to its value before the apply, and the persisted file
/// back to its previous content (removed if it did not exist). Transactional like `apply`.
pub fn rollback(entry: &mut Entry, procsys: &ProcSys, state: &StateDir, controls: &Controls) -> Result<()> {
    let _lock = state.lock()?;
    // Read the entry again under the lock: another rollback may have finished meanwhile.
    let current = state.entries()?.into_iter().find(|e| e.id == entry.id);
    if !current.as_ref().is_some_and(|e| e.status.can_roll_back()) {
        return Err(Error::Apply(format!("journal entry {} was rolled back meanwhile; nothing was changed", entry.id)));
    }
    let mut writes = Vec::new();
    for change in entry.changes.iter().rev() {
        let key = SysctlKey::parse(&change.key)?;
        let now = procsys.read(&key).map_err(|source| Error::Read { path: procsys.path_of(&key), source, hint: "" })?;
        writes.push((key, now, change.before.clone()));
    }
    let file = entry.persist.as_ref().map(|p| (p.path.clone(), p.previous.clone()));
    transaction(procsys, &writes, file.as_ref(), controls)?;
    entry.status = Status::RolledBack;
    state.save(entry)
}

/// Writes `(key, old, new)` in order, then sets the file to its new content (`None`: remove it).
/// Any failure, or an interrupt before the file is written, restores every key already written and
/// leaves the file as it was.
fn transaction(
    procsys: &ProcSys,
    writes: &[(SysctlKey, String, String)],
    file: Option<&(PathBuf, Option<String>)>,
    controls: &Controls,
) -> Result<()> {
    let mut done: Vec<&(SysctlKey, String, String)> = Vec::new();
    for write in writes {
        if controls.interrupted.load(Ordering::SeqCst) {
            return Err(undo(procsys, &done, "interrupted".into()));
        }
        let (key, _, new) = write;
        if let Err(e) = procsys.write(key, new) {
            // A refused write left the key as it was; a clamped or rewritten one changed it, so it is
            // restored with the others.
            if matches!(e, crate::procsys::WriteError::NotKept { .. }) {
                done.push(write);
            }
            return Err(undo(procsys, &done, format!("writing {key} = {new:?} failed: {e}")));
        }
        done.push(write);
        if let Some(delay) = controls.write_delay {
            std::thread::sleep(delay);
        }
    }
    if controls.interrupted.load(Ordering::SeqCst) {
        return Err(undo(procsys, &done, "interrupted".into()));
    }
    if let Some((path, content)) = file {
        let result = match content {
            Some(text) => write_atomically(path, text),
            None => std::fs::remove_file(path)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
        };
        if let Err(e) = result {
            return Err(undo(procsys, &done, format!("writing {} failed: {e}", path.display())));
        }
    }
    Ok(())
}

/// Restores the written keys (last first) and builds the error that reports it all.
fn undo(procsys: &ProcSys, done: &[&(SysctlKey, String, String)], what: String) -> Error {
    let mut restored = Vec::new();
    let mut failed = Vec::new();
    for (key, old, _) in done.iter().rev() {
        match procsys.write(key, old) {
            Ok(()) => restored.push(format!("{key}={old:?}")),
            Err(e) => failed.push(format!("{key} (still changed: {e})")),
        }
    }
    let restored_text = if restored.is_empty() {
        "nothing had been changed".to_string()
    } else {
        format!("restored {}", restored.join(", "))
    };
    let mut message = format!("{what}; {restored_text}; the persisted file is unchanged");
    if !failed.is_empty() {
        message.push_str(&format!("; COULD NOT RESTORE {}", failed.join(", ")));
    }
    Error::Apply(message)
}

/// The content of a file, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path: path.to_path_buf(), source, hint: "" }),
    }
}

/// How every file twtune persists to begins; a file without it is not twtune's to rewrite.
pub const PERSIST_HEADER: &str = "# Written by twtune ";

/// The persisted file after an apply: a header, the keys an earlier apply put there and this plan
/// does not touch, then this plan's keys, each after a comment with its why.
pub fn render_persist_file(previous: Option<&str>, plan: &Plan, now: &Timestamp) -> String {
    let mut text = format!(
        "{PERSIST_HEADER}{} (`twtune apply`, {}) on {}.\n# `twtune rollback` restores what was here before; \
         edits here are kept only for keys twtune does not set.\n",
        env!("CARGO_PKG_VERSION"),
        plan.source,
        now.rfc3339
    );
    let kept: Vec<(String, String)> = previous
        .map(|p| parse_conf(p).entries)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            ConfEntry::Assign { key, value, .. } if !plan.changes.iter().any(|c| c.key.as_str() == key) => {
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

/// Writes a file so that readers see the old or the new content, never a mix: a temporary file in
/// the same directory, fsync, rename over the target, fsync of the directory.
pub fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    // `x.conf` has the empty path as parent: that is the current directory.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.twtune-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests;
