//! Pure parsers for the counter files: `/proc/net/sockstat` and the header/value tables of
//! `/proc/net/netstat` and `/proc/net/snmp`.
//!
//! Fields are found by name, never by position, because kernels add fields over time. A malformed
//! line is reported as a [`LineProblem`] and skipped; it never stops the rest of the file.

use std::collections::BTreeMap;

use crate::problem::{LineProblem, Parsed};

/// Parses the `TCP:` line of `/proc/net/sockstat` (`TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 200`)
/// into its key/value pairs.
pub(crate) fn parse_sockstat_tcp(text: &str) -> Parsed<BTreeMap<String, i64>> {
    parse_sockstat_line(text, "TCP:")
}

/// The `TCP6:` line of `/proc/net/sockstat6` (`TCP6: inuse 3`), as [`parse_sockstat_tcp`] reads
/// the `TCP:` line.
pub(crate) fn parse_sockstat6_tcp(text: &str) -> Parsed<BTreeMap<String, i64>> {
    parse_sockstat_line(text, "TCP6:")
}

fn parse_sockstat_line(text: &str, prefix: &str) -> Parsed<BTreeMap<String, i64>> {
    let mut parsed = Parsed::<BTreeMap<String, i64>>::default();
    for (index, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if !fields.len().is_multiple_of(2) {
            parsed
                .problems
                .push(LineProblem { line: index + 1, problem: format!("{prefix} line has a name without a value") });
        }
        for pair in fields.chunks_exact(2) {
            match pair[1].parse::<i64>() {
                Ok(n) => {
                    parsed.value.insert(pair[0].to_string(), n);
                }
                Err(_) => parsed.problems.push(LineProblem {
                    line: index + 1,
                    problem: format!("value {:?} of {} is not an integer", pair[1], pair[0]),
                }),
            }
        }
    }
    parsed
}

/// Parses `/proc/net/netstat` or `/proc/net/snmp`: pairs of lines `Section: Name1 Name2 ...` and
/// `Section: 1 2 ...`. Returns section -> name -> value. A line whose section does not follow the
/// header before it starts a new pair, so one missing line costs one section, not the next as well.
pub(crate) fn parse_mib(text: &str) -> Parsed<BTreeMap<String, BTreeMap<String, i64>>> {
    let mut parsed = Parsed::<BTreeMap<String, BTreeMap<String, i64>>>::default();
    // The header waiting for its values: (line number, section, names).
    let mut pending: Option<(usize, &str, &str)> = None;
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let number = index + 1;
        let Some((section, rest)) = line.split_once(':') else {
            parsed.problems.push(LineProblem { line: number, problem: "expected \"Section: ...\"".into() });
            continue;
        };
        match pending.take() {
            Some((_, header_section, names)) if header_section == section => {
                let names: Vec<&str> = names.split_whitespace().collect();
                let values: Vec<&str> = rest.split_whitespace().collect();
                let problem = |problem: String| LineProblem { line: number, problem };
                if names.len() != values.len() {
                    let (n, v) = (names.len(), values.len());
                    parsed.problems.push(problem(format!("{section}: {n} names but {v} values")));
                    continue;
                }
                let table = parsed.value.entry(section.to_string()).or_default();
                for (name, value) in names.iter().zip(values) {
                    match value.parse::<i64>() {
                        Ok(n) => {
                            table.insert((*name).to_string(), n);
                        }
                        Err(_) => {
                            parsed.problems.push(problem(format!("{section} {name}: {value:?} is not an integer")))
                        }
                    }
                }
            }
            Some((header_line, header_section, _)) => {
                parsed.problems.push(LineProblem {
                    line: header_line,
                    problem: format!("{header_section}: header without a value line"),
                });
                pending = Some((number, section, rest));
            }
            None => pending = Some((number, section, rest)),
        }
    }
    if let Some((header_line, header_section, _)) = pending {
        parsed
            .problems
            .push(LineProblem { line: header_line, problem: format!("{header_section}: header without a value line") });
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKSTAT: &str = "sockets: used 8\nTCP: inuse 1 orphan 0 tw 78844 alloc 2 mem 154\nUDP: inuse 0 mem 0\n";

    #[test]
    fn sockstat_tcp_fields_by_name() {
        let parsed = parse_sockstat_tcp(SOCKSTAT);
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.value.get("tw"), Some(&78844));
        assert_eq!(parsed.value.get("inuse"), Some(&1));
        assert_eq!(parsed.value.get("alloc"), Some(&2));
        assert_eq!(parsed.value.get("mem"), Some(&154));
    }

    #[test]
    fn sockstat_accepts_new_fields_and_reports_bad_values() {
        let parsed = parse_sockstat_tcp("TCP: inuse 3 pressure 0 tw x orphan\n");
        assert_eq!(parsed.value.get("inuse"), Some(&3));
        assert_eq!(parsed.value.get("pressure"), Some(&0));
        assert_eq!(parsed.value.get("tw"), None);
        assert_eq!(parsed.problems.len(), 2, "{:?}", parsed.problems);
        assert!(parsed.problems.iter().all(|p| p.line == 1));
    }

    #[test]
    fn sockstat_without_tcp_line_is_empty() {
        let six = parse_sockstat6_tcp("TCP6: inuse 3\nUDP6: inuse 1\n");
        assert_eq!(six.value.get("inuse"), Some(&3));
        assert_eq!(parse_sockstat6_tcp("TCP: inuse 9\n").value.get("inuse"), None, "not the IPv4 line");
        let parsed = parse_sockstat_tcp("sockets: used 1\n");
        assert!(parsed.value.is_empty() && parsed.problems.is_empty());
    }

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens CurrEstab\nTcp: 1 200 120000 -1 12 2 0\n";

    #[test]
    fn mib_sections_by_header_name() {
        let parsed = parse_mib(SNMP);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let tcp = &parsed.value["Tcp"];
        assert_eq!(tcp["ActiveOpens"], 12);
        assert_eq!(tcp["MaxConn"], -1);
        assert_eq!(parsed.value["Ip"]["DefaultTTL"], 64);
    }

    #[test]
    fn mib_skips_malformed_pairs_and_keeps_the_rest() {
        let text = "TcpExt: TW TWRecycled\nTcpExt: 5\nnonsense\nIpExt: InNoRoutes\nIpExt: 7\nTcp: A B\nUdp: X\nUdp: 2\nMPTcpExt: X\nMPTcpExt: y\n";
        let parsed = parse_mib(text);
        assert_eq!(parsed.value.get("TcpExt"), None, "count mismatch drops the section");
        assert_eq!(parsed.value["IpExt"]["InNoRoutes"], 7);
        assert_eq!(parsed.value["Udp"]["X"], 2, "a header without values does not swallow the next pair");
        let lines: Vec<usize> = parsed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 6, 10], "{:?}", parsed.problems);
    }

    #[test]
    fn mib_header_at_end_of_file() {
        let parsed = parse_mib("TcpExt: TW\n");
        assert!(parsed.value.is_empty());
        assert_eq!(parsed.problems.len(), 1);
    }
}
