//! `twtune explain KEY`: one key's value now, at the next boot, and what a profile expects of it.

use std::io::Write;

use crate::config::ExplainConfig;
use crate::error::{Error, Outcome, Result};
use crate::profile::catalog::Catalog;
use crate::root::Root;

pub(crate) fn run(config: &ExplainConfig, out: &mut dyn Write) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    let profile = config.profile.as_deref().map(|arg| Catalog::new(root.path()).load(arg)).transpose()?;
    let explanation = crate::explain::explain(&root, &config.key, profile.as_ref())?;
    explanation.render(config.format, out).map_err(Error::Output)?;
    Ok(Outcome::Clean)
}
