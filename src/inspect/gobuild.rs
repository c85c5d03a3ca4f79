//! The build information a Go binary carries (`go version -m` prints it): the Go version, the main
//! module and every module linked in, with their versions. It lives in the `.go.buildinfo`
//! section, found through the ELF section headers, or, in a binary stripped of them, at the start
//! of its first writable segment, as Go's own `debug/buildinfo` looks for it.
//!
//! The binary is untrusted input and may be huge: it is read at offsets ([`ReadAt`]), a few
//! bounded pieces (the ELF header, at most [`MAX_SECTIONS`] section headers, a names table of at
//! most [`MAX_NAMES_BYTES`], the build information itself at most [`MAX_BUILDINFO_BYTES`]), never
//! whole, and never executed. Every offset and size is checked before use; a forged or truncated
//! file gives "no build information", never a panic.
//!
//! Only the format of Go 1.18 and later (the version and module strings inline after the header,
//! flag bit 2) is read; the older one points into the data segment and is reported as unread.

use crate::model::records::{Library, MAX_LIBRARIES};

/// Section headers read at most (a Go binary has about 40).
pub(crate) const MAX_SECTIONS: usize = 4096;
/// The section-names table read at most.
pub(crate) const MAX_NAMES_BYTES: usize = 1 << 20;
/// The build information read at most (a binary of 500 modules needs about 60 KB).
pub(crate) const MAX_BUILDINFO_BYTES: usize = 1 << 20;
/// How far into a binary without section headers its first writable segment is searched.
const MAX_SEARCH_BYTES: usize = 64 << 10;
/// `\xff Go buildinf:`, at a 16-byte boundary.
const MAGIC: &[u8] = b"\xff Go buildinf:";
/// What the linker wraps the module information in.
const SENTINEL_LEN: usize = 16;
/// The longest module path or version kept.
const MAX_FIELD: usize = 512;

/// Reads `len` bytes at `offset`, or fewer at the end of the file; `None` when nothing can be read.
pub(crate) trait ReadAt {
    fn read_at(&self, offset: u64, len: usize) -> Option<Vec<u8>>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let start = usize::try_from(offset).ok().filter(|s| *s <= self.len())?;
        Some(self[start..start.saturating_add(len).min(self.len())].to_vec())
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buffer = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match FileExt::read_at(self, &mut buffer[filled..], offset.checked_add(filled as u64)?) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        buffer.truncate(filled);
        Some(buffer)
    }
}

/// What the build information says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoBuild {
    /// `go1.19.8`.
    pub go_version: String,
    /// The main module's path.
    pub main_module: Option<String>,
    /// Every module linked in (after `=>` replacements), at most [`MAX_LIBRARIES`].
    pub modules: Vec<Library>,
}

/// Why a file gave no build information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NotGo {
    /// Not an ELF file, or one whose headers do not hold together.
    NotElf,
    /// An ELF file without Go build information: not a Go program.
    NoBuildInfo,
    /// Go build information in the format before Go 1.18, which is not read.
    OldFormat,
    /// Build information that does not parse.
    Malformed,
}

/// The build information of the ELF file `file`.
pub(crate) fn read(file: &(impl ReadAt + ?Sized)) -> Result<GoBuild, NotGo> {
    let elf = Elf::parse(file).ok_or(NotGo::NotElf)?;
    let data = match elf.section(file, b".go.buildinfo") {
        Some(data) => data,
        None => elf.search_writable_segment(file).ok_or(NotGo::NoBuildInfo)?,
    };
    parse_buildinfo(&data)
}

/// The bits of an ELF header this reader needs.
struct Elf {
    wide: bool,
    little: bool,
    section_headers: u64,
    section_header_size: usize,
    sections: usize,
    names_index: usize,
    program_headers: u64,
    program_header_size: usize,
    programs: usize,
}

impl Elf {
    fn parse(file: &(impl ReadAt + ?Sized)) -> Option<Elf> {
        let header = file.read_at(0, 64)?;
        if header.len() < 52 || &header[..4] != b"\x7fELF" {
            return None;
        }
        let wide = match header[4] {
            1 => false,
            2 if header.len() >= 64 => true,
            _ => return None,
        };
        let little = match header[5] {
            1 => true,
            2 => false,
            _ => return None,
        };
        let r = Fields { bytes: &header, little };
        let (sh, shsize, shnum, shstr, ph, phsize, phnum) = if wide {
            (r.u64(0x28)?, r.u16(0x3a)?, r.u16(0x3c)?, r.u16(0x3e)?, r.u64(0x20)?, r.u16(0x36)?, r.u16(0x38)?)
        } else {
            (r.u32(0x20)?, r.u16(0x2e)?, r.u16(0x30)?, r.u16(0x32)?, r.u32(0x1c)?, r.u16(0x2a)?, r.u16(0x2c)?)
        };
        Some(Elf {
            wide,
            little,
            section_headers: sh,
            section_header_size: usize::from(shsize),
            sections: usize::from(shnum).min(MAX_SECTIONS),
            names_index: usize::from(shstr),
            program_headers: ph,
            program_header_size: usize::from(phsize),
            programs: usize::from(phnum).min(MAX_SECTIONS),
        })
    }

    /// The section headers, as (name offset, file offset, size), when they are all there.
    fn section_headers(&self, file: &(impl ReadAt + ?Sized)) -> Option<Vec<(u64, u64, u64)>> {
        let entry = if self.wide { 64 } else { 40 };
        if self.sections == 0 || self.section_header_size < entry {
            return None;
        }
        let table = file.read_at(self.section_headers, self.sections.checked_mul(self.section_header_size)?)?;
        let r = Fields { bytes: &table, little: self.little };
        (0..self.sections)
            .map(|i| {
                let at = i * self.section_header_size;
                if self.wide {
                    Some((r.u32(at)?, r.u64(at + 24)?, r.u64(at + 32)?))
                } else {
                    Some((r.u32(at)?, r.u32(at + 16)?, r.u32(at + 20)?))
                }
            })
            .collect()
    }

    /// The content of the section called `name`, at most [`MAX_BUILDINFO_BYTES`] of it.
    fn section(&self, file: &(impl ReadAt + ?Sized), name: &[u8]) -> Option<Vec<u8>> {
        let (at, size) = self.section_range(file, name)?;
        file.read_at(at, usize::try_from(size).ok()?.min(MAX_BUILDINFO_BYTES))
    }

    /// Where the section called `name` lies in the file: its offset and size.
    fn section_range(&self, file: &(impl ReadAt + ?Sized), name: &[u8]) -> Option<(u64, u64)> {
        let headers = self.section_headers(file)?;
        let (_, names_at, names_size) = *headers.get(self.names_index)?;
        let names = file.read_at(names_at, usize::try_from(names_size).ok()?.min(MAX_NAMES_BYTES))?;
        let (_, at, size) = headers.iter().find(|(name_at, _, _)| {
            let start = usize::try_from(*name_at).unwrap_or(usize::MAX);
            names.get(start..).is_some_and(|rest| rest.strip_prefix(name).is_some_and(|end| end.first() == Some(&0)))
        })?;
        Some((*at, *size))
    }

    /// The build information at a 16-byte boundary in the first [`MAX_SEARCH_BYTES`] of the first
    /// writable loaded segment (a binary stripped of its section headers).
    fn search_writable_segment(&self, file: &(impl ReadAt + ?Sized)) -> Option<Vec<u8>> {
        const PT_LOAD: u32 = 1;
        const PF_W: u32 = 2;
        let entry = if self.wide { 56 } else { 32 };
        if self.programs == 0 || self.program_header_size < entry {
            return None;
        }
        let table = file.read_at(self.program_headers, self.programs.checked_mul(self.program_header_size)?)?;
        let r = Fields { bytes: &table, little: self.little };
        let (offset, size) = (0..self.programs).find_map(|i| {
            let at = i * self.program_header_size;
            let (kind, flags, offset, size) = if self.wide {
                (r.u32(at)?, r.u32(at + 4)?, r.u64(at + 8)?, r.u64(at + 32)?)
            } else {
                (r.u32(at)?, r.u32(at + 24)?, r.u32(at + 4)?, r.u32(at + 16)?)
            };
            (kind == u64::from(PT_LOAD) && flags & u64::from(PF_W) != 0).then_some((offset, size))
        })?;
        let segment = file.read_at(offset, usize::try_from(size).ok()?.min(MAX_SEARCH_BYTES))?;
        let start = (0..segment.len()).step_by(16).find(|at| segment[*at..].starts_with(MAGIC))?;
        let end = usize::try_from(offset).ok()?.checked_add(start)?;
        file.read_at(u64::try_from(end).ok()?, MAX_BUILDINFO_BYTES)
    }
}

/// A chunk of a section searched at once.
const SCAN_CHUNK: usize = 1 << 20;
/// The bytes returned after a marker.
const AFTER_MARKER: usize = 64;

/// Occurrences of a marker looked at at most, a chunk at a time.
const MAX_OCCURRENCES: usize = 1000;

/// The first version that `accept` reads after an occurrence of `marker` (the [`AFTER_MARKER`]
/// bytes that follow it) in the section `section` of the ELF file `file`, searching at most
/// `limit` bytes of the section, a chunk at a time, so that a marker near its start costs one
/// chunk, and at most [`MAX_OCCURRENCES`] occurrences.
pub(crate) fn after_marker(
    file: &(impl ReadAt + ?Sized),
    section: &[u8],
    marker: &[u8],
    limit: u64,
    accept: &dyn Fn(&[u8]) -> Option<String>,
) -> Option<String> {
    let elf = Elf::parse(file)?;
    let (start, size) = elf.section_range(file, section)?;
    let end = start.checked_add(size.min(limit))?;
    let overlap = (marker.len() + AFTER_MARKER) as u64;
    let (mut at, mut looked) = (start, 0);
    while at < end {
        let len = usize::try_from((end - at).min(SCAN_CHUNK as u64 + overlap)).ok()?;
        let chunk = file.read_at(at, len)?;
        let mut from = 0;
        while let Some(found) = chunk.get(from..).and_then(|rest| find(rest, marker)) {
            let after = from + found + marker.len();
            if let Some(version) = accept(chunk.get(after..).unwrap_or_default()) {
                return Some(version);
            }
            looked += 1;
            if looked == MAX_OCCURRENCES || after >= SCAN_CHUNK {
                break;
            }
            from = after;
        }
        if chunk.len() < len || looked == MAX_OCCURRENCES {
            return None;
        }
        at += SCAN_CHUNK as u64;
    }
    None
}

/// Where `needle` first occurs in `haystack` (its first byte looked for, then the rest compared).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(at) = haystack.get(from..)?.iter().position(|b| *b == first) {
        let start = from + at;
        if haystack.get(start + 1..start + needle.len()) == Some(rest) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

/// Integers of a header, in its byte order; `None` past its end.
struct Fields<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Fields<'_> {
    fn uint(&self, at: usize, width: usize) -> Option<u64> {
        let raw = self.bytes.get(at..at.checked_add(width)?)?;
        let fold = |acc: u64, b: &u8| acc << 8 | u64::from(*b);
        Some(if self.little { raw.iter().rev().fold(0, fold) } else { raw.iter().fold(0, fold) })
    }
    fn u16(&self, at: usize) -> Option<u16> {
        self.uint(at, 2).and_then(|v| u16::try_from(v).ok())
    }
    fn u32(&self, at: usize) -> Option<u64> {
        self.uint(at, 4)
    }
    fn u64(&self, at: usize) -> Option<u64> {
        self.uint(at, 8)
    }
}

/// Parses the build information starting with its magic: a 32-byte header, then (Go 1.18 and
/// later) the Go version and the module information as two length-prefixed strings.
pub(crate) fn parse_buildinfo(data: &[u8]) -> Result<GoBuild, NotGo> {
    if !data.starts_with(MAGIC) {
        return Err(NotGo::NoBuildInfo);
    }
    let flags = *data.get(15).ok_or(NotGo::Malformed)?;
    if flags & 2 == 0 {
        return Err(NotGo::OldFormat);
    }
    let rest = data.get(32..).ok_or(NotGo::Malformed)?;
    let (version, rest) = length_prefixed(rest).ok_or(NotGo::Malformed)?;
    let (modules, _) = length_prefixed(rest).ok_or(NotGo::Malformed)?;
    let go_version = field(version).filter(|v| v.starts_with("go")).ok_or(NotGo::Malformed)?;
    let (main_module, modules) = parse_modules(strip_sentinels(modules));
    Ok(GoBuild { go_version, main_module, modules })
}

/// A string prefixed with its length as an unsigned varint, and what follows it.
fn length_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length: u64 = 0;
    for (i, byte) in data.iter().take(10).enumerate() {
        length |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            let start = i + 1;
            let end = start.checked_add(usize::try_from(length).ok()?)?;
            return Some((data.get(start..end)?, &data[end..]));
        }
    }
    None
}

/// The module information without the 16 bytes the linker puts on either side of it.
fn strip_sentinels(modules: &[u8]) -> &[u8] {
    if modules.len() > 2 * SENTINEL_LEN && modules[modules.len() - SENTINEL_LEN - 1] == b'\n' {
        &modules[SENTINEL_LEN..modules.len() - SENTINEL_LEN]
    } else {
        modules
    }
}

/// The main module and the dependencies of `go version -m`'s lines (`path`, `mod`, `dep`, `=>`).
fn parse_modules(text: &[u8]) -> (Option<String>, Vec<Library>) {
    let mut main = None;
    let mut modules: Vec<Library> = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let mut parts = line.split(|b| *b == b'\t');
        let (kind, path, version) = (parts.next(), parts.next().and_then(field), parts.next().and_then(field));
        match (kind, path) {
            (Some(b"path"), Some(path)) if main.is_none() => main = Some(path),
            (Some(b"mod"), Some(path)) => main = Some(path),
            (Some(b"dep"), Some(name)) if modules.len() < MAX_LIBRARIES => {
                modules.push(Library { name, version, found_in: "build information" });
            }
            // A replacement: the module is built from this path and version instead.
            (Some(b"=>"), Some(name)) => {
                if let Some(last) = modules.last_mut() {
                    *last = Library { name, version, found_in: "build information" };
                }
            }
            _ => {}
        }
    }
    (main, modules)
}

/// A module path, version or Go version: printable ASCII without spaces, bounded; else nothing.
fn field(bytes: &[u8]) -> Option<String> {
    let ok = !bytes.is_empty() && bytes.len() <= MAX_FIELD && bytes.iter().all(|b| b.is_ascii_graphic());
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// A small ELF file holding `buildinfo` as a `.go.buildinfo` section (tests and the fuzzer's seeds).
#[cfg(test)]
pub(crate) fn elf_with_section(buildinfo: &[u8], wide: bool) -> Vec<u8> {
    elf_with_named_section(".go.buildinfo", buildinfo, wide)
}

/// An ELF file whose one section besides the names is `name`, holding `data`.
#[cfg(test)]
pub(crate) fn elf_with_named_section(name: &str, buildinfo: &[u8], wide: bool) -> Vec<u8> {
    let names = [&b"\0.shstrtab\0"[..], name.as_bytes(), b"\0"].concat();
    let names = names.as_slice();
    let (header_size, entry) = if wide { (64usize, 64usize) } else { (52, 40) };
    let names_at = header_size;
    let data_at = names_at + names.len();
    let headers_at = (data_at + buildinfo.len()).next_multiple_of(8);
    let mut out = vec![0u8; headers_at + 3 * entry];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = if wide { 2 } else { 1 };
    out[5] = 1;
    let put = |out: &mut Vec<u8>, at: usize, value: u64, width: usize| {
        out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    };
    let (sh, shsize, shnum, shstr, word) = if wide { (0x28, 0x3a, 0x3c, 0x3e, 8) } else { (0x20, 0x2e, 0x30, 0x32, 4) };
    put(&mut out, sh, headers_at as u64, word);
    put(&mut out, shsize, entry as u64, 2);
    put(&mut out, shnum, 3, 2);
    put(&mut out, shstr, 1, 2);
    out[names_at..data_at].copy_from_slice(names);
    out[data_at..data_at + buildinfo.len()].copy_from_slice(buildinfo);
    let (offset, size) = if wide { (24, 32) } else { (16, 20) };
    for (i, (name, at, len)) in [(1u64, names_at, names.len()), (11, data_at, buildinfo.len())].iter().enumerate() {
        let base = headers_at + (i + 1) * entry;
        put(&mut out, base, *name, 4);
        put(&mut out, base + offset, *at as u64, word);
        put(&mut out, base + size, *len as u64, word);
    }
    out
}

/// Build information as Go 1.18 and later lay it out.
#[cfg(test)]
pub(crate) fn buildinfo(version: &str, modules: &str) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend([8, 2]);
    out.resize(32, 0);
    let sentinel = [0x30u8; SENTINEL_LEN];
    let wrapped = [&sentinel[..], modules.as_bytes(), &sentinel[..]].concat();
    for text in [version.as_bytes(), &wrapped] {
        let mut n = text.len();
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend(text);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_version_is_found_after_its_marker_across_chunks_and_a_false_start_is_passed() {
        let accept = |bytes: &[u8]| crate::inspect::runtimes::version_after(bytes);
        let mut rodata = b"/etc/nginx/nginx.conf\0".to_vec();
        rodata.resize(SCAN_CHUNK - 3, b'x');
        rodata.extend(b"nginx/1.22.1\0");
        for wide in [true, false] {
            let file = elf_with_named_section(".rodata", &rodata, wide);
            let found = after_marker(file.as_slice(), b".rodata", b"nginx/", 1 << 24, &accept);
            assert_eq!(found.as_deref(), Some("1.22.1"), "across the first chunk's end");
            let short = after_marker(file.as_slice(), b".rodata", b"nginx/", 1 << 10, &accept);
            assert_eq!(short, None, "past the limit, not looked at");
            assert_eq!(after_marker(&file[..file.len() / 2], b".rodata", b"nginx/", 1 << 24, &accept), None);
        }
    }

    pub(crate) const MODULES: &str = "path\texample.com/churn\nmod\texample.com/churn\t(devel)\t\n\
        dep\tgithub.com/klauspost/compress\tv1.15.12\t\ndep\tgithub.com/valyala/fasthttp\tv1.31.0\th1:x=\n\
        dep\tgolang.org/x/net\tv0.1.0\t\n=>\t../net\t(devel)\t\nbuild\tGOOS=linux\n";

    #[test]
    fn the_modules_and_the_go_version_are_read_from_both_elf_classes() {
        for wide in [true, false] {
            let file = elf_with_section(&buildinfo("go1.19.8", MODULES), wide);
            let build = read(file.as_slice()).expect("build information");
            assert_eq!(build.go_version, "go1.19.8");
            assert_eq!(build.main_module.as_deref(), Some("example.com/churn"));
            let names: Vec<(&str, Option<&str>)> =
                build.modules.iter().map(|m| (m.name.as_str(), m.version.as_deref())).collect();
            assert_eq!(
                names,
                [
                    ("github.com/klauspost/compress", Some("v1.15.12")),
                    ("github.com/valyala/fasthttp", Some("v1.31.0")),
                    ("../net", Some("(devel)")),
                ]
            );
        }
    }

    #[test]
    fn a_binary_without_section_headers_is_searched_in_its_writable_segment() {
        // 64-bit header, one PT_LOAD RW segment at 0x100 holding the build information.
        let info = buildinfo("go1.22.1", MODULES);
        let mut file = vec![0u8; 0x100];
        file[..6].copy_from_slice(b"\x7fELF\x02\x01");
        file[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        file[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        file[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        file[64..68].copy_from_slice(&1u32.to_le_bytes());
        file[68..72].copy_from_slice(&6u32.to_le_bytes());
        file[72..80].copy_from_slice(&0x100u64.to_le_bytes());
        file[96..104].copy_from_slice(&(info.len() as u64 + 32).to_le_bytes());
        file.extend([0u8; 32]);
        file.extend(&info);
        assert_eq!(read(file.as_slice()).expect("found").go_version, "go1.22.1");
    }

    #[test]
    fn what_is_not_go_build_information_says_why() {
        assert_eq!(read(&b"#!/bin/sh\n"[..]), Err(NotGo::NotElf));
        let no_section = elf_with_section(b"nothing here", true);
        assert_eq!(read(no_section.as_slice()), Err(NotGo::NoBuildInfo));
        let mut old = buildinfo("go1.16", "");
        old[15] = 0;
        assert_eq!(read(elf_with_section(&old, true).as_slice()), Err(NotGo::OldFormat));
        // A length pointing past the end, and a version that is not one.
        let mut forged = buildinfo("go1.19.8", MODULES);
        forged[32] = 0x7f;
        assert_eq!(parse_buildinfo(&forged[..60]), Err(NotGo::Malformed));
        assert_eq!(parse_buildinfo(&buildinfo("\x1b[2J", MODULES)), Err(NotGo::Malformed));
        assert_eq!(parse_buildinfo(&[0xff; 3]), Err(NotGo::NoBuildInfo));
    }

    #[test]
    fn a_huge_section_count_or_size_reads_a_bounded_amount() {
        let mut file = elf_with_section(&buildinfo("go1.19.8", MODULES), true);
        file[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes());
        // 65535 headers claimed: at most MAX_SECTIONS are read, and they are not all there.
        assert_eq!(read(file.as_slice()), Err(NotGo::NoBuildInfo));
    }
}
