//! File helpers shared by the commands that write (apply, export, snapshot) and by `config`: where a
//! path of the configured system lies beneath a root, reading a file that may not exist, the atomic
//! replacement of a file, and writing into a new or empty directory only. Reading the system for
//! an audit is `root`'s job.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `path` of the configured system, beneath `root`.
pub(crate) fn beneath(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The content of a file, or `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path: path.to_path_buf(), source, hint: "" }),
    }
}

/// Refuses a directory that already holds anything: twtune never mixes its files with others'.
/// `purpose` names what the directory is for (" for the role"), or is empty.
pub(crate) fn ensure_empty(dir: &Path, purpose: &'static str) -> Result<()> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::NotEmpty { path: dir.to_path_buf(), purpose });
    }
    Ok(())
}

/// Writes `files` (relative path, content) into a new or empty directory; an existing file is never
/// overwritten.
pub(crate) fn write_into_empty_dir(dir: &Path, files: &[(&str, String)], purpose: &'static str) -> Result<()> {
    ensure_empty(dir, purpose)?;
    for (relative, content) in files {
        let path = dir.join(relative);
        write_atomically(&path, content).map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

/// Writes a file so that readers see the old or the new content, never a mix: a temporary file in
/// the same directory, fsync, rename over the target, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    // `x.conf` has the empty path as parent: that is the current directory.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.twtune-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beneath_strips_the_leading_slash() {
        assert_eq!(beneath(Path::new("/r"), Path::new("/etc/x.conf")), PathBuf::from("/r/etc/x.conf"));
        assert_eq!(beneath(Path::new("/"), Path::new("/etc/x.conf")), PathBuf::from("/etc/x.conf"));
        assert_eq!(beneath(Path::new("/r"), Path::new("rel")), PathBuf::from("/r/rel"));
    }

    #[test]
    fn a_directory_with_a_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        write_into_empty_dir(dir.path(), &[("a/b.yml", "one".into())], "").expect("empty directory");
        assert_eq!(std::fs::read_to_string(dir.path().join("a/b.yml")).expect("written"), "one");
        let err =
            write_into_empty_dir(dir.path(), &[("a/b.yml", "two".into())], " for the role").expect_err("not empty");
        assert_eq!(
            err.to_string(),
            format!("{} is not empty: give a new or empty directory for the role", dir.path().display())
        );
        assert_eq!(std::fs::read_to_string(dir.path().join("a/b.yml")).expect("kept"), "one");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("x.conf");
        write_atomically(&path, "old").expect("first write");
        write_atomically(&path, "new").expect("second write");
        assert_eq!(read_optional(&path).expect("readable"), Some("new".into()));
        assert_eq!(std::fs::read_dir(dir.path()).expect("listable").count(), 1);
        assert_eq!(read_optional(&dir.path().join("absent")).expect("absent is fine"), None);
    }
}
