//! The transaction of an apply or a rollback: take the lock, journal the old state before the first
//! write, write each key through [`ProcSys`] (read back), then the persisted file; on any failure or
//! interrupt restore every key already written, leave the file as it was, and say what was restored.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::journal::{Entry, KeyChange, PersistRecord, StateDir, Status, Timestamp};
use super::persist_file::{PersistTarget, render_persist_file};
use super::{Change, Plan};
use crate::error::{Error, Result};
use crate::files::{read_optional_no_links, write_atomically};
use crate::sysctl::SysctlKey;
use crate::sysctl::procsys::{ProcSys, WriteError};

/// What a transaction may be told while it runs.
pub(crate) struct Controls {
    /// Set by SIGINT, SIGTERM, SIGHUP or SIGQUIT; checked between writes.
    pub interrupted: Arc<AtomicBool>,
    /// Pause after each write (tests use it to interrupt mid-way).
    pub write_delay: Option<Duration>,
}

/// What an apply did.
#[derive(Debug)]
pub(crate) struct Applied {
    pub entry: Entry,
    /// Said when the changes are made but the journal could not record it.
    pub warning: Option<String>,
}

/// Applies `plan`: takes the lock, journals the old state, writes every key (reading each back),
/// persists, and marks the entry applied. On any failure or interrupt every written key is
/// restored, the persisted file is left as it was, and the error says what was restored.
pub(crate) fn apply(
    plan: &Plan,
    procsys: &ProcSys,
    state: &StateDir,
    persist: Option<&PersistTarget>,
    controls: &Controls,
) -> Result<Applied> {
    let _lock = state.lock()?;
    let now = Timestamp::now();
    // Read again under the lock: the plan's view may be stale.
    let changes = read_before(plan, procsys)?;
    let persist_record = persist.map(read_persisted).transpose()?;
    let new_content = persist.map(|target| {
        let previous = persist_record.as_ref().and_then(|r| r.previous.as_deref());
        (target, render_persist_file(previous, plan, &now))
    });
    let entry = Entry {
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
    let result = commit(procsys, &writes, file.as_ref(), controls);
    record_outcome(state, entry, result)
}

/// Each change of `plan`, in write order, with the key's value before it.
fn read_before<'p>(plan: &'p Plan, procsys: &ProcSys) -> Result<Vec<(&'p Change, String)>> {
    let mut changes = Vec::new();
    for change in plan.write_order() {
        let before = procsys.read(&change.key).map_err(|source| Error::Read {
            path: procsys.path_of(&change.key),
            source,
            hint: "",
        })?;
        changes.push((change, before));
    }
    Ok(changes)
}

/// The persisted file's path and its content before the apply (`None`: it does not exist).
fn read_persisted(target: &PersistTarget) -> Result<PersistRecord> {
    Ok(PersistRecord {
        path: target.path.clone(),
        previous: read_optional_no_links(&target.path).map_err(|source| Error::Read {
            path: target.path.clone(),
            source,
            hint: "",
        })?,
    })
}

/// Marks `entry` with how the commit ended and saves it; returns what the apply did, or the error.
fn record_outcome(state: &StateDir, mut entry: Entry, result: Result<()>) -> Result<Applied> {
    match result {
        Ok(()) => {
            entry.status = Status::Applied;
            // Everything is changed now: a journal that cannot be marked (a full disk) does not undo
            // that. The entry stays pending, which rollback treats as applied.
            let warning = state.save(&entry).err().map(|e| {
                format!("applied, but the journal entry could not be marked applied ({e}); it stays pending, and `twtune rollback` still undoes it")
            });
            Ok(Applied { entry, warning })
        }
        Err(Error::Incomplete(message)) => {
            // Some keys kept their new values: the entry keeps every previous value for rollback.
            entry.status = Status::Incomplete;
            let _ = state.save(&entry);
            Err(Error::Incomplete(format!(
                "{message}; journal entry {} keeps their previous values: `twtune rollback {}` restores them",
                entry.id, entry.id
            )))
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
pub(crate) fn rollback(
    entry: &mut Entry,
    procsys: &ProcSys,
    state: &StateDir,
    controls: &Controls,
) -> Result<Option<String>> {
    let _lock = state.lock()?;
    // Read the entry again under the lock: another rollback may have finished meanwhile.
    let current = state.entries()?.into_iter().find(|e| e.id == entry.id);
    if !current.as_ref().is_some_and(|e| e.status.can_roll_back()) {
        return Err(Error::Journal(format!(
            "journal entry {} was rolled back meanwhile; nothing was changed",
            entry.id
        )));
    }
    let mut writes = Vec::new();
    for change in entry.changes.iter().rev() {
        let key = SysctlKey::parse(&change.key)?;
        let now = procsys.read(&key).map_err(|source| Error::Read { path: procsys.path_of(&key), source, hint: "" })?;
        writes.push((key, now, change.before.clone()));
    }
    // The file must still be twtune's (or gone): an entry names a path, and root is about to
    // overwrite or remove it.
    if let Some(persist) = &entry.persist
        && let Some(text) = read_optional_no_links(&persist.path).map_err(|source| Error::Read {
            path: persist.path.clone(),
            source,
            hint: "",
        })?
        && !text.starts_with(super::persist_file::PERSIST_HEADER)
    {
        return Err(Error::Journal(format!(
            "journal entry {} would restore {}, which twtune did not write (no twtune header); nothing was \
             changed",
            entry.id,
            persist.path.display()
        )));
    }
    let file = entry.persist.as_ref().map(|p| (p.path.clone(), p.previous.clone()));
    commit(procsys, &writes, file.as_ref(), controls)?;
    entry.status = Status::RolledBack;
    // Everything is restored: a journal that cannot be marked (a full disk) does not change that, and
    // a later rollback of the entry only writes the same values again.
    Ok(state.save(entry).err().map(|e| {
        format!("rolled back, but the journal entry could not be marked rolled-back ({e}); a later rollback of it changes nothing")
    }))
}

/// Writes `(key, old, new)` in order, then sets the file to its new content (`None`: remove it).
/// Any failure, or an interrupt before the file is written, restores every key already written and
/// leaves the file as it was.
pub(super) fn commit(
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
            if matches!(e, WriteError::NotKept { .. }) {
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
            None => crate::files::remove_no_links(path),
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
    let restored_text = match (restored.is_empty(), failed.is_empty()) {
        (true, true) => "nothing had been changed".to_string(),
        (true, false) => "nothing could be restored".to_string(),
        _ => format!("restored {}", restored.join(", ")),
    };
    let message = format!("{what}; {restored_text}; the persisted file is unchanged");
    if failed.is_empty() {
        Error::Transaction(message)
    } else {
        Error::Incomplete(format!("{message}; COULD NOT RESTORE {}, which keep their new values", failed.join(", ")))
    }
}
