//! Finding profiles: built into the binary (from `profiles/`), in `etc/twtune/profiles.d/*.yaml`
//! beneath the root (a file there overrides the built-in profile of the same name), or any path
//! given where a profile name is expected. Resolves `extends` chains and refuses cycles.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::profile::Profile;
use crate::profile::parse::{ProfileFile, parse_profile};

/// Where local profiles live, relative to the root.
pub(crate) const PROFILES_DIR: &str = "etc/twtune/profiles.d";

/// The shipped profiles, embedded at build time.
pub(crate) const BUILT_IN: &[(&str, &str)] = &[
    ("baseline", include_str!("../../profiles/baseline.yaml")),
    ("inbound-heavy", include_str!("../../profiles/inbound-heavy.yaml")),
    ("kubernetes-node", include_str!("../../profiles/kubernetes-node.yaml")),
    ("outbound-heavy", include_str!("../../profiles/outbound-heavy.yaml")),
];

/// Profile files above this size are refused; real ones are a few KiB.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// A profile as `profiles list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    pub name: String,
    /// `built-in`, or the file (with a note when it overrides a built-in profile).
    pub source: String,
    pub description: String,
}

/// How many profiles one `extends` chain may hold.
const MAX_EXTENDS_DEPTH: usize = 32;

/// The profiles visible beneath one root. Local files are read inside the root (a link in
/// profiles.d means a path of the tree), only as regular files, and bounded.
pub(crate) struct Catalog {
    dir: PathBuf,
    /// The root, opened; `None` when it cannot be (then there are no local profiles).
    root: Option<OwnedFd>,
}

/// Whether a profile argument names a file rather than a profile.
pub(crate) fn is_path(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".yaml") || arg.ends_with(".yml")
}

impl Catalog {
    /// The catalogue seen from `root` (`/` on a live host).
    pub(crate) fn new(root: &Path) -> Catalog {
        Catalog { dir: root.join(PROFILES_DIR), root: crate::files::open_root(root).ok() }
    }

    /// A local profile file, read inside the root; `Ok(None)` when there is none of that name.
    fn read_local(&self, name: &str) -> Result<Option<String>> {
        let Some(root) = &self.root else { return Ok(None) };
        let path = self.dir.join(name);
        match crate::files::read_in_root(root, &Path::new(PROFILES_DIR).join(name), MAX_PROFILE_BYTES) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Error::Profile { location: path.display().to_string(), message: "not UTF-8 text".into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(Error::Profile {
                location: path.display().to_string(),
                message: format!("more than {MAX_PROFILE_BYTES} bytes is too large for a profile"),
            }),
            Err(source) => Err(Error::Read { path, source, hint: "" }),
        }
    }

    /// Loads and resolves a profile given by name or path.
    pub(crate) fn load(&self, arg: &str) -> Result<Profile> {
        let (file, source) = if is_path(arg) {
            let path = Path::new(arg);
            (parse_profile(&read_profile_file(path)?, arg, None)?, arg.to_string())
        } else {
            self.find(arg)?.ok_or_else(|| Error::UnknownProfile { name: arg.to_string() })?
        };
        self.resolve(file, source, &mut Vec::new())
    }

    /// Validates a profile file as `profiles check` does: it parses, and its `extends` chain resolves.
    pub(crate) fn check_file(&self, path: &Path) -> Result<Profile> {
        let display = path.display().to_string();
        let file = parse_profile(&read_profile_file(path)?, &display, None)?;
        self.resolve(file, display, &mut Vec::new())
    }

    /// Every profile by name, local ones over built-in ones, and the errors of local files that are
    /// not valid.
    pub(crate) fn list(&self) -> (Vec<Listed>, Vec<Error>) {
        let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, text) in BUILT_IN {
            match parse_profile(text, &built_in_file(name), Some(name)) {
                Ok(file) => {
                    listed.insert(
                        file.name.clone(),
                        Listed { name: file.name, source: "built-in".into(), description: file.description },
                    );
                }
                Err(err) => errors.push(err),
            }
        }
        for name in self.local_files(&mut errors) {
            let path = self.dir.join(&name);
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
            let display = path.display().to_string();
            let text =
                self.read_local(&name).and_then(|t| t.ok_or_else(|| Error::UnknownProfile { name: name.clone() }));
            match text.and_then(|text| parse_profile(&text, &display, Some(stem))) {
                Ok(file) => {
                    let source = if listed.get(&file.name).is_some_and(|l| l.source == "built-in") {
                        format!("{display} (overrides built-in)")
                    } else {
                        display
                    };
                    listed.insert(file.name.clone(), Listed { name: file.name, source, description: file.description });
                }
                Err(err) => errors.push(err),
            }
        }
        (listed.into_values().collect(), errors)
    }

    /// The names of the `.yaml`/`.yml` files of the local directory, sorted. A missing directory
    /// has none.
    fn local_files(&self, errors: &mut Vec<Error>) -> Vec<String> {
        let Some(root) = &self.root else { return Vec::new() };
        let mut names = match crate::files::list_in_root(root, Path::new(PROFILES_DIR)) {
            Ok(names) => names,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                return Vec::new();
            }
            Err(source) => {
                errors.push(Error::Read { path: self.dir.clone(), source, hint: "" });
                return Vec::new();
            }
        };
        names.retain(|n| n.ends_with(".yaml") || n.ends_with(".yml"));
        names.sort();
        names
    }

    /// Finds a profile by name: a local file first, then a built-in one.
    fn find(&self, name: &str) -> Result<Option<(ProfileFile, String)>> {
        if !crate::profile::parse::valid_name(name) {
            return Ok(None);
        }
        for extension in ["yaml", "yml"] {
            let file = format!("{name}.{extension}");
            if let Some(text) = self.read_local(&file)? {
                let display = self.dir.join(&file).display().to_string();
                return Ok(Some((parse_profile(&text, &display, Some(name))?, display)));
            }
        }
        match BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((name, text)) => Ok(Some((parse_profile(text, &built_in_file(name), Some(name))?, "built-in".into()))),
            None => Ok(None),
        }
    }

    /// Merges a profile with its ancestors. `stack` holds the names being resolved, to find cycles.
    fn resolve(&self, file: ProfileFile, source: String, stack: &mut Vec<String>) -> Result<Profile> {
        stack.push(file.name.clone());
        let origin = file.settings.keys().map(|k| (k.clone(), file.name.clone())).collect();
        let own = Profile {
            name: file.name.clone(),
            description: file.description.clone(),
            source: source.clone(),
            chain: vec![file.name.clone()],
            notes: file.notes.clone(),
            thresholds: file.thresholds,
            settings: file.settings.clone(),
            origin,
        };
        let Some((parent_name, line)) = &file.extends else { return Ok(own) };
        let at = |message: String| Error::Profile { location: format!("{source}:{line}"), message };
        // Profiles are files anyone with write access to profiles.d can plant: a chain deep enough
        // to exhaust the stack is refused, far beyond any real use.
        if stack.len() >= MAX_EXTENDS_DEPTH {
            return Err(at(format!(
                "extends chain deeper than {MAX_EXTENDS_DEPTH} profiles ({} <- ...); shorten it",
                stack.first().map_or("", String::as_str)
            )));
        }
        if stack.contains(parent_name) {
            let mut cycle = stack.clone();
            cycle.push(parent_name.clone());
            return Err(at(format!("extends cycle: {}", cycle.join(" -> "))));
        }
        let (parent_file, parent_source) = self
            .find(parent_name)?
            .ok_or_else(|| at(format!("extends {parent_name:?}, but no profile has that name")))?;
        let parent = self.resolve(parent_file, parent_source, stack)?;

        let mut settings = parent.settings;
        let mut origin = parent.origin;
        settings.extend(own.settings);
        origin.extend(own.origin);
        crate::profile::parse::check_cross_keys(&settings).map_err(at)?;
        let mut chain = own.chain;
        chain.extend(parent.chain);
        let mut notes = parent.notes;
        notes.extend(own.notes);
        Ok(Profile { thresholds: own.thresholds.over(&parent.thresholds), settings, origin, chain, notes, ..own })
    }
}

fn built_in_file(name: &str) -> String {
    format!("profiles/{name}.yaml (built in)")
}

fn read_profile_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let read_error = |source| Error::Read { path: path.to_path_buf(), source, hint: "" };
    // O_NONBLOCK and a regular file only: a FIFO given as a profile must not hang root's twtune.
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    let file = std::fs::File::from(
        rustix::fs::open(path, flags, rustix::fs::Mode::empty()).map_err(|e| read_error(e.into()))?,
    );
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(read_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    // Read at most one byte past the limit: a file growing while read has no size to check.
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(Error::Profile {
            location: path.display().to_string(),
            message: format!("more than {MAX_PROFILE_BYTES} bytes is too large for a profile"),
        });
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::Profile { location: path.display().to_string(), message: "not UTF-8 text".into() })
}
