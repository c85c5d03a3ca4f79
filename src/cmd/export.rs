//! `twtune export`: a profile's settings, or the audit's recommendations, rendered for Ansible,
//! sysctl.d, Kubernetes or as JSON, to the writer or to `--output`.

use std::io::Write;

use crate::apply::Plan;
use crate::config::ExportConfig;
use crate::error::{Error, Outcome, Result};
use crate::export::{self, AnsibleOptions, Export, ExportFormat, Item, Rendered};
use crate::files::{write_atomically, write_into_empty_dir};
use crate::profile::catalog::Catalog;
use crate::root::Root;

pub(crate) fn run(config: &ExportConfig, out: &mut dyn Write) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    let host = || root.hostname().unwrap_or_else(|| "this host".into());
    let export = match &config.profile {
        Some(arg) if config.from_host => {
            if !matches!(config.format, ExportFormat::SysctlD | ExportFormat::Json) {
                return Err(Error::Usage(
                    "--from-host is for --format sysctl-d and json: the Ansible formats judge each host themselves, \
                     and a Kubernetes Pod starts from the kernel's defaults, not from this host's values"
                        .into(),
                ));
            }
            let profile = Catalog::new(root.path()).load(arg)?;
            let inspection = crate::inspect::evidence::read_default(&root, &profile.keys())?;
            let plan = Plan::from_profile(&profile, &inspection)?;
            plan.check(|key| inspection.settings.get(key).map(str::to_string))?;
            Export::for_host(&profile, &host(), items(plan))
        }
        Some(arg) => Export::from_profile(&Catalog::new(root.path()).load(arg)?, config.format),
        None => Export::recommendations(&host(), items(Plan::recommended(&root)?)),
    };
    let ansible = AnsibleOptions { hosts: config.hosts.clone(), sysctl_file: config.sysctl_file.clone() };
    match (export::render(&export, config.format, &ansible)?, &config.output) {
        (Rendered::Files(files), Some(dir)) => write_into_empty_dir(dir, &files, " for the role")?,
        (Rendered::Files(_), None) => {
            return Err(Error::Usage("--format ansible-role writes a directory: give it with --output DIR".into()));
        }
        (Rendered::Text(text), Some(path)) => {
            write_atomically(path, &text).map_err(|source| Error::Write { path: path.clone(), source })?
        }
        (Rendered::Text(text), None) => out.write_all(text.as_bytes()).map_err(Error::Output)?,
    }
    if !export.skipped.is_empty() && !config.format.judges_each_host() {
        crate::error::say(&format!(
            "note: {} of the profile's settings left out of this {} (the output says why){}",
            export.skipped.len(),
            if config.format == ExportFormat::K8s { "Pod" } else { "file" },
            if config.format == ExportFormat::K8s {
                ""
            } else {
                "; --from-host writes what apply would set on this host"
            }
        ));
    }
    Ok(Outcome::Clean)
}

/// The changes of a plan as the values to export.
fn items(plan: Plan) -> Vec<Item> {
    plan.changes.into_iter().map(|c| Item::new(c.key.to_string(), c.new, c.why, c.risk)).collect()
}
