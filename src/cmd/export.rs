//! `twtune export`: a profile's settings, or the audit's recommendations, rendered for Ansible,
//! sysctl.d, Kubernetes or as JSON, to the writer or to `--output`.

use std::io::Write;

use crate::apply::Plan;
use crate::config::ExportConfig;
use crate::error::{Error, Outcome, Result};
use crate::export::{self, AnsibleOptions, Export, ExportFormat, Item};
use crate::files::{write_atomically, write_into_empty_dir};
use crate::profile::catalog::Catalog;
use crate::root::Root;

pub(crate) fn run(config: &ExportConfig, out: &mut dyn Write) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    let export = match &config.profile {
        Some(arg) => Export::from_profile(&Catalog::new(root.path()).load(arg)?),
        None => {
            let plan = Plan::recommended(&root)?;
            let host = root.hostname().unwrap_or_else(|| "this host".into());
            Export {
                source: format!("the recommendations of an audit of {host}"),
                items: plan.changes.into_iter().map(|c| Item::new(c.key.to_string(), c.new, c.why, c.risk)).collect(),
                skipped: Vec::new(),
            }
        }
    };
    let ansible = AnsibleOptions { hosts: config.hosts.clone(), sysctl_file: config.sysctl_file.clone() };
    if matches!(config.format, ExportFormat::Ansible | ExportFormat::AnsibleRole) {
        export::check_ansible_safe(&export).map_err(Error::Export)?;
    }
    let text = match config.format {
        ExportFormat::Ansible => export::ansible_playbook(&export, &ansible),
        ExportFormat::SysctlD => export::sysctl_d(&export),
        ExportFormat::Json => export::json(&export),
        ExportFormat::K8s => export::kubernetes(&export),
        ExportFormat::AnsibleRole => {
            let dir = config.output.as_ref().ok_or_else(|| {
                Error::Usage("--format ansible-role writes a directory: give it with --output DIR".into())
            })?;
            write_into_empty_dir(dir, &export::ansible_role(&export, &ansible), " for the role")?;
            return Ok(Outcome::Clean);
        }
    };
    match &config.output {
        Some(path) => write_atomically(path, &text).map_err(|source| Error::Write { path: path.clone(), source })?,
        None => out.write_all(text.as_bytes()).map_err(Error::Output)?,
    }
    Ok(Outcome::Clean)
}
