//! Text for people fitted to a width: the columns every human report is wrapped to, and [`Fit`],
//! the writer that breaks any longer line at a space with a hanging indent. Renderers that wrap
//! their own paragraphs ([`super::human::wrapped`]) ask [`width`] so that their lines fit already;
//! `Fit` catches the rest (headings, table rows, summary lines).

use std::io::{self, Write};
use std::sync::OnceLock;

/// Fewer columns than this are not worth wrapping to: one word would make a line.
const NARROWEST: usize = 40;
/// Where nothing says otherwise (stdout is no terminal and `COLUMNS` is unset).
pub(crate) const DEFAULT_WIDTH: usize = 80;

static WIDTH: OnceLock<usize> = OnceLock::new();

/// Sets the width once, for the process: `COLUMNS` when it is a number, else the terminal's width
/// (`terminal`), else [`DEFAULT_WIDTH`]; never below 40 columns.
pub(crate) fn set_width(columns_env: Option<&str>, terminal: Option<usize>) -> usize {
    let chosen = columns_env.and_then(|c| c.trim().parse::<usize>().ok()).filter(|n| *n > 0).or(terminal);
    *WIDTH.get_or_init(|| chosen.unwrap_or(DEFAULT_WIDTH).max(NARROWEST))
}

/// The columns human text is fitted to.
pub(crate) fn width() -> usize {
    WIDTH.get().copied().unwrap_or(DEFAULT_WIDTH)
}

/// Columns a string takes on screen, ignoring ANSI style sequences.
pub(crate) fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

/// The columns of a table that fit the width: each column's width (`widths`, the widest cell or
/// header), two spaces between columns and two before the first; columns are dropped in
/// `drop_order` until the rest fit (or none of those is left). The kept indexes, in order.
pub(crate) fn columns_that_fit(widths: &[usize], drop_order: &[usize]) -> Vec<usize> {
    let mut kept: Vec<usize> = (0..widths.len()).collect();
    let total = |kept: &[usize]| 2 + kept.iter().map(|i| widths[*i] + 2).sum::<usize>() - 2;
    for column in drop_order {
        if total(&kept) <= width() {
            break;
        }
        kept.retain(|k| k != column);
    }
    kept
}

/// A writer that passes whole lines on, each broken at spaces into lines of at most `width`
/// columns where it can be (a word longer than that stays whole). Later pieces are indented under
/// the line's own indent plus its list marker (`- `, `* `, `3. `), or two more spaces.
pub(crate) struct Fit<W: Write> {
    inner: W,
    width: usize,
    line: Vec<u8>,
}

impl<W: Write> Fit<W> {
    pub(crate) fn new(inner: W, width: usize) -> Fit<W> {
        Fit { inner, width, line: Vec::new() }
    }

    fn emit(&mut self, newline: bool) -> io::Result<()> {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let fitted = fit_line(&text, self.width);
        self.inner.write_all(fitted.as_bytes())?;
        if newline {
            self.inner.write_all(b"\n")?;
        }
        Ok(())
    }
}

impl<W: Write> Write for Fit<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for chunk in buf.split_inclusive(|b| *b == b'\n') {
            match chunk.strip_suffix(b"\n") {
                Some(rest) => {
                    self.line.extend_from_slice(rest);
                    self.emit(true)?;
                }
                None => self.line.extend_from_slice(chunk),
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.emit(false)?;
        }
        self.inner.flush()
    }
}

/// `line` broken into pieces of at most `width` columns, joined by newlines.
pub(crate) fn fit_line(line: &str, width: usize) -> String {
    if visible_len(line) <= width {
        return line.to_string();
    }
    let hanging = " ".repeat(hanging_indent(line).min(width / 2));
    let mut out = String::new();
    let mut rest = line.to_string();
    let mut first = true;
    loop {
        let piece = if first { rest.clone() } else { format!("{hanging}{}", rest.trim_start()) };
        if visible_len(&piece) <= width {
            out.push_str(&piece);
            return out;
        }
        let Some(cut) = last_space_within(&piece, width, if first { 0 } else { hanging.len() }) else {
            out.push_str(&piece);
            return out;
        };
        out.push_str(piece[..cut].trim_end());
        out.push('\n');
        rest = piece[cut..].to_string();
        first = false;
    }
}

/// Whether `word` belongs to the one before it and no line may break between them: a unit after
/// its number (`0.1 %`, `60 s`, `500 ms`), so that no number is read without it.
pub(crate) fn glued(word: &str) -> bool {
    let bare = word.trim_end_matches([',', ';', ')', '.', ':']);
    bare.starts_with('%') || matches!(bare, "s" | "ms" | "s/s")
}

/// The byte index of the last space at or before visible column `width` (and after the first
/// `after` bytes, the indent), where a line may break; past a word longer than the width, the
/// first space after it.
fn last_space_within(text: &str, width: usize, after: usize) -> Option<usize> {
    let mut column = 0;
    let mut in_escape = false;
    let mut best = None;
    for (index, c) in text.char_indices() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => {
                if column > width && best.is_some() {
                    break;
                }
                let next_word = text[index + 1..].split(' ').next().unwrap_or("");
                if c == ' ' && index > after && text[..index].trim_end().len() > after && !glued(next_word) {
                    best = Some(index);
                }
                column += 1;
            }
        }
    }
    best
}

/// How far later pieces of `line` are indented: under the text after its indent and list marker.
fn hanging_indent(line: &str) -> usize {
    let plain: String = {
        let mut out = String::new();
        let mut in_escape = false;
        for c in line.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    let indent = plain.len() - plain.trim_start().len();
    let body = plain.trim_start();
    let digits = body.chars().take_while(char::is_ascii_digit).count();
    // A list marker, or a count that leads its line (`200 outbound: ...`): later pieces go under
    // the text after it.
    let marker = if body.starts_with("- ") || body.starts_with("* ") {
        2
    } else if digits > 0 && body[digits..].starts_with(". ") {
        digits + 2
    } else if digits > 0 && body[digits..].starts_with(' ') {
        digits + 1
    } else {
        2
    };
    indent + marker
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_breaks_at_spaces_under_its_marker() {
        let line = format!("  - {}", "word ".repeat(30).trim_end());
        let fitted = fit_line(&line, 40);
        let lines: Vec<&str> = fitted.lines().collect();
        assert!(lines.len() > 3, "{fitted}");
        assert!(lines.iter().all(|l| visible_len(l) <= 40), "{fitted}");
        assert!(lines[0].starts_with("  - word"));
        assert!(lines[1..].iter().all(|l| l.starts_with("    word")), "{fitted}");
        assert_eq!(fitted.split_whitespace().count(), 31, "no word lost");
    }

    #[test]
    fn a_word_longer_than_the_width_stays_whole_and_short_lines_stay_as_they_are() {
        let long = format!("x {} y", "a".repeat(60));
        assert_eq!(fit_line(&long, 40), format!("x\n  {}\n  y", "a".repeat(60)));
        assert_eq!(fit_line("  short   aligned  columns", 40), "  short   aligned  columns");
    }

    #[test]
    fn styles_take_no_columns_and_numbered_items_hang_under_their_text() {
        let styled = format!("\x1b[1mHeading\x1b[0m {}", "w ".repeat(20).trim_end());
        assert_eq!(fit_line(&styled, 49), styled, "49 visible columns");
        let numbered = format!("  12. {}", "word ".repeat(12).trim_end());
        assert!(fit_line(&numbered, 40).lines().skip(1).all(|l| l.starts_with("      word")));
    }

    #[test]
    fn a_unit_stays_with_its_number() {
        let line = "abcdefghij 0.1 % used, 60 s";
        for width in 12..=20 {
            let fitted = fit_line(line, width);
            assert!(!fitted.lines().any(|l| l.trim_start().starts_with('%')), "{width}: {fitted}");
            assert!(!fitted.lines().any(|l| l.trim() == "s"), "{width}: {fitted}");
        }
    }

    #[test]
    fn the_writer_fits_each_line_and_passes_a_partial_line_on_flush() {
        let mut out = Vec::new();
        {
            let mut fit = Fit::new(&mut out, 20);
            write!(fit, "one two three four five six\nshort\npro").expect("write");
            write!(fit, "mpt? ").expect("write");
            fit.flush().expect("flush");
        }
        assert_eq!(String::from_utf8(out).expect("utf-8"), "one two three four\n  five six\nshort\nprompt? ");
    }
}
