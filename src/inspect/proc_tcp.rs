//! `/proc/net/tcp` and `/proc/net/tcp6` as a [`SocketSource`]: a line parser that allocates nothing
//! per line, and the reader that streams both files beneath a root.
//!
//! Line format (docs/kernel-model.md, "Socket tables"): `sl local rem st ...`, addresses as `%08X` of the big-endian
//! address read as a native integer (four such words for IPv6), ports and state in hex.

use std::io::{BufRead, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::error::Result;
use crate::inspect::source::SocketSource;
use crate::model::records::{Socket, TcpState};
use crate::root::Root;

/// Which table a line comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

/// Parses one socket line. The header line and blank lines are `Ok(None)`.
pub(crate) fn parse_tcp_line(line: &[u8], family: Family) -> Result<Option<Socket>, &'static str> {
    let mut fields = line.split(u8::is_ascii_whitespace).filter(|f| !f.is_empty());
    let Some(slot) = fields.next() else {
        return Ok(None);
    };
    if slot == b"sl" {
        return Ok(None);
    }
    if slot.last() != Some(&b':') {
        return Err("first field is not a slot number \"N:\"");
    }
    let local = fields.next().ok_or("missing local address")?;
    let remote = fields.next().ok_or("missing remote address")?;
    let state = fields.next().ok_or("missing state")?;
    let state = u8::try_from(parse_hex(state).ok_or("state is not hex")?).map_err(|_| "state out of range")?;
    let state = TcpState::from_code(state).ok_or("unknown TCP state")?;
    let socket = Socket::new(state, parse_endpoint(local, family)?, parse_endpoint(remote, family)?);
    // `tr:tm->when`: for TIME_WAIT, timer 3 and the time left in USER_HZ (1/100 s) ticks. A line
    // without it is still a socket, only of unknown age.
    let timer = fields.nth(1).and_then(|field| {
        let colon = field.iter().position(|b| *b == b':')?;
        Some((parse_hex(&field[..colon])?, parse_hex(&field[colon + 1..])?))
    });
    // `retrnsmt uid timeout inode`: the inode in decimal (0 for TIME_WAIT).
    let inode = fields.nth(3).and_then(|f| std::str::from_utf8(f).ok()?.parse::<u32>().ok()).unwrap_or(0);
    let socket = Socket { inode, ..socket };
    Ok(Some(match (state, timer) {
        (TcpState::TimeWait, Some((3, ticks))) => socket.expiring_in(ticks.saturating_mul(10)),
        _ => socket,
    }))
}

/// `0100007F:1F90` (or the 32-digit IPv6 form) to an address and port.
fn parse_endpoint(field: &[u8], family: Family) -> Result<SocketAddr, &'static str> {
    let colon = field.iter().position(|b| *b == b':').ok_or("address without ':port'")?;
    let (address, port) = (&field[..colon], &field[colon + 1..]);
    if port.len() != 4 {
        return Err("port is not four hex digits");
    }
    let port = u16::try_from(parse_hex(port).ok_or("port is not hex")?).map_err(|_| "port out of range")?;
    let ip = match family {
        Family::V4 => {
            if address.len() != 8 {
                return Err("IPv4 address is not eight hex digits");
            }
            let word = parse_hex(address).ok_or("address is not hex")?;
            IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes()))
        }
        Family::V6 => {
            if address.len() != 32 {
                return Err("IPv6 address is not 32 hex digits");
            }
            let mut bytes = [0u8; 16];
            for (chunk, out) in address.chunks_exact(8).zip(bytes.chunks_exact_mut(4)) {
                out.copy_from_slice(&parse_hex(chunk).ok_or("address is not hex")?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Up to eight hex digits to a number, without allocating.
fn parse_hex(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, d| Some((acc << 4) | char::from(*d).to_digit(16)?))
}

/// Reads the socket table from `proc/net/tcp` and `proc/net/tcp6` beneath a root.
///
/// `tcp` must exist; `tcp6` may not (a kernel without IPv6).
pub(crate) struct ProcSocketSource<'a> {
    root: &'a Root,
}

impl<'a> ProcSocketSource<'a> {
    /// A source reading beneath `root`.
    pub(crate) fn new(root: &'a Root) -> ProcSocketSource<'a> {
        ProcSocketSource { root }
    }
}

impl SocketSource for ProcSocketSource<'_> {
    fn name(&self) -> &'static str {
        "proc"
    }

    fn scan(&mut self, visit: &mut dyn FnMut(Socket), warnings: &mut Vec<String>) -> Result<()> {
        for (name, family, required) in [("tcp", Family::V4, true), ("tcp6", Family::V6, false)] {
            let Some(reader) = self.root.open_proc_net(name, required)? else {
                continue;
            };
            let path = self.root.proc_net_path(name);
            scan_table(reader, family, &path, visit, warnings)?;
        }
        Ok(())
    }
}

/// Longer lines than any the kernel writes (about 150 bytes) are skipped, not buffered: the table
/// of a captured tree is untrusted input.
const MAX_LINE: usize = 4096;

/// Streams one table through `visit`, reusing one line buffer of at most [`MAX_LINE`] bytes.
fn scan_table(
    mut reader: impl BufRead,
    family: Family,
    path: &Path,
    visit: &mut dyn FnMut(Socket),
    warnings: &mut Vec<String>,
) -> Result<()> {
    let mut line = Vec::with_capacity(256);
    let mut number = 0;
    let mut skipped = 0usize;
    let read_error = |source| crate::error::Error::read(path.to_path_buf(), source, "");
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).map_err(read_error)?;
        if read == 0 {
            break;
        }
        number += 1;
        let parsed = if line.len() == MAX_LINE && line.last() != Some(&b'\n') {
            skip_rest_of_line(&mut reader).map_err(read_error)?;
            Err("line longer than any the kernel writes")
        } else {
            parse_tcp_line(&line, family)
        };
        match parsed {
            Ok(Some(socket)) => visit(socket),
            Ok(None) => {}
            Err(problem) => {
                skipped += 1;
                // A few examples are enough; a flood of identical warnings helps nobody.
                if skipped <= 3 {
                    warnings.push(format!("{}:{number}: {problem}; line skipped", path.display()));
                }
            }
        }
    }
    if skipped > 3 {
        warnings.push(format!("{}: {} malformed lines skipped in all", path.display(), skipped));
    }
    Ok(())
}

/// Reads past the next line end without keeping what it reads.
fn skip_rest_of_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1649 1 000000004cd35bf5 100 0 0 10 0
   1: 0100007F:9C40 0200007F:1F90 06 00000000:00000000 03:00001730 00000000     0        0 0 3 0000000000000000
";

    fn parse_all(text: &str, family: Family) -> (Vec<Socket>, Vec<String>) {
        let mut sockets = Vec::new();
        let mut warnings = Vec::new();
        scan_table(text.as_bytes(), family, Path::new("proc/net/tcp"), &mut |s| sockets.push(s), &mut warnings)
            .expect("in-memory read");
        (sockets, warnings)
    }

    #[test]
    fn ipv4_lines_decode_addresses_ports_and_states() {
        let (sockets, warnings) = parse_all(V4, Family::V4);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(sockets.len(), 2);
        assert_eq!(sockets[0].state, TcpState::Listen);
        assert_eq!(sockets[0].local, "0.0.0.0:2024".parse().expect("addr"));
        assert_eq!(sockets[1].state, TcpState::TimeWait);
        assert_eq!(sockets[1].local, "127.0.0.1:40000".parse().expect("addr"));
        assert_eq!(sockets[1].remote, "127.0.0.2:8080".parse().expect("addr"));
        // `03:00001730`: 0x1730 = 5936 hundredths of a second left.
        assert_eq!((sockets[0].expires_ms, sockets[1].expires_ms), (None, Some(59_360)));
        assert_eq!((sockets[0].inode, sockets[1].inode), (1649, 0), "the listener's inode; TIME_WAIT has none");
    }

    #[test]
    fn a_time_wait_line_with_a_bad_timer_is_a_socket_of_unknown_age() {
        for timer in ["03:zz", "03", "", "02:00001730"] {
            let line = format!("   1: 0100007F:9C40 0200007F:1F90 06 00000000:00000000 {timer} 00000000");
            let socket = parse_tcp_line(line.as_bytes(), Family::V4).expect("valid").expect("a socket");
            assert_eq!((socket.state, socket.expires_ms), (TcpState::TimeWait, None), "{timer:?}");
        }
    }

    #[test]
    fn ipv6_lines_decode_word_swapped_addresses() {
        let line = b"   0: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:A2C4 01 00000000:00000000 00:00000000 00000000  1000        0 1 1 0";
        let socket = parse_tcp_line(line, Family::V6).expect("valid").expect("a socket");
        assert_eq!(socket.local, "[::1]:8080".parse().expect("addr"));
        assert_eq!(socket.remote, "[::ffff:127.0.0.1]:41668".parse().expect("addr"));
        assert_eq!(socket.state, TcpState::Established);
    }

    #[test]
    fn malformed_lines_are_reported_and_skipped() {
        let text = format!(
            "{V4}   2: 0100007F:9C41\n   3: 0100007F:9C41 0200007F:1F90 ZZ 0\n   4: 0100007F:9C41 0200007F:1F90 0E 0\nhello world\n   5: 7F:9C41 0200007F:1F90 06\n   6: 0100007F:1F90 0200007F:1F90 06 00000000:00000000 03:00001730 00000000 0 0 0 3 0\n"
        );
        let (sockets, warnings) = parse_all(&text, Family::V4);
        assert_eq!(sockets.len(), 3, "the good lines survive");
        assert_eq!(warnings.len(), 4, "three examples and a total: {warnings:?}");
        assert_eq!(warnings[0], "proc/net/tcp:4: missing remote address; line skipped");
        assert_eq!(warnings[1], "proc/net/tcp:5: state is not hex; line skipped");
        assert_eq!(warnings[2], "proc/net/tcp:6: unknown TCP state; line skipped");
        assert_eq!(warnings[3], "proc/net/tcp: 5 malformed lines skipped in all");
    }

    #[test]
    fn a_line_longer_than_the_kernel_writes_is_skipped_and_the_next_one_read() {
        let huge = "9".repeat(3 * MAX_LINE);
        let text = format!("{V4}   9: {huge}\n   1: 0100007F:9C40 0200007F:1F90 06 00000000:00000000 03:00001730 0\n");
        let (sockets, warnings) = parse_all(&text, Family::V4);
        assert_eq!(sockets.len(), 3, "the header's two sockets and the line after the long one");
        assert_eq!(warnings, vec!["proc/net/tcp:4: line longer than any the kernel writes; line skipped".to_string()]);
    }

    #[test]
    fn header_and_blank_lines_are_not_sockets() {
        assert_eq!(parse_tcp_line(b"", Family::V4), Ok(None));
        assert_eq!(parse_tcp_line(b"   \n", Family::V4), Ok(None));
        assert_eq!(parse_tcp_line(b"  sl  local_address rem_address", Family::V4), Ok(None));
    }

    #[test]
    fn hex_parser_rejects_what_is_not_hex() {
        assert_eq!(parse_hex(b"1F90"), Some(8080));
        assert_eq!(parse_hex(b"ffffffff"), Some(u32::MAX));
        assert_eq!(parse_hex(b"123456789"), None);
        assert_eq!(parse_hex(b""), None);
        assert_eq!(parse_hex(b"12G4"), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap fuzz: every prefix and a few mutations of a real line.
        let line = V4.lines().nth(2).expect("line").as_bytes();
        for end in 0..=line.len() {
            let _ = parse_tcp_line(&line[..end], Family::V4);
            let _ = parse_tcp_line(&line[..end], Family::V6);
        }
        for byte in [0u8, b':', b' ', 0xff, b'G'] {
            for at in 0..line.len() {
                let mut mutated = line.to_vec();
                mutated[at] = byte;
                let _ = parse_tcp_line(&mutated, Family::V4);
            }
        }
    }
}
