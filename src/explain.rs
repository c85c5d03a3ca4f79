//! `twtune explain KEY`: one key's runtime value, what each boot order sets and from which file and
//! line, the assignments that lose, and a profile's expectation. Built from the same readers as the
//! audit; rendered for people or as JSON.

use std::io::{self, Write};

use anstyle::Style;
use serde::Serialize;

use crate::error::{Error, Result, printable};
use crate::profile::{Profile, Verdict, check, describe};
use crate::report::Format;
use crate::root::Root;
use crate::sysctl::keys::Settings;
use crate::sysctl::keys::spec_of;
use crate::sysctl::{SysctlKey, fold_whitespace};
use crate::sysctl_d::parse::normalize_key;
use crate::sysctl_d::{Assignment, Tree};

const HEADING: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

/// Version of `explain --format json`; raised whenever a field changes meaning or disappears.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Everything known about one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Explanation {
    /// [`SCHEMA_VERSION`]: the JSON document's version (docs/schema/explain.json).
    pub schema_version: u32,
    pub key: String,
    /// The value now, whitespace folded; `null` when the kernel or namespace lacks the key.
    pub runtime: Option<String>,
    pub boot: Boot,
    /// Whether systemd-sysctl and `sysctl --system` leave the key with different values.
    pub orders_differ: bool,
    /// The kernel default, where twtune knows it: what the key keeps when no file sets it.
    pub kernel_default: Option<String>,
    /// Assignments that win under neither order, in procps order.
    pub shadowed: Vec<Assignment>,
    pub profile: Option<ProfileExpectation>,
}

/// What each boot order sets; `null` when no file sets the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Boot {
    pub systemd: Option<Assignment>,
    pub procps: Option<Assignment>,
}

/// What a profile says about the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ProfileExpectation {
    pub name: String,
    /// `null` when the profile does not set this key.
    pub expects: Option<String>,
    /// Whether the runtime value meets it; `null` when it cannot be judged.
    pub met: Option<bool>,
    pub recommended: Option<String>,
    pub why: Option<String>,
    pub risk: Option<String>,
}

/// Refuses a key twtune does not know, on a live system where neither the kernel nor any sysctl.d
/// file knows it either: a mistake, not a key absent on this kernel (a captured tree holds only the
/// keys it was captured with, so there absence says nothing).
fn known(arg: &str, name: &str) -> Result<()> {
    if crate::sysctl::keys::spec_of(name).is_some() {
        return Ok(());
    }
    let hint = crate::sysctl::keys::closest(name).map(|k| format!("; did you mean {k}?")).unwrap_or_default();
    Err(Error::Usage(format!(
        "unknown key {arg:?}: twtune does not know it, this kernel does not have it and no sysctl.d file sets it{hint}"
    )))
}

/// Explains `arg` (a key in dotted or `/` form) beneath `root`.
pub(crate) fn explain(root: &Root, arg: &str, profile: Option<&Profile>) -> Result<Explanation> {
    // Errors name the key as the user wrote it, not its normalised form.
    let key = SysctlKey::parse(&normalize_key(arg)).map_err(|err| match err {
        Error::InvalidKey { problem, .. } => Error::InvalidKey { key: arg.to_string(), problem },
        other => other,
    })?;
    let name = key.as_str();
    let runtime = root.read_sysctl(&key)?.map(|v| fold_whitespace(&v));
    let tree = Tree::read(root.path())?;
    let resolution = tree.resolve(name);
    if root.is_live() && runtime.is_none() && resolution.all.is_empty() {
        known(arg, name)?;
    }
    // Computed defaults need the hash size of the namespace.
    let hash = SysctlKey::parse("net.ipv4.tcp_ehash_entries")?;
    let mut settings = Settings::default();
    settings.0.insert(hash.to_string(), root.read_sysctl(&hash).ok().flatten().map(|v| fold_whitespace(&v)));
    settings.0.insert(name.to_string(), runtime.clone());

    let profile = profile.map(|p| match p.settings.get(name) {
        None => ProfileExpectation {
            name: p.name.clone(),
            expects: None,
            met: None,
            recommended: None,
            why: None,
            risk: None,
        },
        Some(setting) => {
            let verdict = runtime.as_deref().map(|r| check(name, setting, r, &settings));
            let (met, recommended) = match verdict {
                Some(Verdict::Met) => (Some(true), None),
                Some(Verdict::Unmet { recommended, .. }) => (Some(false), recommended),
                Some(Verdict::Unknown(_)) | None => (None, None),
            };
            ProfileExpectation {
                name: p.name.clone(),
                expects: Some(describe(name, setting)),
                met,
                recommended,
                why: Some(setting.why.trim().to_string()),
                risk: Some(setting.risk.trim().to_string()),
            }
        }
    });
    Ok(Explanation {
        schema_version: SCHEMA_VERSION,
        key: name.to_string(),
        runtime,
        orders_differ: resolution.orders_differ(),
        kernel_default: spec_of(name).and_then(|s| s.boot_default(&settings)),
        shadowed: resolution.shadowed().into_iter().cloned().collect(),
        boot: Boot { systemd: resolution.systemd, procps: resolution.procps },
        profile,
    })
}

impl Explanation {
    /// Writes the explanation in `format`.
    pub(crate) fn render(&self, format: Format, out: &mut dyn Write) -> io::Result<()> {
        match format {
            Format::Json => {
                crate::json::to_writer_pretty(&mut *out, self)?;
                writeln!(out)
            }
            // Metrics describe a whole audit; `explain` speaks of one key.
            Format::Human | Format::Prometheus => self.render_human(out),
        }
    }

    fn render_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let none = || match &self.kernel_default {
            Some(default) => format!("nothing: the kernel default {default:?} stays"),
            None => "nothing: the kernel default stays".to_string(),
        };
        let place = |a: &Option<Assignment>| match a {
            Some(a) => {
                format!("{:?}  {}{}", a.comparable(), printable(&a.place()), if a.glob { " (glob)" } else { "" })
            }
            None => none(),
        };
        writeln!(out, "{HEADING}{}{HEADING:#}", self.key)?;
        let runtime =
            self.runtime.as_ref().map_or("absent on this kernel or in this namespace".into(), |v| format!("{v:?}"));
        writeln!(out, "  now                           {runtime}")?;
        writeln!(out, "  next boot (systemd-sysctl)    {}", place(&self.boot.systemd))?;
        write!(out, "  sysctl --system (procps)      {}", place(&self.boot.procps))?;
        if self.orders_differ {
            write!(out, "   {HEADING}<- the orders differ{HEADING:#}")?;
        }
        writeln!(out)?;
        for (i, a) in self.shadowed.iter().enumerate() {
            let label = if i == 0 { "overridden" } else { "" };
            writeln!(out, "  {DIM}{label:<28}  {:?}  {}{DIM:#}", a.comparable(), printable(&a.place()))?;
        }
        if let Some(p) = &self.profile {
            match (&p.expects, p.met) {
                (None, _) => writeln!(out, "  profile {:<21} does not set this key", p.name)?,
                (Some(expects), met) => {
                    let verdict = match met {
                        Some(true) => "met".to_string(),
                        Some(false) => format!(
                            "NOT met{}",
                            p.recommended.as_ref().map_or(String::new(), |r| format!(", set {r:?}"))
                        ),
                        None => "cannot be judged here".to_string(),
                    };
                    writeln!(out, "  profile {:<21} expects {expects}: {verdict}", p.name)?;
                    if let Some(why) = &p.why {
                        writeln!(out, "  {DIM}why: {}{DIM:#}", printable(why))?;
                    }
                }
            }
        }
        Ok(())
    }
}
