//! `twtune profiles list|show|check`.

use std::io::Write;

use crate::config::ProfilesConfig;
use crate::error::{Error, Outcome, Result, printable};
use crate::profile::{self, catalog::Catalog};
use crate::report::human::wrapped;

pub(crate) fn run(config: &ProfilesConfig, out: &mut dyn Write) -> Result<Outcome> {
    match config {
        ProfilesConfig::List { root, json } => {
            let (listed, errors) = Catalog::new(root).list();
            if *json {
                write_json(out, profile::json::list(&listed))?;
                return outcome(errors);
            }
            let width = listed.iter().map(|l| l.name.len()).max().unwrap_or(0);
            // The description wraps under its own column, so that the names stand alone on the left.
            let rest = " ".repeat(width + 2);
            for profile in &listed {
                let (description, source) = (printable(&profile.description), printable(&profile.source));
                let first = format!("{:<width$}  ", profile.name);
                wrapped(out, &first, &rest, &format!("{description}  ({source})")).map_err(Error::Output)?;
            }
            outcome(errors)
        }
        ProfilesConfig::Show { profile, root, json } => {
            let profile = Catalog::new(root).load(profile)?;
            if *json {
                write_json(out, profile::json::show(&profile))?;
            } else {
                out.write_all(profile.to_yaml().as_bytes()).map_err(Error::Output)?;
            }
            Ok(Outcome::Clean)
        }
        ProfilesConfig::Check { files, root } => {
            let catalog = Catalog::new(root);
            let mut errors = Vec::new();
            for file in files {
                match catalog.check_file(file) {
                    Ok(profile) => writeln!(
                        out,
                        "{}: ok ({}, {})",
                        file.display(),
                        profile.chain.join(" <- "),
                        crate::words::count(profile.settings.len(), "setting")
                    )
                    .map_err(Error::Output)?,
                    Err(err) => errors.push(err),
                }
            }
            outcome(errors)
        }
    }
}

/// A JSON document, or the error that kept it from being written.
fn write_json(out: &mut dyn Write, document: serde_json::Result<String>) -> Result<()> {
    let text = document.map_err(|e| Error::Output(e.into()))?;
    out.write_all(text.as_bytes()).map_err(Error::Output)
}

/// Clean when nothing failed; otherwise every error, each printed on its own line.
fn outcome(mut errors: Vec<Error>) -> Result<Outcome> {
    match errors.len() {
        0 => Ok(Outcome::Clean),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Several(errors)),
    }
}
