//! The bytes a terminal in raw mode sends for the keys the view knows. Pure.
//!
//! twtune reads the terminal itself rather than through crossterm's event reader: that reader
//! spins forever once the terminal hangs up (its read loop never leaves on end of file or EIO),
//! which would leave a watch from a dropped ssh session burning a core. Reading the bytes here
//! makes a hang-up an ordinary end.

use crate::watch::state::Key;

/// The keys in `bytes` (one read's worth), in order. Unknown keys and escape sequences are
/// dropped whole.
pub(crate) fn parse(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut rest = bytes;
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        let key = match first {
            0x03 => Some(Key::Interrupt),
            0x0c => Some(Key::Redraw),
            0x1a => Some(Key::Suspend),
            b'\r' | b'\n' => Some(Key::Enter),
            0x7f | 0x08 => Some(Key::Back),
            0x1b => {
                let (key, used) = escape(rest);
                rest = &rest[used..];
                key
            }
            byte if byte.is_ascii_graphic() || byte == b' ' => Some(Key::Char(char::from(byte))),
            // Other control bytes, and the bytes of a character beyond ASCII.
            _ => None,
        };
        keys.extend(key);
    }
    keys
}

/// The key of the escape sequence whose bytes after ESC begin `rest`, and how many of them it
/// takes. ESC alone (or before a byte that starts no sequence) is Esc.
fn escape(rest: &[u8]) -> (Option<Key>, usize) {
    match rest {
        // CSI (`ESC [`) and SS3 (`ESC O`, cursor keys in application mode).
        [b'[' | b'O', tail @ ..] => {
            // Parameters and intermediates, then the final byte (0x40..=0x7e).
            let end = tail.iter().position(|b| (0x40..=0x7e).contains(b));
            match end {
                Some(at) => {
                    let key = match (&tail[..at], tail[at]) {
                        (_, b'A') => Some(Key::Up),
                        (_, b'B') => Some(Key::Down),
                        (_, b'D') => Some(Key::Back),
                        (b"5", b'~') => Some(Key::PageUp),
                        (b"6", b'~') => Some(Key::PageDown),
                        _ => None,
                    };
                    (key, at + 2)
                }
                // Cut off: drop what there is.
                None => (None, rest.len()),
            }
        }
        _ => (Some(Key::Back), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_control_keys_and_cursor_keys_are_read() {
        assert_eq!(
            parse(b"qps? \r\x7f\x03"),
            [
                Key::Char('q'),
                Key::Char('p'),
                Key::Char('s'),
                Key::Char('?'),
                Key::Char(' '),
                Key::Enter,
                Key::Back,
                Key::Interrupt
            ]
        );
        assert_eq!(parse(b"\x1b[A\x1b[B\x1bOA\x1bOB\x1b[D"), [Key::Up, Key::Down, Key::Up, Key::Down, Key::Back]);
        assert_eq!(parse(b"\x1b"), [Key::Back]);
        assert_eq!(parse(b"\x0c\x1a"), [Key::Redraw, Key::Suspend]);
        assert_eq!(parse(b"\x1b[5~\x1b[6~\x1b[15~"), [Key::PageUp, Key::PageDown]);
        assert_eq!(parse(b"\x1bq"), [Key::Back, Key::Char('q')]);
    }

    #[test]
    fn unknown_sequences_and_bytes_are_dropped_whole() {
        // F5, a modified arrow, a mouse report cut off, a UTF-8 character, NUL.
        assert_eq!(parse(b"\x1b[15~s"), [Key::Char('s')]);
        assert_eq!(parse(b"\x1b[1;5Aq"), [Key::Up, Key::Char('q')]);
        assert_eq!(parse(b"\x1b[<0;12"), []);
        assert_eq!(parse("é\0j".as_bytes()), [Key::Char('j')]);
        assert_eq!(parse(b""), []);
    }
}
