//! The state directory (`/var/lib/twtune` by default): a lock that keeps two applies or rollbacks
//! apart, and one JSON journal entry per apply, written before the first change, holding every
//! previous value and the previous content of the persisted file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A directory twtune keeps its journal and lock in.
pub(crate) struct StateDir {
    path: PathBuf,
}

/// Held while an apply or rollback runs; the kernel drops the lock when the process ends, however
/// it ends.
pub(crate) struct Lock {
    _file: File,
}

/// What happened to a journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    /// Written before the first change; an apply that died here left the old state (every write
    /// is undone on failure) or was killed mid-way (roll it back).
    Pending,
    Applied,
    /// A write failed or the user interrupted; everything was restored.
    Failed,
    /// A write failed and some keys could not be restored (a /proc/sys that became read-only):
    /// they keep their new values until a rollback restores them.
    Incomplete,
    RolledBack,
}

impl Status {
    /// Whether `rollback` can undo the entry: an applied one, or a pending one whose apply was
    /// killed between writes (its previous values are all in the entry).
    pub(crate) fn can_roll_back(self) -> bool {
        matches!(self, Status::Applied | Status::Pending | Status::Incomplete)
    }

    /// The name used in the journal and in listings.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Applied => "applied",
            Status::Failed => "failed",
            Status::Incomplete => "incomplete",
            Status::RolledBack => "rolled-back",
        }
    }
}

/// One key's change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyChange {
    pub key: String,
    pub before: String,
    pub after: String,
}

/// The persisted file before the apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PersistRecord {
    /// The file as written (beneath the root).
    pub path: PathBuf,
    /// Its content before the apply; `None` when it did not exist.
    pub previous: Option<String>,
}

/// One apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub id: String,
    /// UTC, RFC 3339.
    pub created: String,
    pub twtune_version: String,
    /// `profile NAME` or `recommended`.
    pub source: String,
    pub status: Status,
    pub changes: Vec<KeyChange>,
    pub persist: Option<PersistRecord>,
}

impl StateDir {
    pub(crate) fn new(path: &Path) -> StateDir {
        StateDir { path: path.to_path_buf() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn journal(&self) -> PathBuf {
        self.path.join("journal")
    }

    /// Whether this process can create or write the state directory.
    pub(crate) fn check_writable(&self) -> Result<()> {
        let mut probe = self.path.as_path();
        while !probe.exists() {
            match probe.parent() {
                Some(parent) => probe = parent,
                None => break,
            }
        }
        rustix::fs::access(probe, rustix::fs::Access::WRITE_OK).map_err(|e| Error::NotPermitted {
            what: format!("write the state directory {}", self.path.display()),
            reason: std::io::Error::from(e).to_string(),
        })
    }

    /// Refuses a state directory, or its journal directory, that is a link, not a directory, not
    /// owned by the user running twtune, or writable by group or others: whoever can plant an entry
    /// there could make root's rollback overwrite or delete any file.
    fn check_trusted(&self) -> Result<()> {
        if let Some((path, why)) = crate::files::unsafe_ancestor(&self.path) {
            return Err(Error::UntrustedState { path, why: format!("a directory on the way to it is {why}") });
        }
        for dir in [self.path.clone(), self.journal()] {
            let Ok(meta) = std::fs::symlink_metadata(&dir) else { continue };
            trusted(&dir, &meta, true)?;
        }
        Ok(())
    }

    /// Takes the lock, or fails at once when another twtune holds it.
    pub(crate) fn lock(&self) -> Result<Lock> {
        let io = |source| Error::Write { path: self.path.clone(), source };
        // Checked before anything is created through a planted link, and again after.
        self.check_trusted()?;
        // Made without following a link at any step; the lock is opened in the directory made.
        let state = crate::files::OutDir::open(&self.path, true).map_err(io)?;
        state.subdir(Path::new("journal")).map_err(io)?;
        self.check_trusted()?;
        let path = self.path.join("lock");
        // Never through a link: a `lock` linked to another file would have that file truncated.
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(state.fd(), "lock", flags, Mode::from_raw_mode(0o644)).map_err(|e| io(e.into()))?;
        let mut file = File::from(fd);
        let metadata = file.metadata().map_err(io)?;
        trusted(&path, &metadata, false)?;
        // A second name would make the truncation below reach another file.
        if metadata.nlink() != 1 {
            return Err(Error::UntrustedState { path, why: "it has more than one name (a hard link)".to_string() });
        }
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).map_err(io)?;
                Ok(Lock { _file: file })
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                // Read through the descriptor just checked, not the name again, and only a PID's worth.
                let mut holder = String::new();
                let _ = (&mut file).take(64).read_to_string(&mut holder);
                Err(Error::Locked { path, holder: crate::error::printable(holder.trim()).to_string() })
            }
            Err(e) => Err(io(e.into())),
        }
    }

    /// Saves an entry atomically (a reader never sees half a file).
    pub(crate) fn save(&self, entry: &Entry) -> Result<()> {
        let path = self.journal().join(format!("{}.json", entry.id));
        let text = crate::json::to_string_pretty(entry)
            .map_err(|e| Error::Write { path: path.clone(), source: std::io::Error::other(e) })?;
        crate::files::write_atomically(&path, &format!("{text}\n")).map_err(|source| Error::Write { path, source })
    }

    /// Every entry, oldest first. An entry that cannot be read, or is not what twtune writes (an id
    /// that is not its file name, a persisted file that is not a `.conf` path), is an error naming
    /// the file: the journal steers root's writes, so it is untrusted input too.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>> {
        self.check_trusted()?;
        let dir = self.journal();
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Read { path: dir, source, hint: "" }),
        };
        let paths: Vec<PathBuf> = listing
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        let mut entries: Vec<Entry> = paths.into_iter().map(|path| read_entry(&path)).collect::<Result<_>>()?;
        // Ids are a time, then `-N` for a second entry in the same second.
        entries.sort_by_key(|e| {
            let (time, counter) = e.id.split_once('-').unwrap_or((&e.id, "0"));
            (time.to_string(), counter.parse::<u32>().unwrap_or(0))
        });
        Ok(entries)
    }

    /// A new entry id: the UTC time to the second, then a counter if that id is taken.
    pub(crate) fn new_id(&self, now: &Timestamp) -> String {
        let base = now.compact.clone();
        (0..)
            .map(|n| if n == 0 { base.clone() } else { format!("{base}-{n}") })
            .find(|id| !self.journal().join(format!("{id}.json")).exists())
            .unwrap_or(base)
    }
}

/// The largest journal entry read: an entry holds a few keys and one sysctl.d file's content.
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// Refuses what another user could change (see [`crate::files::not_private`]).
fn trusted(path: &Path, meta: &std::fs::Metadata, dir: bool) -> Result<()> {
    match crate::files::not_private(meta, dir) {
        Some(why) => Err(Error::UntrustedState { path: path.to_path_buf(), why }),
        None => Ok(()),
    }
}

/// One journal entry, read as untrusted input: not through a link, a regular file owned by the
/// user and no one else's to write, bounded, and its fields what twtune writes.
fn read_entry(path: &Path) -> Result<Entry> {
    let malformed = |problem: String| Error::Malformed { path: path.to_path_buf(), problem };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let read_error = |source: std::io::Error| Error::Read { path: path.to_path_buf(), source, hint: "" };
    let file = File::from(rustix::fs::open(path, flags, Mode::empty()).map_err(|e| read_error(e.into()))?);
    trusted(path, &file.metadata().map_err(read_error)?, false)?;
    let bytes = crate::files::read_bounded(file, MAX_ENTRY_BYTES).map_err(read_error)?;
    let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message can quote the file; keep it to its first line and a bounded length.
        let reason: String = e.to_string().lines().next().unwrap_or("").chars().take(200).collect();
        malformed(format!("not a twtune journal entry ({reason}); move it away to go on"))
    })?;
    let valid_id = !entry.id.is_empty() && entry.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid_id || path.file_stem().is_none_or(|stem| stem != entry.id.as_str()) {
        return Err(malformed(format!(
            "its id {:?} is not its file name; twtune did not write it: move it away to go on",
            entry.id.chars().take(64).collect::<String>()
        )));
    }
    if let Some(persist) = &entry.persist
        && !(persist.path.is_absolute() && persist.path.extension().is_some_and(|e| e == "conf"))
    {
        return Err(malformed(format!(
            "its persisted file {} is not an absolute .conf path; twtune did not write it: move it away to go on",
            persist.path.display()
        )));
    }
    Ok(entry)
}

/// The entry a rollback restores: `id`, or the newest one that can be rolled back. Refused when the
/// entry is not applied, or when a later applied entry would be undone out of order.
pub(crate) fn entry_to_roll_back(entries: &[Entry], id: Option<&str>, state: &StateDir) -> Result<Entry> {
    let missing = |what: String| Error::Journal(format!("{what}; `twtune rollback --list` shows the journal"));
    let entry =
        match id {
            Some(id) => entries
                .iter()
                .find(|e| e.id == id)
                .ok_or_else(|| missing(format!("no journal entry {id:?} in {}", state.path().display())))?,
            None => entries.iter().rev().find(|e| e.status.can_roll_back()).ok_or_else(|| {
                missing(format!("nothing to roll back: no applied entry in {}", state.path().display()))
            })?,
        };
    if !entry.status.can_roll_back() {
        return Err(Error::Journal(format!(
            "journal entry {} is {}, not applied: there is nothing to roll back",
            entry.id,
            entry.status.name()
        )));
    }
    // Applies are undone newest first: an older entry's "before" would undo the newer one's file.
    if let Some(later) = entries.iter().skip_while(|e| e.id != entry.id).skip(1).find(|e| e.status.can_roll_back()) {
        return Err(Error::Journal(format!(
            "journal entry {} came after {}: roll it back first (`twtune rollback {}`)",
            later.id, entry.id, later.id
        )));
    }
    Ok(entry.clone())
}

/// A UTC time in the two forms twtune writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Timestamp {
    /// `2026-11-24T21:10:05Z`
    pub rfc3339: String,
    /// `20261124T211005Z`, sortable, for ids.
    pub compact: String,
}

impl Timestamp {
    pub(crate) fn now() -> Timestamp {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Timestamp::from_unix(secs)
    }

    /// Civil date from seconds since 1970 (Howard Hinnant's days-from-civil, inverted).
    pub(crate) fn from_unix(secs: u64) -> Timestamp {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Timestamp {
            rfc3339: format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
            compact: format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(Timestamp::from_unix(0).rfc3339, "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_unix(951_782_400).rfc3339, "2000-02-29T00:00:00Z");
        let t = Timestamp::from_unix(1_795_554_605);
        assert_eq!(t.rfc3339, "2026-11-24T21:10:05Z");
        assert_eq!(t.compact, "20261124T211005Z");
    }

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.into(),
            created: "2026-11-24T17:10:05Z".into(),
            twtune_version: "0".into(),
            source: "profile p".into(),
            status: Status::Applied,
            changes: vec![KeyChange { key: "net.core.somaxconn".into(), before: "128".into(), after: "4096".into() }],
            persist: None,
        }
    }

    #[test]
    fn entries_round_trip_in_order_and_ids_do_not_collide() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::new(&dir.path().join("state"));
        assert!(state.entries().expect("empty").is_empty());
        let now = Timestamp::from_unix(1_795_554_605);
        let _lock = state.lock().expect("lock");
        let first = state.new_id(&now);
        state.save(&entry(&first)).expect("save");
        let second = state.new_id(&now);
        assert_eq!(second, format!("{first}-1"));
        state.save(&entry(&second)).expect("save");
        let ids: Vec<String> = state.entries().expect("entries").into_iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![first, second]);
    }

    #[test]
    fn a_second_lock_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::new(dir.path());
        let _held = state.lock().expect("first");
        // flock locks belong to the open file description: a second open conflicts, even here.
        let err = state.lock().err().expect("second lock refused");
        assert!(err.to_string().contains(&std::process::id().to_string()), "{err}");
    }

    #[test]
    fn a_lock_with_a_second_name_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::new(&dir.path().join("state"));
        drop(state.lock().expect("first lock"));
        let other = dir.path().join("other");
        std::fs::write(&other, "keep me\n").expect("write");
        std::fs::remove_file(dir.path().join("state/lock")).expect("remove");
        std::fs::hard_link(&other, dir.path().join("state/lock")).expect("hard link");
        let err = state.lock().err().expect("a hard-linked lock is refused");
        assert!(err.to_string().contains("more than one name"), "{err}");
        assert_eq!(std::fs::read_to_string(&other).expect("read"), "keep me\n");
    }

    #[test]
    fn a_corrupt_entry_names_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::new(dir.path());
        std::fs::create_dir_all(dir.path().join("journal")).expect("mkdir");
        std::fs::write(dir.path().join("journal/x.json"), "{").expect("write");
        let err = state.entries().expect_err("corrupt");
        assert!(err.to_string().contains("journal/x.json: not a twtune journal entry"), "{err}");
    }
}
