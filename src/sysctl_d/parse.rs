//! Pure parser of sysctl configuration files (`sysctl.d(5)`, `sysctl.conf(5)`): `key = value`,
//! `#` and `;` comment lines, the `-` prefix (ignore failure), `/` or `.` separators, glob keys and
//! `-key` exclusions. Every entry keeps its line; a malformed line is reported and skipped, never
//! stopping the rest of the file.

use crate::problem::LineProblem;

/// One meaningful line of a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConfLine {
    /// `key = value`, or `-key = value` (failure to apply is ignored).
    Assign { key: String, value: String, ignore_failure: bool, line: usize },
    /// `-key` without `=`: keeps a key out of every glob assignment.
    Exclude { pattern: String, line: usize },
}

/// The meaningful lines of one file and the lines that could not be used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ParsedConf {
    pub lines: Vec<ConfLine>,
    pub problems: Vec<LineProblem>,
}

/// Whether a key is a glob pattern rather than one key.
pub(crate) fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// The dotted form of a key written either way. As in procps and systemd: when the first separator
/// is `/`, the key is a path, and `/` and `.` swap (`net/ipv4/conf/eth0.100/rp_filter` is
/// `net.ipv4.conf.eth0/100.rp_filter`).
pub(crate) fn normalize_key(key: &str) -> String {
    let key = key.trim_start_matches('/');
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                other => other,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// The value the kernel ends up with for integer keys when a comment trails the value: both tools
/// pass `2 # note` on whole and the kernel reads the leading number. Used for comparisons only.
pub(crate) fn effective_value(value: &str) -> &str {
    match value.find(" #").or_else(|| value.find("\t#")) {
        Some(i) => value[..i].trim_end(),
        None => value,
    }
}

/// Real sysctl names are well under 100 characters; a longer key is garbage (or an attack on the
/// glob matcher) and is skipped with a problem.
pub(crate) const MAX_KEY_LEN: usize = 256;

/// Parses one configuration file.
pub(crate) fn parse_conf(text: &str) -> ParsedConf {
    let mut parsed = ParsedConf::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let problem = |problem: &str| LineProblem { line, problem: problem.to_string() };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let (ignore_failure, rest) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, trimmed),
        };
        let Some((key, value)) = rest.split_once('=') else {
            if ignore_failure && !rest.is_empty() && !rest.contains(char::is_whitespace) && rest.len() <= MAX_KEY_LEN {
                parsed.lines.push(ConfLine::Exclude { pattern: normalize_key(rest), line });
            } else {
                parsed.problems.push(problem("expected \"key = value\" (no '=' in the line)"));
            }
            continue;
        };
        let key = key.trim();
        if key.len() > MAX_KEY_LEN {
            parsed.problems.push(problem(&format!("a key longer than {MAX_KEY_LEN} characters; skipped")));
            continue;
        }
        if key.is_empty() {
            parsed.problems.push(problem("no key before '='"));
            continue;
        }
        if key.contains(char::is_whitespace) {
            parsed.problems.push(problem(&format!("key {key:?} contains white space")));
            continue;
        }
        let value = value.trim();
        if effective_value(value) != value {
            parsed.problems.push(problem(&format!(
                "comments must start a line: {value:?} is given to the kernel whole (an integer key reads only \
                 its leading number)"
            )));
        }
        parsed.lines.push(ConfLine::Assign { key: normalize_key(key), value: value.to_string(), ignore_failure, line });
    }
    parsed
}

/// fnmatch-style matching of a key against a glob: `*` any run of characters, `?` one character,
/// `[...]` a class (`[!...]` negated, ranges `a-z`).
pub(crate) fn glob_matches(pattern: &str, key: &str) -> bool {
    // The literal part before the first wildcard must match as it is: most globs fail here, at
    // the cost of a string comparison (a tree may hold a thousand globs and thousands of keys).
    let literal = pattern.find(['*', '?', '[']).map_or(pattern, |i| &pattern[..i]);
    if !key.starts_with(literal) {
        return false;
    }
    // Likewise the literal part after the last wildcard (a `]` may close a class: not literal).
    let tail = pattern.rfind(['*', '?', '[', ']']).map_or("", |i| &pattern[i + 1..]);
    if !key.ends_with(tail) {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let k: Vec<char> = key.chars().collect();
    // The set of key positions the pattern read so far can end at, one pattern token at a time:
    // no recursion and O(pattern × key) steps, whatever the stars (a file is untrusted input).
    let mut at = vec![false; k.len() + 1];
    let mut next = vec![false; k.len() + 1];
    at[0] = true;
    let mut i = 0;
    while i < p.len() {
        next.iter_mut().for_each(|r| *r = false);
        match p[i] {
            '*' => {
                // Any run of characters: every position from the first reachable one on.
                if let Some(first) = at.iter().position(|r| *r) {
                    next[first..].iter_mut().for_each(|r| *r = true);
                }
                while p.get(i + 1) == Some(&'*') {
                    i += 1;
                }
            }
            '[' if class_end(&p, i).is_some() => {
                let close = class_end(&p, i).unwrap_or(i);
                for j in 0..k.len() {
                    next[j + 1] = at[j] && class_matches(&p[i + 1..close], k[j]);
                }
                i = close;
            }
            // An unclosed `[` is a literal, as every other character but `?`.
            c => {
                for j in 0..k.len() {
                    next[j + 1] = at[j] && (c == '?' || k[j] == c);
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        std::mem::swap(&mut at, &mut next);
        i += 1;
    }
    at[k.len()]
}

/// The index of the `]` closing the class that opens at `open` (a `]` right after `[` or `[!` is a
/// member, as in fnmatch).
fn class_end(p: &[char], open: usize) -> Option<usize> {
    let mut start = open + 1;
    if matches!(p.get(start), Some('!' | '^')) {
        start += 1;
    }
    p.iter().enumerate().skip(start + 1).find(|(_, c)| **c == ']').map(|(i, _)| i)
}

/// Whether `c` is in a class body such as `!0-9` or `al`.
fn class_matches(class: &[char], c: char) -> bool {
    let (negated, class) = match class.first() {
        Some('!' | '^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            found |= (class[i]..=class[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= class[i] == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_comments_prefixes_and_separators() {
        let text = "# comment\n; also a comment\n\nnet.ipv4.tcp_fin_timeout = 30\n  net/ipv4/tcp_tw_reuse=1  \n-net.ipv4.tcp_tw_recycle = 1\nnet.ipv4.ip_local_reserved_ports =\n";
        let parsed = parse_conf(text);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(
            parsed.lines,
            vec![
                ConfLine::Assign {
                    key: "net.ipv4.tcp_fin_timeout".into(),
                    value: "30".into(),
                    ignore_failure: false,
                    line: 4
                },
                ConfLine::Assign {
                    key: "net.ipv4.tcp_tw_reuse".into(),
                    value: "1".into(),
                    ignore_failure: false,
                    line: 5
                },
                ConfLine::Assign {
                    key: "net.ipv4.tcp_tw_recycle".into(),
                    value: "1".into(),
                    ignore_failure: true,
                    line: 6
                },
                ConfLine::Assign {
                    key: "net.ipv4.ip_local_reserved_ports".into(),
                    value: "".into(),
                    ignore_failure: false,
                    line: 7
                },
            ]
        );
    }

    #[test]
    fn values_keep_inner_whitespace_and_equals_signs() {
        let parsed = parse_conf("net.ipv4.ip_local_port_range = 1024\t65535\nkernel.core_pattern = |/bin/x a=b\n");
        let values: Vec<&str> = parsed
            .lines
            .iter()
            .map(|e| match e {
                ConfLine::Assign { value, .. } => value.as_str(),
                ConfLine::Exclude { .. } => "",
            })
            .collect();
        assert_eq!(values, vec!["1024\t65535", "|/bin/x a=b"]);
    }

    #[test]
    fn globs_and_exclusions() {
        let parsed = parse_conf(
            "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.lo.rp_filter\n- net/ipv4/conf/eth0.100/rp_filter\n",
        );
        assert_eq!(parsed.lines[1], ConfLine::Exclude { pattern: "net.ipv4.conf.lo.rp_filter".into(), line: 2 });
        assert_eq!(parsed.lines[2], ConfLine::Exclude { pattern: "net.ipv4.conf.eth0/100.rp_filter".into(), line: 3 });
        assert!(is_glob("net.ipv4.conf.*.rp_filter") && !is_glob("net.ipv4.tcp_tw_reuse"));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_numbers_and_skipped() {
        let parsed = parse_conf(
            "net.ipv4.tcp_tw_reuse 1\n= 5\nnet ipv4 = 1\nnet.ipv4.tcp_syncookies = 1\n-\nnet.ipv4.tcp_timestamps = 1 # on\n",
        );
        let lines: Vec<usize> = parsed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 5, 6], "{:?}", parsed.problems);
        assert_eq!(parsed.lines.len(), 2, "the good line and the commented value are kept");
        assert!(parsed.problems[4].problem.contains("comments must start a line"));
    }

    #[test]
    fn slash_keys_swap_separators() {
        assert_eq!(normalize_key("net/ipv4/tcp_fin_timeout"), "net.ipv4.tcp_fin_timeout");
        assert_eq!(normalize_key("net/ipv4/conf/eth0.100/rp_filter"), "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(normalize_key("net.ipv4.conf.eth0/100.rp_filter"), "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(normalize_key("/net/core/somaxconn"), "net.core.somaxconn");
    }

    #[test]
    fn trailing_comments_do_not_reach_comparisons() {
        assert_eq!(effective_value("2 # note"), "2");
        assert_eq!(effective_value("32768 60999"), "32768 60999");
        assert_eq!(effective_value("a#b"), "a#b");
    }

    #[test]
    fn glob_matching() {
        assert!(glob_matches("net.ipv4.conf.*.rp_filter", "net.ipv4.conf.all.rp_filter"));
        assert!(glob_matches("net.ipv4.*", "net.ipv4.tcp_tw_reuse"));
        assert!(!glob_matches("net.ipv4.conf.*.rp_filter", "net.ipv4.conf.all.forwarding"));
        assert!(glob_matches("net.ipv4.tcp_?w_reuse", "net.ipv4.tcp_tw_reuse"));
        assert!(glob_matches("net.ipv4.conf.eth[0-9].rp_filter", "net.ipv4.conf.eth3.rp_filter"));
        assert!(!glob_matches("net.ipv4.conf.eth[!0-9].rp_filter", "net.ipv4.conf.eth3.rp_filter"));
        assert!(glob_matches("net.ipv4.conf.[al]*.rp_filter", "net.ipv4.conf.lo.rp_filter"));
        assert!(!glob_matches("net.ipv4.x[", "net.ipv4.x"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("net.ipv4.x[", "net.ipv4.x["));
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(40) + "b";
        let key = "a".repeat(200);
        assert!(!glob_matches(&pattern, &key));
    }

    #[test]
    fn a_pattern_of_150_000_stars_neither_overflows_nor_crawls() {
        // Recursive matching overflowed the stack here; now it is one pass per pattern token.
        let pattern = format!("net.ipv4.{}", "*".repeat(150_000));
        assert!(glob_matches(&pattern, "net.ipv4.tcp_tw_reuse"));
        assert!(!glob_matches(&pattern, "net.core.somaxconn"));
        let alternating = "*?".repeat(2_000);
        assert!(!glob_matches(&alternating, "net.ipv4.tcp_tw_reuse"), "needs 2000 characters");
    }
}
