//! The `apply`, `rollback` and `export` commands: from a resolved config to a plan on screen, the
//! checks that come before any write, consent, and the transaction (itself in [`crate::apply`]);
//! and the rendering of exports to stdout or files.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anstyle::Style;

use crate::apply::confirm::Confirm;
use crate::apply::journal::{Entry, StateDir, Status};
use crate::apply::{self, Controls, PersistTarget, Plan};
use crate::config::{ApplyConfig, ExportConfig, RollbackConfig, Target, beneath};
use crate::error::{Error, Outcome, Result};
use crate::export::{AnsibleOptions, Export, ExportFormat, Item};
use crate::persisted::ConfigTree;
use crate::procsys::ProcSys;
use crate::profile;
use crate::profile::catalog::Catalog;
use crate::report::human::wrapped;
use crate::root::Root;
use crate::rules::{self, Thresholds};
use crate::sysctl::fold_whitespace;

const HEADING: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

fn output(e: std::io::Error) -> Error {
    Error::Output(e)
}

/// The plan of the audit's recommendations for the system beneath `root`.
fn recommended_plan(root: &Root) -> Result<Plan> {
    let inspection = crate::gather::inspect_default(root, &[])?;
    let plan = Plan::from_findings("recommended", &rules::evaluate(&inspection, &Thresholds::default()), |f| {
        f.message.clone()
    })?;
    plan.check(|key| inspection.settings.get(key).map(str::to_string))?;
    Ok(plan)
}

/// `twtune export`.
pub fn export(config: &ExportConfig) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    let export = match &config.profile {
        Some(arg) => Export::from_profile(&Catalog::new(root.path()).load(arg)?),
        None => {
            let plan = recommended_plan(&root)?;
            Export {
                source: format!("the recommendations of an audit of {}", hostname(root.path())),
                items: plan.changes.into_iter().map(|c| Item::new(c.key.to_string(), c.new, c.why, c.risk)).collect(),
                skipped: Vec::new(),
            }
        }
    };
    let ansible = AnsibleOptions { hosts: config.hosts.clone(), sysctl_file: config.sysctl_file.clone() };
    if matches!(config.format, ExportFormat::Ansible | ExportFormat::AnsibleRole) {
        crate::export::check_ansible_safe(&export).map_err(Error::Apply)?;
    }
    let text = match config.format {
        ExportFormat::Ansible => crate::export::ansible_playbook(&export, &ansible),
        ExportFormat::SysctlD => crate::export::sysctl_d(&export),
        ExportFormat::Json => crate::export::json(&export),
        ExportFormat::K8s => crate::export::kubernetes(&export),
        ExportFormat::AnsibleRole => {
            let dir = config.output.as_ref().ok_or_else(|| {
                Error::Apply("--format ansible-role writes a directory: give it with --output DIR".into())
            })?;
            write_role(dir, &crate::export::ansible_role(&export, &ansible))?;
            return Ok(Outcome::Clean);
        }
    };
    match &config.output {
        Some(path) => {
            apply::write_atomically(path, &text).map_err(|source| Error::Write { path: path.clone(), source })?
        }
        None => std::io::stdout().lock().write_all(text.as_bytes()).map_err(output)?,
    }
    Ok(Outcome::Clean)
}

/// The host name of the audited system, for the export's header.
fn hostname(root: &Path) -> String {
    std::fs::read_to_string(root.join("proc/sys/kernel/hostname"))
        .map_or_else(|_| "this host".into(), |h| h.trim().to_string())
}

/// Writes a role into a new or empty directory; an existing file is never overwritten.
fn write_role(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::Apply(format!(
            "{} is not empty: give a new or empty directory for the role",
            dir.display()
        )));
    }
    for (relative, content) in files {
        let path = dir.join(relative);
        apply::write_atomically(&path, content).map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

/// `twtune apply`.
pub fn apply(config: &ApplyConfig, out: &mut dyn Write, confirm: &dyn Confirm) -> Result<Outcome> {
    let root = Root::open(&config.target.root)?;
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let extra_keys = profile.as_ref().map(profile::Profile::keys).unwrap_or_default();
    let inspection = crate::gather::inspect_default(&root, &extra_keys)?;
    let mut plan = match &profile {
        Some(p) => {
            let (findings, _) = profile::evaluate(p, &inspection);
            let unmet: Vec<_> = findings.into_iter().filter(|f| f.id.starts_with("profile.")).collect();
            Plan::from_findings(&format!("profile {}", p.name), &unmet, |f| {
                let setting = f.key.as_ref().and_then(|k| p.settings.get(k));
                setting.map_or_else(|| f.message.clone(), |s| fold_whitespace(&s.why))
            })?
        }
        None => recommended_plan(&root)?,
    };
    plan.check(|key| inspection.settings.get(key).map(str::to_string))?;
    if plan.changes.is_empty() {
        writeln!(out, "Nothing to apply: every setting of the {} is already met.", plan.source).map_err(output)?;
        return Ok(Outcome::Clean);
    }
    print_plan(&plan, out).map_err(output)?;
    if config.dry_run {
        writeln!(out, "\nDry run: nothing was changed.").map_err(output)?;
        return Ok(Outcome::Clean);
    }

    let persist = config.persist_file.as_ref().map(|shown| persist_target(root.path(), shown)).transpose()?;
    let procsys = open_procsys(root.path())?;
    let state = StateDir::new(&config.target.state_dir);
    check_permitted(&procsys, plan.changes.iter().map(|c| &c.key), &state, persist.as_ref().map(|p| p.path.as_path()))?;

    if config.select {
        require_terminal(&config.target, "--select needs a terminal to pick changes on (stdin and stderr)")?;
        let items: Vec<String> =
            plan.changes.iter().map(|c| format!("{}: {} -> {}", c.key, c.current, c.new)).collect();
        let picked = confirm.select("Changes to apply (space toggles, enter accepts)", &items)?;
        plan.select(&picked);
        if plan.changes.is_empty() {
            writeln!(out, "Nothing selected: nothing was changed.").map_err(output)?;
            return Ok(Outcome::Declined);
        }
        plan.check(|key| inspection.settings.get(key).map(str::to_string))?;
    }
    if !consent(config.yes, &config.target, confirm, &format!("Apply {}?", count(plan.changes.len(), "change")))? {
        writeln!(out, "Nothing was changed.").map_err(output)?;
        return Ok(Outcome::Declined);
    }

    let controls = controls(&config.target)?;
    let applied = apply::apply(&plan, &procsys, &state, persist.as_ref(), &controls)?;
    writeln!(
        out,
        "Applied {} (journal entry {}); `twtune rollback` undoes {}.",
        count(plan.changes.len(), "change"),
        applied.entry.id,
        if plan.changes.len() == 1 { "it" } else { "them" }
    )
    .map_err(output)?;
    match &persist {
        Some(target) => {
            writeln!(out, "Persisted to {}.", target.shown).map_err(output)?;
            warn_overrides(root.path(), &plan, target);
        }
        None => anstream::eprintln!(
            "twtune: warning: not persisted (--no-persist): these values are lost at the next reboot"
        ),
    }
    Ok(Outcome::Clean)
}

/// `twtune rollback`.
pub fn rollback(config: &RollbackConfig, out: &mut dyn Write, confirm: &dyn Confirm) -> Result<Outcome> {
    let state = StateDir::new(&config.target.state_dir);
    let entries = state.entries()?;
    if config.list {
        list_entries(&entries, &state, out).map_err(output)?;
        return Ok(Outcome::Clean);
    }
    let missing = |what: String| Error::Apply(format!("{what}; `twtune rollback --list` shows the journal"));
    let mut entry: Entry =
        match &config.id {
            Some(id) => entries
                .iter()
                .find(|e| &e.id == id)
                .cloned()
                .ok_or_else(|| missing(format!("no journal entry {id:?} in {}", state.path().display())))?,
            None => entries.iter().rev().find(|e| e.status.can_roll_back()).cloned().ok_or_else(|| {
                missing(format!("nothing to roll back: no applied entry in {}", state.path().display()))
            })?,
        };
    if !entry.status.can_roll_back() {
        return Err(Error::Apply(format!(
            "journal entry {} is {}, not applied: there is nothing to roll back",
            entry.id,
            entry.status.name()
        )));
    }
    // Applies are undone newest first: an older entry's "before" would undo the newer one's file.
    if let Some(later) = entries.iter().skip_while(|e| e.id != entry.id).skip(1).find(|e| e.status.can_roll_back()) {
        return Err(Error::Apply(format!(
            "journal entry {} came after {}: roll it back first (`twtune rollback {}`)",
            later.id, entry.id, later.id
        )));
    }
    if entry.status == Status::Pending {
        writeln!(
            out,
            "Journal entry {} never completed (the apply was killed): restoring its previous values.",
            entry.id
        )
        .map_err(output)?;
    }
    let root = Root::open(&config.target.root)?;
    let procsys = open_procsys(root.path())?;
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
    let keys: Vec<crate::sysctl::SysctlKey> =
        entry.changes.iter().map(|c| crate::sysctl::SysctlKey::parse(&c.key)).collect::<Result<_>>()?;
    check_permitted(&procsys, keys.iter(), &state, entry.persist.as_ref().map(|p| p.path.as_path()))?;
    if !consent(config.yes, &config.target, confirm, &format!("Roll back {}?", count(entry.changes.len(), "change")))? {
        writeln!(out, "Nothing was changed.").map_err(output)?;
        return Ok(Outcome::Declined);
    }
    let controls = controls(&config.target)?;
    apply::rollback(&mut entry, &procsys, &state, &controls)?;
    writeln!(out, "Rolled back journal entry {}.", entry.id).map_err(output)?;
    Ok(Outcome::Clean)
}

fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn open_procsys(root: &Path) -> Result<ProcSys> {
    ProcSys::open(root).map_err(|source| Error::Read {
        path: root.join("proc/sys"),
        source,
        hint: "; --root must hold proc/sys laid out as on a live host",
    })
}

/// The file to persist to: an absolute `.conf` path, not a link (a rename would replace the link,
/// not its target), and either absent or written by twtune before (its header says so), so that
/// no file of someone else's is rewritten.
fn persist_target(root: &Path, shown: &str) -> Result<PersistTarget> {
    let refuse = |why: &str| Error::Apply(format!("--persist-file {shown}: {why}; nothing was changed"));
    if !shown.starts_with('/') || !shown.ends_with(".conf") {
        return Err(refuse("give an absolute path to a .conf file, such as /etc/sysctl.d/90-twtune.conf"));
    }
    let path = beneath(root, Path::new(shown));
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(refuse("it is a link; give the file itself")),
        Ok(meta) if !meta.is_file() => return Err(refuse("it is not a regular file")),
        Ok(_) => {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
                hint: "",
            })?;
            if !text.starts_with(apply::PERSIST_HEADER) {
                return Err(refuse(
                    "it exists and twtune did not write it (no twtune header); choose a file of twtune's own",
                ));
            }
        }
        Err(_) => {}
    }
    Ok(PersistTarget { path, shown: shown.to_string() })
}

/// Everything that will be written must be writable, checked before the first write.
fn check_permitted<'a>(
    procsys: &ProcSys,
    keys: impl Iterator<Item = &'a crate::sysctl::SysctlKey>,
    state: &StateDir,
    persist: Option<&Path>,
) -> Result<()> {
    for key in keys {
        procsys.may_write(key).map_err(|e| {
            let what = format!("write {}", procsys.path_of(key).display());
            // A read-only /proc/sys (a container's) is not a matter of privilege.
            if e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) {
                Error::Apply(format!("cannot {what}: /proc/sys is read-only here (a container?); change it on the host or in the pod spec"))
            } else {
                Error::NotPermitted { what, reason: e.to_string() }
            }
        })?;
    }
    state.check_writable()?;
    if let Some(path) = persist {
        let mut dir = path.parent().unwrap_or(Path::new("/"));
        while !dir.exists() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).map_err(|e| Error::NotPermitted {
            what: format!("write {}", path.display()),
            reason: std::io::Error::from(e).to_string(),
        })?;
    }
    Ok(())
}

fn require_terminal(target: &Target, message: &str) -> Result<()> {
    if target.interactive { Ok(()) } else { Err(Error::NoTerminal(message.to_string())) }
}

/// `--yes`, or a yes at the prompt. Without a terminal and without `--yes`: refused.
fn consent(yes: bool, target: &Target, confirm: &dyn Confirm, prompt: &str) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    require_terminal(
        target,
        "refusing to change anything without confirmation, and there is no terminal to ask on (stdin and stderr); \
         re-run with --yes to go ahead, or with --dry-run to see the plan",
    )?;
    confirm.confirm(prompt)
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT set a flag the transaction checks between writes, so an interrupt ends with
/// the old state (everything restored) or, once all is written, the new one; never a mix.
fn controls(target: &Target) -> Result<Controls> {
    let interrupted = Arc::new(AtomicBool::new(false));
    // SIGHUP too: a dropped ssh session must not leave half an apply behind.
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .map_err(|e| Error::Apply(format!("cannot catch signal {signal}: {e}; nothing was changed")))?;
    }
    Ok(Controls { interrupted, write_delay: target.write_delay })
}

fn print_plan(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{HEADING}Plan{HEADING:#} ({}): {}", plan.source, count(plan.changes.len(), "change"))?;
    let width = plan.changes.iter().map(|c| c.key.as_str().len()).max().unwrap_or(0);
    for change in &plan.changes {
        writeln!(out, "\n  {HEADING}{:<width$}{HEADING:#}  {} -> {}", change.key.as_str(), change.current, change.new)?;
        wrapped(out, &format!("    {DIM}why:{DIM:#}  "), "          ", &change.why)?;
        wrapped(out, &format!("    {DIM}risk:{DIM:#} "), "          ", &change.risk)?;
    }
    Ok(())
}

fn list_entries(entries: &[Entry], state: &StateDir, out: &mut dyn Write) -> std::io::Result<()> {
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

/// After persisting: any key another file will set at the next boot, under either order, is named
/// with that file.
fn warn_overrides(root: &Path, plan: &Plan, target: &PersistTarget) {
    let Ok(tree) = ConfigTree::read(root) else { return };
    for change in &plan.changes {
        let r = tree.resolve(change.key.as_str());
        for (order, winner) in [("systemd-sysctl", &r.systemd), ("sysctl --system", &r.procps)] {
            if let Some(w) = winner
                && w.file != target.shown
            {
                anstream::eprintln!(
                    "twtune: warning: at the next boot ({order}) {} sets {} = {:?} and overrides {}",
                    w.place(),
                    change.key,
                    w.comparable(),
                    target.shown
                );
            }
        }
    }
}
