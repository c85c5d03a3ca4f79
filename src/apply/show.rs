//! What apply and rollback print: the plan with each change's why and risk, what a rollback will
//! restore, and the journal listing.

use std::io::Write;

use anstyle::Style;

use super::Plan;
use super::journal::{Entry, StateDir};
use super::persist_file::Persisting;
use crate::report::human::wrapped;
use crate::sysctl::procsys::ProcSys;
use crate::words::count;

const HEADING: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

/// The plan: key, current -> new, why and risk.
pub(crate) fn plan(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{HEADING}Plan{HEADING:#} ({}): {}", plan.source, count(plan.changes.len(), "change"))?;
    let width = plan.changes.iter().map(|c| c.key.as_str().len()).max().unwrap_or(0);
    for change in &plan.changes {
        let (current, new) = (crate::error::printable(&change.current), crate::error::printable(&change.new));
        writeln!(out, "\n  {HEADING}{:<width$}{HEADING:#}  {current} -> {new}", change.key.as_str())?;
        wrapped(out, &format!("    {DIM}why:{DIM:#}  "), "          ", &change.why)?;
        wrapped(out, &format!("    {DIM}risk:{DIM:#} "), "          ", &change.risk)?;
    }
    Ok(())
}

/// Every journal entry, oldest first.
pub(crate) fn journal(entries: &[Entry], state: &StateDir, out: &mut dyn Write) -> std::io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "No journal entries in {}.", state.path().display());
    }
    writeln!(out, "{DIM}{:<20}  {:<20}  {:<12}  {:<24}  keys{DIM:#}", "id", "created", "status", "source")?;
    for e in entries {
        let status = e.status.name();
        let keys: Vec<&str> = e.changes.iter().map(|c| c.key.as_str()).collect();
        writeln!(out, "{:<20}  {:<20}  {:<12}  {:<24}  {}", e.id, e.created, status, e.source, keys.join(", "))?;
    }
    Ok(())
}

/// Version of `rollback --list --format json`; raised whenever a field changes meaning or disappears.
pub(crate) const JOURNAL_SCHEMA_VERSION: u32 = 1;

#[derive(serde::Serialize)]
struct JournalDocument<'a> {
    schema_version: u32,
    state_dir: String,
    entries: Vec<JournalEntry<'a>>,
}

/// An entry as the listing shows it: the previous content of the persisted file is left out.
#[derive(serde::Serialize)]
struct JournalEntry<'a> {
    id: &'a str,
    created: &'a str,
    twtune_version: &'a str,
    source: &'a str,
    status: &'static str,
    can_roll_back: bool,
    changes: &'a [super::journal::KeyChange],
    persist_file: Option<String>,
}

/// Every journal entry, oldest first, as one JSON object (docs/schema/rollback-list.json).
pub(crate) fn journal_json(entries: &[Entry], state: &StateDir, out: &mut dyn Write) -> std::io::Result<()> {
    let entries = entries
        .iter()
        .map(|e| JournalEntry {
            id: &e.id,
            created: &e.created,
            twtune_version: &e.twtune_version,
            source: &e.source,
            status: e.status.name(),
            can_roll_back: e.status.can_roll_back(),
            changes: &e.changes,
            persist_file: e.persist.as_ref().map(|p| p.path.to_string_lossy().into_owned()),
        })
        .collect();
    let state_dir = state.path().to_string_lossy().into_owned();
    let document = JournalDocument { schema_version: JOURNAL_SCHEMA_VERSION, state_dir, entries };
    crate::json::to_writer_pretty(&mut *out, &document)?;
    writeln!(out)
}

/// Said when the system already meets the plan's source.
pub(crate) fn nothing_to_apply(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "Nothing to apply: every setting of the {} is already met.", plan.source)
}

/// The changes as `--select` offers them: `key: current -> new`.
pub(crate) fn choices(plan: &Plan) -> Vec<String> {
    plan.changes.iter().map(|c| format!("{}: {} -> {}", c.key, c.current, c.new)).collect()
}

/// What an apply did: the journal entry that undoes it, and where the values were persisted, or
/// why they were not outside the initial network namespace.
pub(crate) fn applied(plan: &Plan, entry: &Entry, persisting: &Persisting, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "Applied {} (journal entry {}); `twtune rollback` undoes {}.",
        count(plan.changes.len(), "change"),
        entry.id,
        if plan.changes.len() == 1 { "it" } else { "them" }
    )?;
    match persisting {
        Persisting::To(target) => writeln!(out, "Persisted to {}.", target.shown)?,
        Persisting::OtherNamespace { shown } => writeln!(
            out,
            "Not persisted: the values were changed in this network namespace only; persisting them would write \
             {shown}, which at boot sets the host's initial network namespace, not this one (`--persist` writes it \
             anyway)."
        )?,
        // Said as a warning, with the other things the user should know about the reboot.
        Persisting::NotAsked => {}
    }
    Ok(())
}

/// Said before anything else when the entry to roll back belongs to an apply that was killed.
pub(crate) fn pending(entry: &Entry, out: &mut dyn Write) -> std::io::Result<()> {
    if entry.status == super::journal::Status::Pending {
        writeln!(
            out,
            "Journal entry {} never completed (the apply was killed, or could not mark it): restoring its previous values.",
            entry.id
        )?;
    }
    Ok(())
}

/// What a rollback of `entry` restores: each key from its value now to its value before the apply
/// (noting a key changed since), and what happens to the persisted file. A key name in the journal
/// that is not valid stops it there.
pub(crate) fn rollback(entry: &Entry, procsys: &ProcSys, out: &mut dyn Write) -> crate::error::Result<()> {
    let output = crate::error::Error::Output;
    writeln!(out, "{HEADING}Rollback of {}{HEADING:#} ({}, {})", entry.id, entry.source, entry.created)
        .map_err(output)?;
    for change in entry.changes.iter().rev() {
        let key = crate::sysctl::SysctlKey::parse(&change.key)?;
        let now = procsys.read(&key).unwrap_or_else(|_| "(unreadable)".into());
        let note = if now != change.after {
            format!("   (changed since the apply, which set {:?})", change.after)
        } else {
            String::new()
        };
        writeln!(out, "  {}: {now} -> {}{note}", change.key, change.before).map_err(output)?;
    }
    if let Some(persist) = &entry.persist {
        let action = if persist.previous.is_some() { "restore the previous content of" } else { "remove" };
        writeln!(out, "  and {action} {}", persist.path.display()).map_err(output)?;
    }
    Ok(())
}
