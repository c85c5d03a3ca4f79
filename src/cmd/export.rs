//! `twtune export`: a profile's settings, or the audit's recommendations, rendered for Ansible,
//! sysctl.d, Kubernetes or as JSON, to the writer or to `--output`.

use std::io::Write;

use crate::apply::Plan;
use crate::config::ExportConfig;
use crate::error::{Error, Outcome, Result};
use crate::export::{self, AnsibleOptions, Export, Item, Rendered};
use crate::files::{write_atomically, write_into_empty_dir};
use crate::profile::catalog::Catalog;
use crate::root::Root;

pub(crate) fn run(config: &ExportConfig, out: &mut dyn Write) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    let export = match &config.profile {
        Some(arg) => Export::from_profile(&Catalog::new(root.path()).load(arg)?),
        None => {
            let plan = Plan::recommended(&root)?;
            let items = plan.changes.into_iter().map(|c| Item::new(c.key.to_string(), c.new, c.why, c.risk)).collect();
            Export::recommendations(&root.hostname().unwrap_or_else(|| "this host".into()), items)
        }
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
    Ok(Outcome::Clean)
}
