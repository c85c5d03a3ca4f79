//! `twtune snapshot DIR` and `twtune snapshot --archive FILE.tar.gz`.

use crate::config::SnapshotConfig;
use crate::error::{Error, Outcome, Result};
use crate::root::Root;
use crate::snapshot;

pub(crate) fn run(config: &SnapshotConfig) -> Result<Outcome> {
    let root = Root::open(&config.root)?;
    match (&config.dir, &config.archive) {
        (Some(dir), _) => snapshot::to_directory(&root, dir)?,
        (None, Some(archive)) => snapshot::to_archive(&root, archive)?,
        (None, None) => return Err(Error::Usage("give a directory, or --archive FILE.tar.gz".into())),
    }
    Ok(Outcome::Clean)
}
