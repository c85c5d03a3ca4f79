//! How counts are written for people, one way everywhere: the number as digits (`1000`, never
//! `1 000` or `1,000`, so that it reads the same in a report, a finding and JSON), and its noun
//! in the plural unless the count is one.

/// `n noun` or `n nouns` (`entry`: `entries`).
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// `""` for one, `"s"` otherwise.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A duration in seconds as people read it: `0.31 ms`, `60 ms`, `2.0 s`.
pub(crate) fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 0.001 => format!("{:.2} ms", s * 1000.0),
        s if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        s => format!("{s:.1} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1, "socket"), "1 socket");
        assert_eq!(count(0, "socket"), "0 sockets");
        assert_eq!(count(1000, "port"), "1000 ports");
        assert_eq!((count(2, "entry"), count(2, "key")), ("2 entries".into(), "2 keys".into()));
        assert_eq!(
            (duration(0.000_31), duration(0.06), duration(2.0)),
            ("0.31 ms".into(), "60 ms".into(), "2.0 s".into())
        );
    }
}
