//! `twtune apply PROFILE|--recommended`: the plan, the checks before any write, consent, the
//! transaction, and what was done. Every decision is in [`crate::apply`]; this is the order.

use std::io::Write;

use crate::apply::confirm::{Confirm, consent, require_terminal};
use crate::apply::journal::StateDir;
use crate::apply::persist_file::persisting;
use crate::apply::{Plan, preflight, show, transaction};
use crate::config::ApplyConfig;
use crate::error::{Error, Outcome, Result};
use crate::inspect::Inspection;
use crate::profile::{self, catalog::Catalog};
use crate::root::Root;
use crate::words::count;

pub(crate) fn run(config: &ApplyConfig, out: &mut dyn Write, confirm: &dyn Confirm) -> Result<Outcome> {
    let output = Error::Output;
    let root = Root::open(&config.target.root)?;
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let extra_keys = profile.as_ref().map(profile::Profile::keys).unwrap_or_default();
    let inspection = crate::inspect::evidence::read_default(&root, &extra_keys)?;
    let mut plan = match &profile {
        Some(profile) => Plan::from_profile(profile, &inspection)?,
        None => Plan::recommended(&root)?,
    };
    plan.check(|key| inspection.settings.get(key).map(str::to_string))?;
    if plan.changes.is_empty() {
        show::nothing_to_apply(&plan, out).map_err(output)?;
        return Ok(Outcome::Clean);
    }
    show::plan(&plan, out).map_err(output)?;
    if config.dry_run {
        writeln!(out, "\nDry run: nothing was changed.").map_err(output)?;
        return Ok(Outcome::Clean);
    }

    // The inspection was read in the namespace the keys are written in.
    let persisting = persisting(
        root.path(),
        config.persist_file.as_deref(),
        inspection.initial_namespace,
        config.persist_in_any_namespace,
    )?;
    let persist = persisting.target();
    let procsys = preflight::open_procsys(root.path())?;
    let state = StateDir::new(&config.target.state_dir);
    preflight::check_permitted(
        &procsys,
        plan.changes.iter().map(|c| &c.key),
        &state,
        persist.map(|p| p.path.as_path()),
    )?;

    if !agreed(config, &mut plan, &inspection, confirm, out)? {
        return Ok(Outcome::Declined);
    }

    let controls = preflight::controls(config.target.write_delay)?;
    let applied = transaction::apply(&plan, &procsys, &state, persist, &controls)?;
    show::applied(&plan, &applied.entry, &persisting, out).map_err(output)?;
    for warning in applied.warning.into_iter().chain(persisting.warnings(root.path(), &plan)) {
        crate::error::say(&format!("warning: {warning}"));
    }
    Ok(Outcome::Clean)
}

/// `--select`, then the prompt (or `--yes`): whether to go on with what is left of `plan`; when
/// not, what was declined is said.
fn agreed(
    config: &ApplyConfig,
    plan: &mut Plan,
    inspection: &Inspection,
    confirm: &dyn Confirm,
    out: &mut dyn Write,
) -> Result<bool> {
    let output = Error::Output;
    let interactive = config.target.interactive;
    if config.select {
        require_terminal(interactive, "--select needs a terminal to pick changes on (stdin and stderr)")?;
        let picked = confirm.select("Changes to apply (space toggles, enter accepts)", &show::choices(plan))?;
        plan.select(&picked);
        if plan.changes.is_empty() {
            writeln!(out, "Nothing selected: nothing was changed.").map_err(output)?;
            return Ok(false);
        }
        plan.check(|key| inspection.settings.get(key).map(str::to_string))?;
    }
    if !consent(config.yes, interactive, confirm, &format!("Apply {}?", count(plan.changes.len(), "change")))? {
        writeln!(out, "Nothing was changed.").map_err(output)?;
        return Ok(false);
    }
    Ok(true)
}
