//! `twtune rollback [ID]` and `twtune rollback --list`: which journal entry, what it restores,
//! consent, and the transaction that restores it.

use std::io::Write;

use crate::apply::confirm::{Confirm, consent};
use crate::apply::journal::{StateDir, entry_to_roll_back};
use crate::apply::{preflight, show, transaction};
use crate::config::RollbackConfig;
use crate::error::{Error, Outcome, Result};
use crate::root::Root;
use crate::sysctl::SysctlKey;
use crate::words::count;

pub(crate) fn run(config: &RollbackConfig, out: &mut dyn Write, confirm: &dyn Confirm) -> Result<Outcome> {
    let output = Error::Output;
    let state = StateDir::new(&config.target.state_dir);
    let entries = state.entries()?;
    if config.list {
        let list = if config.json { show::journal_json } else { show::journal };
        list(&entries, &state, out).map_err(output)?;
        return Ok(Outcome::Clean);
    }
    let mut entry = entry_to_roll_back(&entries, config.id.as_deref(), &state)?;
    show::pending(&entry, out).map_err(output)?;
    let root = Root::open(&config.target.root)?;
    let procsys = preflight::open_procsys(root.path())?;
    show::rollback(&entry, &procsys, out)?;
    let keys: Vec<SysctlKey> = entry.changes.iter().map(|c| SysctlKey::parse(&c.key)).collect::<Result<_>>()?;
    preflight::check_permitted(&procsys, keys.iter(), &state, entry.persist.as_ref().map(|p| p.path.as_path()))?;
    let prompt = format!("Roll back {}?", count(entry.changes.len(), "change"));
    if !consent(config.yes, config.target.interactive, confirm, &prompt)? {
        writeln!(out, "Nothing was changed.").map_err(output)?;
        return Ok(Outcome::Declined);
    }
    let controls = preflight::controls(config.target.write_delay)?;
    let warning = transaction::rollback(&mut entry, &procsys, &state, &controls)?;
    writeln!(out, "Rolled back journal entry {}.", entry.id).map_err(output)?;
    if let Some(warning) = warning {
        crate::error::say(&format!("warning: {warning}"));
    }
    Ok(Outcome::Clean)
}
