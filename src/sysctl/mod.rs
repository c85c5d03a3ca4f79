//! Everything about sysctls: key names and their path beneath `proc/sys`, values as text (the
//! whitespace folding used whenever two values are compared or printed), the kernel version that
//! decides which keys exist, what twtune knows of each key ([`keys`]), and every write to
//! `/proc/sys` ([`procsys`]).
//!
//! This module itself is pure. An audit reads sysctls through `root`; [`procsys`] reads back what it
//! writes.

pub(crate) mod keys;
pub(crate) mod procsys;

use std::fmt;

use crate::error::{Error, Result};

/// A validated sysctl key in dotted form, such as `net.ipv4.tcp_tw_reuse`.
///
/// Valid keys are segments of `[A-Za-z0-9_-]` joined by single dots, under `net.`. That excludes every
/// way out of `proc/sys` (`..`, `/`, absolute paths, NUL) by construction, and it is all twtune needs:
/// it only reads and tunes networking keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SysctlKey(String);

impl SysctlKey {
    /// Parses and validates a dotted key name.
    pub(crate) fn parse(text: &str) -> Result<SysctlKey> {
        let invalid = |problem: &str| Error::InvalidKey { key: text.to_string(), problem: problem.to_string() };
        if text.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if text.contains('/') {
            return Err(invalid("use dots, not '/', between the parts of a name"));
        }
        for segment in text.split('.') {
            if segment.is_empty() {
                return Err(invalid("empty part (leading, trailing or doubled dot)"));
            }
            if let Some(bad) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
                return Err(invalid(&format!("character {bad:?} is not allowed (only A-Z a-z 0-9 _ -)")));
            }
        }
        if !text.starts_with("net.") {
            return Err(invalid("twtune only handles keys under net."));
        }
        Ok(SysctlKey(text.to_string()))
    }

    /// The dotted name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The path of this key relative to `proc/sys`, e.g. `net/ipv4/tcp_tw_reuse`.
    pub(crate) fn relative_path(&self) -> String {
        self.0.replace('.', "/")
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Folds every run of whitespace to one space and trims the ends, the form in which twtune prints and
/// compares values (`/proc/sys` separates the fields of `ip_local_port_range` with a tab).
pub(crate) fn fold_whitespace(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A kernel release reduced to the numbers that decide which keys exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Reads `major.minor` from the front of a release string such as `6.18.44-fc-v669`.
    /// Returns `None` when the string does not start that way.
    pub(crate) fn from_release(release: &str) -> Option<KernelVersion> {
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion { major, minor })
    }

    /// Builds a version from its numbers.
    pub(crate) const fn new(major: u32, minor: u32) -> KernelVersion {
        KernelVersion { major, minor }
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dotted_net_keys() {
        let key = SysctlKey::parse("net.ipv4.tcp_tw_reuse").expect("valid");
        assert_eq!(key.as_str(), "net.ipv4.tcp_tw_reuse");
        assert_eq!(key.relative_path(), "net/ipv4/tcp_tw_reuse");
        assert!(SysctlKey::parse("net.ipv4.conf.eth-0.rp_filter").is_ok());
    }

    #[test]
    fn rejects_every_way_out_of_proc_sys() {
        for bad in [
            "",
            "net..ipv4",
            ".net.ipv4",
            "net.ipv4.",
            "net/ipv4/x",
            "../etc/passwd",
            "/etc/passwd",
            "net.ipv4.a b",
            "net.ipv4.x\0y",
            "net.ipv4.*",
            "kernel.hostname",
            "net",
        ] {
            let err = SysctlKey::parse(bad).expect_err(bad);
            assert!(err.to_string().starts_with("invalid sysctl key"), "{bad}: {err}");
        }
    }

    #[test]
    fn folds_tabs_and_runs_of_spaces() {
        assert_eq!(fold_whitespace("32768\t60999\n"), "32768 60999");
        assert_eq!(fold_whitespace("  4096   87380  6291456 "), "4096 87380 6291456");
        assert_eq!(fold_whitespace(""), "");
    }

    #[test]
    fn kernel_version_from_release_strings() {
        assert_eq!(KernelVersion::from_release("6.18.44-fc-v669"), Some(KernelVersion::new(6, 18)));
        assert_eq!(KernelVersion::from_release("4.9.0-19-amd64\n"), Some(KernelVersion::new(4, 9)));
        assert_eq!(KernelVersion::from_release("5.15"), Some(KernelVersion::new(5, 15)));
        assert_eq!(KernelVersion::from_release("garbage"), None);
        assert_eq!(KernelVersion::from_release(""), None);
        assert!(KernelVersion::new(4, 11) < KernelVersion::new(4, 12));
        assert!(KernelVersion::new(10, 0) > KernelVersion::new(4, 12));
    }
}
