//! The version a jar's manifest gives (`Implementation-Version`, else `Bundle-Version`), for a
//! jar whose file name carries none (Debian's `/usr/share/java/httpclient.jar`, which its
//! versioned names only link to). A jar is a zip file: its end record is found in its last
//! 64 KiB, the central directory (at most [`MAX_CENTRAL_BYTES`]) gives where
//! `META-INF/MANIFEST.MF` is, and the entry, stored or deflated, is read and inflated to at most
//! [`MAX_MANIFEST_BYTES`]. Everything is read at offsets ([`ReadAt`]), each checked; a forged or
//! truncated jar gives no version, never a panic.

use std::io::Read;

use crate::inspect::gobuild::ReadAt;
use crate::inspect::runtimes::clean_version;

/// The central directory read at most.
pub(crate) const MAX_CENTRAL_BYTES: usize = 1 << 20;
/// The manifest read, and inflated, at most.
pub(crate) const MAX_MANIFEST_BYTES: usize = 64 << 10;
/// The end record and the longest comment that may follow it.
const MAX_TAIL: u64 = 22 + 0xffff;
const END: &[u8] = b"PK\x05\x06";
const CENTRAL: &[u8] = b"PK\x01\x02";
const LOCAL: &[u8] = b"PK\x03\x04";
const MANIFEST: &[u8] = b"META-INF/MANIFEST.MF";

/// The version in the manifest of the jar `file` of `size` bytes.
pub(crate) fn manifest_version(file: &(impl ReadAt + ?Sized), size: u64) -> Option<String> {
    version_of(&String::from_utf8_lossy(&manifest(file, size)?))
}

/// `Implementation-Version`, else `Bundle-Version`, of a manifest's main section (continuation
/// lines, which start with a space, joined).
pub(crate) fn version_of(text: &str) -> Option<String> {
    let mut joined: Vec<String> = Vec::new();
    for line in text.lines().take_while(|l| !l.trim().is_empty()) {
        match (line.strip_prefix(' '), joined.last_mut()) {
            (Some(more), Some(last)) if last.len() < MAX_MANIFEST_BYTES => last.push_str(more),
            _ => joined.push(line.to_string()),
        }
    }
    let field = |name: &str| joined.iter().find_map(|l| l.strip_prefix(name)).map(str::trim);
    clean_version(field("Implementation-Version:").or_else(|| field("Bundle-Version:"))?)
}

/// The bytes of `META-INF/MANIFEST.MF`, inflated.
fn manifest(file: &(impl ReadAt + ?Sized), size: u64) -> Option<Vec<u8>> {
    let tail_len = size.min(MAX_TAIL);
    let tail = file.read_at(size.checked_sub(tail_len)?, usize::try_from(tail_len).ok()?)?;
    let end = (0..=tail.len().checked_sub(22)?).rev().find(|at| tail[*at..].starts_with(END))?;
    let entries = le(&tail, end + 10, 2)?;
    let (central_size, central_at) = (le(&tail, end + 12, 4)?, le(&tail, end + 16, 4)?);
    let central = file.read_at(central_at, usize::try_from(central_size).ok()?.min(MAX_CENTRAL_BYTES))?;
    let mut at = 0usize;
    for _ in 0..entries {
        if !central.get(at..)?.starts_with(CENTRAL) {
            return None;
        }
        let (method, compressed) = (le(&central, at + 10, 2)?, le(&central, at + 20, 4)?);
        let name_len = usize::try_from(le(&central, at + 28, 2)?).ok()?;
        let skip = usize::try_from(le(&central, at + 30, 2)? + le(&central, at + 32, 2)?).ok()?;
        if central.get(at + 46..at + 46 + name_len)? == MANIFEST {
            return entry(file, le(&central, at + 42, 4)?, method, compressed);
        }
        at += 46 + name_len + skip;
    }
    None
}

/// An entry's data from its local header at `local`: stored, or deflated and inflated here.
fn entry(file: &(impl ReadAt + ?Sized), local: u64, method: u64, compressed: u64) -> Option<Vec<u8>> {
    let header = file.read_at(local, 30)?;
    if !header.starts_with(LOCAL) {
        return None;
    }
    let data_at = local.checked_add(30 + le(&header, 26, 2)? + le(&header, 28, 2)?)?;
    let data = file.read_at(data_at, usize::try_from(compressed).ok()?.min(MAX_MANIFEST_BYTES))?;
    match method {
        0 => Some(data),
        8 => {
            let mut out = Vec::new();
            // What inflates before an error is kept: a manifest cut short still has its head.
            let _ = flate2::read::DeflateDecoder::new(data.as_slice())
                .take(MAX_MANIFEST_BYTES as u64)
                .read_to_end(&mut out);
            (!out.is_empty()).then_some(out)
        }
        _ => None,
    }
}

/// A little-endian integer of `width` bytes at `at`.
fn le(bytes: &[u8], at: usize, width: usize) -> Option<u64> {
    let raw = bytes.get(at..at.checked_add(width)?)?;
    Some(raw.iter().rev().fold(0, |acc, b| acc << 8 | u64::from(*b)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A jar holding `entries` (name, content), each stored or deflated, as zip(1) lays it out.
    pub(crate) fn jar(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        use std::io::Write;
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, content, deflate) in entries {
            let data = if *deflate {
                let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(content).expect("deflate");
                encoder.finish().expect("deflate")
            } else {
                content.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend(LOCAL);
            out.extend([20, 0, 0, 0]);
            out.extend(method.to_le_bytes());
            out.extend([0; 8]);
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((content.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend([0, 0]);
            out.extend(name.as_bytes());
            out.extend(&data);
            central.extend(CENTRAL);
            central.extend([20, 0, 20, 0, 0, 0]);
            central.extend(method.to_le_bytes());
            central.extend([0; 8]);
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((content.len() as u32).to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend([0; 12]);
            central.extend(offset.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let central_at = out.len() as u32;
        out.extend(&central);
        out.extend(END);
        out.extend([0; 4]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(central_at.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    pub(crate) const MANIFEST_TEXT: &[u8] = b"Manifest-Version: 1.0\r\nBundle-Name: Apache HttpClient\r\n\
        Export-Package: org.apache.http.auth;version=\"4.5.14\",org.apa\r\n che.http.client\r\n\
        Bundle-Version: 4.5.14\r\n\r\nName: x\r\nImplementation-Version: 9\r\n";

    #[test]
    fn the_manifest_version_is_read_stored_or_deflated_and_nothing_is_guessed() {
        for deflate in [false, true] {
            let bytes = jar(&[("a/B.class", b"\xca\xfe", deflate), ("META-INF/MANIFEST.MF", MANIFEST_TEXT, deflate)]);
            assert_eq!(manifest_version(bytes.as_slice(), bytes.len() as u64).as_deref(), Some("4.5.14"));
        }
        let implementation = b"Implementation-Version: 4.12.0\nBundle-Version: 4.12.0.x\n";
        assert_eq!(version_of(&String::from_utf8_lossy(implementation)).as_deref(), Some("4.12.0"));
        let none = jar(&[("a/B.class", b"\xca\xfe", true)]);
        assert_eq!(manifest_version(none.as_slice(), none.len() as u64), None);
        let real = jar(&[("META-INF/MANIFEST.MF", MANIFEST_TEXT, true)]);
        for cut in [0, 10, real.len() / 2, real.len() - 1] {
            let _ = manifest_version(&real[..cut], cut as u64);
        }
        assert_eq!(manifest_version(real.as_slice(), u64::MAX), None, "a size the file does not have");
    }
}
