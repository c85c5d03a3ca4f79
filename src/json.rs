//! JSON as twtune writes it: serde_json's, with the characters it leaves raw but a reader's
//! terminal or editor would act on escaped as `\uXXXX` too: the C1 controls (U+0080 to U+009F,
//! among them NEL and CSI), the marks that reorder text (bidirectional embeddings, overrides and
//! isolates, the Arabic letter mark), the line and paragraph separators and the byte-order mark.
//! serde_json escapes only the C0 controls, the quote and the backslash. The text means the same
//! to a JSON parser either way; every JSON document twtune writes goes through here.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

/// Whether `c` is written as `\uXXXX`.
pub(crate) fn escaped(c: char) -> bool {
    matches!(
        c,
        '\u{80}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// A formatter that escapes what [`escaped`] says besides what `F` does.
struct Escaping<F>(F);

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name<W: ?Sized + Write>(&mut self, writer: &mut W $(, $arg: $ty)*) -> io::Result<()> {
                self.0.$name(writer $(, $arg)*)
            }
        )*
    };
}

impl<F: Formatter> Formatter for Escaping<F> {
    delegate! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        begin_object_value();
        end_object_value();
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| escaped(*c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// `value` as indented JSON into `out` (no line break after it).
pub(crate) fn to_writer_pretty<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(out, Escaping(PrettyFormatter::new()));
    value.serialize(&mut serializer)
}

/// `value` as indented JSON.
pub(crate) fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut bytes = Vec::new();
    to_writer_pretty(&mut bytes, value)?;
    // Only whole UTF-8 characters and ASCII escapes were written.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `value` as JSON on one line.
pub(crate) fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, Escaping(CompactFormatter));
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c1_controls_and_reordering_marks_are_escaped_and_read_back_unchanged() {
        let text = "a\u{85}b\u{202e}c\u{9b}[2J\u{2066}d\u{feff}\u{1b}é€";
        let value = serde_json::json!({ "k\u{200f}": [text, 1] });
        for json in [to_string(&value).expect("json"), to_string_pretty(&value).expect("json")] {
            for raw in ['\u{85}', '\u{202e}', '\u{9b}', '\u{2066}', '\u{feff}', '\u{200f}', '\u{1b}'] {
                assert!(!json.contains(raw), "{raw:?} raw in {json}");
            }
            for escape in ["\\u0085", "\\u202e", "\\u009b", "\\u2066", "\\ufeff", "\\u200f", "\\u001b"] {
                assert!(json.contains(escape), "{escape} missing in {json}");
            }
            assert!(json.contains("é€"), "other characters stay as they are: {json}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&json).expect("parses"), value);
        }
        assert!(to_string_pretty(&value).expect("json").contains("\n  \""), "still indented");
    }
}
