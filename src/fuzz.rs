//! A bounded mutation fuzzer for every parser reachable from files, run by `cargo test` on the
//! stable toolchain (cargo-fuzz needs nightly): each parser gets its seed inputs, then tens of
//! thousands of inputs mutated from them (bytes flipped, inserted, deleted, duplicated, spliced,
//! and the parser's own special characters), and must neither panic nor hang. The random
//! sequence is fixed, so a failure repeats; an input that ever broke a parser is kept in
//! `REGRESSIONS` and checked first.
//!
//! `TWTUNE_FUZZ_ROUNDS` raises the rounds per parser (default 3000) for a longer local run.

use crate::inspect::counters::{parse_mib, parse_sockstat_tcp};
use crate::inspect::netlink::parse_messages;
use crate::inspect::proc_tcp::{Family, parse_tcp_line};
use crate::ports::{PortRange, PortSet};
use crate::sysctl::keys::KEYS;
use crate::sysctl_d::parse::{glob_matches, parse_conf};

/// xorshift64*: small, fast, and the same sequence on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `input`, using `alphabet` for the characters that matter to the parser.
fn mutate(random: &mut Random, input: &[u8], alphabet: &[u8], seeds: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=random.below(4) {
        let at = random.below(out.len() + 1);
        match random.below(8) {
            0 if !out.is_empty() => {
                let i = random.below(out.len());
                out[i] ^= 1 << random.below(8);
            }
            1 => out.insert(at, alphabet[random.below(alphabet.len())]),
            2 if at < out.len() => {
                let end = (at + random.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if !out.is_empty() => {
                // Repeat a run many times: long lines, deep nesting, many stars.
                let start = random.below(out.len());
                let end = (start + 1 + random.below(8)).min(out.len());
                let run = out[start..end].to_vec();
                for _ in 0..random.below(2000) {
                    out.splice(at..at, run.iter().copied());
                }
            }
            4 => {
                let other = seeds[random.below(seeds.len())];
                let from = random.below(other.len() + 1);
                out.splice(at..at, other[from..].iter().copied());
            }
            5 => out.insert(at, random.next() as u8),
            6 if at < out.len() => out.truncate(at),
            _ => out.insert(at, b'\n'),
        }
    }
    out
}

/// Runs `parser` on the regression inputs, the seeds, and `rounds` mutations of them.
fn fuzz(name: &str, seeds: &[&[u8]], alphabet: &[u8], regressions: &[&[u8]], parser: impl Fn(&[u8])) {
    let rounds = std::env::var("TWTUNE_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3000);
    let mut random = Random(0x7477_7475_6e65 ^ name.len() as u64);
    for input in regressions.iter().chain(seeds) {
        parser(input);
    }
    for round in 0..rounds {
        let seed = seeds[round % seeds.len()];
        let input = mutate(&mut random, seed, alphabet, seeds);
        let started = std::time::Instant::now();
        parser(&input);
        // Not a timing test: a guard that names the input if a parser ever goes superlinear.
        assert!(
            started.elapsed().as_secs() < 5,
            "{name}: one input took over 5 s: {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

const TCP: &[u8] = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1649 1 0 100 0 0 10 0
   1: 0100007F:9C40 0200007F:1F90 06 00000000:00000000 03:00001730 00000000     0        0 0 3 0000000000000000
";
const TCP6: &[u8] = b"   0: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:A2C4 01 00000000:00000000 00:00000000 00000000  1000        0 1 1 0\n";
const SOCKSTAT: &[u8] = b"sockets: used 5\nTCP: inuse 1 orphan 0 tw 200 alloc 3 mem 1\nUDP: inuse 0 mem 0\n";
const NETSTAT: &[u8] =
    b"TcpExt: SyncookiesSent TW TWRecycled TCPTimeWaitOverflow\nTcpExt: 0 200 12 0\nIpExt: InNoRoutes\nIpExt: 0\n";
const CONF: &[u8] = b"# comment\n; other\nnet.ipv4.tcp_tw_reuse = 1\n-net.ipv4.tcp_tw_recycle = 0\nnet/ipv4/conf/eth0.100/rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 1\n-net.ipv4.conf.lo.rp_filter\nkey=value # trailing\n";
const PROFILE: &[u8] = b"name: fuzz\ndescription: d\nextends: baseline\nthresholds: {port_warn_pct: 40}\nnotes: [a]\nsettings:\n  net.ipv4.tcp_tw_reuse: {value: 1, why: w, risk: r, severity: crit, min_kernel: \"4.18\"}\n  net.ipv4.ip_local_port_range:\n    min: [1024, null]\n    min_size: 50000\n    different_parity: true\n    avoid: \"30000-32767\"\n    recommend: \"10000 65535\"\n    why: w\n    risk: r\n  net.ipv4.ip_local_reserved_ports: {includes: \"30000-32767\", why: w, risk: r}\n  net.core.somaxconn: {one_of: [4096, 8192], why: w, risk: r}\n";
const JOURNAL: &[u8] = b"{\"id\":\"20260101T000000Z\",\"created\":\"2026-01-01T00:00:00Z\",\"twtune_version\":\"0.1.0\",\"source\":\"profile x\",\"status\":\"applied\",\"changes\":[{\"key\":\"net.ipv4.tcp_tw_reuse\",\"before\":\"2\",\"after\":\"1\"}],\"persist\":{\"path\":\"/etc/sysctl.d/90-twtune.conf\",\"previous\":null}}";

/// Inputs kept as regression cases for every text parser (the recursive glob matcher's overflow
/// was found by review and is checked in its own module; netlink keeps its own below).
const REGRESSIONS: &[&[u8]] = &[b"net.ipv4.*******************************[", b"[!]", b"\xff\xfe TCP: inuse"];

#[test]
fn proc_net_tcp_lines() {
    fuzz("tcp", &[TCP, TCP6], b"0123456789ABCDEF: \n", REGRESSIONS, |input| {
        for line in input.split(|b| *b == b'\n') {
            let _ = parse_tcp_line(line, Family::V4);
            let _ = parse_tcp_line(line, Family::V6);
        }
    });
}

#[test]
fn counter_tables() {
    fuzz("counters", &[SOCKSTAT, NETSTAT], b"TCP:TcpExt 0123456789-\n ", REGRESSIONS, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = parse_sockstat_tcp(&text);
        let _ = parse_mib(&text);
    });
}

#[test]
fn sysctl_d_files_and_globs() {
    fuzz("sysctl.d", &[CONF], b"=#;-*?[]!^/.\n \t", REGRESSIONS, |input| {
        let parsed = parse_conf(&String::from_utf8_lossy(input));
        for line in parsed.lines.iter().take(50) {
            if let crate::sysctl_d::parse::ConfLine::Assign { key, .. } = line {
                let _ = glob_matches(key, "net.ipv4.conf.eth0.rp_filter");
            }
        }
    });
}

#[test]
fn sysctl_values() {
    let seeds: &[&[u8]] = &[b"32768 60999", b"8080,30000-32767, 9000", b"4096 87380 6291456", b"-262144"];
    fuzz("values", seeds, b"0123456789 ,-\t", REGRESSIONS, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = PortRange::parse(&text);
        let _ = PortSet::parse(&text);
        for spec in KEYS {
            let _ = spec.check_value(&text);
            let _ = spec.canonical(&text);
        }
    });
}

#[test]
fn profiles() {
    fuzz("profiles", &[PROFILE], b":{}[]-\"' \n#&*!|>", REGRESSIONS, |input| {
        let _ = crate::profile::parse::parse_profile(&String::from_utf8_lossy(input), "fuzz.yaml", None);
    });
}

#[test]
fn journal_entries() {
    fuzz("journal", &[JOURNAL], b"{}[]\":,\\0123456789null", REGRESSIONS, |input| {
        let _ = serde_json::from_slice::<crate::apply::journal::Entry>(input);
    });
}

#[test]
fn netlink_replies() {
    // One record as the kernel lays it out, and a DONE.
    let mut record = vec![0u8; 16 + 72];
    record[..4].copy_from_slice(&(88u32).to_ne_bytes());
    record[4..6].copy_from_slice(&20u16.to_ne_bytes());
    record[16] = 2;
    record[17] = 6;
    let mut done = vec![0u8; 20];
    done[..4].copy_from_slice(&20u32.to_ne_bytes());
    done[4..6].copy_from_slice(&3u16.to_ne_bytes());
    let both = [record.clone(), done.clone()].concat();
    // Found by this fuzzer: an errno of i32::MIN in NLMSG_DONE overflowed its negation.
    let mut min_errno = done.clone();
    min_errno[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
    fuzz("netlink", &[&record, &done, &both], &[0, 1, 2, 3, 20, 0xff], &[&min_errno], |input| {
        let _ = parse_messages(input, &mut |_| {}, &mut Vec::new());
    });
}

#[test]
fn go_build_information() {
    use crate::inspect::gobuild::{buildinfo, elf_with_section, parse_buildinfo, read, tests::MODULES};
    let info = buildinfo("go1.19.8", MODULES);
    let (wide, narrow) = (elf_with_section(&info, true), elf_with_section(&info, false));
    // A forged header: section offsets and counts at their largest.
    let mut forged = wide.clone();
    forged[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
    forged[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes());
    let seeds: &[&[u8]] = &[&wide, &narrow, &info, &forged];
    fuzz("go buildinfo", seeds, b"\x7fELF\xff\x80\x00\x02\t\ndep=>go buildinf:", &[b"\x7fELF\x02\x01"], |input| {
        let _ = read(input);
        let _ = parse_buildinfo(input);
    });
}

#[test]
fn python_maps_and_metadata() {
    use crate::inspect::python::{
        http_dist_info, is_python, mapped_paths, metadata_version, site_dirs_of, tests::MAPS, venv_of, version,
    };
    let metadata: &[u8] = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.32.3\n\nbody\n";
    fuzz(
        "python",
        &[MAPS.as_bytes(), metadata],
        b"/ -.\n0123456789abcdef(deleted)site-packages",
        REGRESSIONS,
        |input| {
            let text = String::from_utf8_lossy(input);
            let mapped = mapped_paths(&text);
            let _ = (is_python(&text, &mapped), version(&text, &mapped), site_dirs_of(&mapped), venv_of(&text, "3.11"));
            let _ = (metadata_version(&text), text.lines().take(50).map(http_dist_info).count());
        },
    );
}

#[test]
fn nf_tables_rules() {
    use crate::inspect::nftables::tests::{compat_rule, masquerade_rule};
    use crate::inspect::nftables::{parse_rule, rule_message};
    let masquerade = masquerade_rule();
    let mut compat = 1u32.to_ne_bytes().to_vec();
    compat.extend(2u32.to_ne_bytes());
    compat.extend([0, 0, 0, 0, 0, 0, 0, 0, 0x9c, 0x40, 0x9f, 0x27, 0, 0, 0, 0]);
    let target = compat_rule(2, "MASQUERADE", 0, &compat);
    // The same rules inside a dump: a NEWRULE message each, then DONE.
    let mut dump = Vec::new();
    for payload in [&masquerade, &target] {
        dump.extend(((16 + payload.len()) as u32).to_ne_bytes());
        dump.extend((10u16 << 8 | 6).to_ne_bytes());
        dump.extend([0; 10]);
        dump.extend(payload.iter());
    }
    dump.extend([20, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Nested attribute headers alone, thousands deep: the parser walks a fixed depth.
    let deep: Vec<u8> = [0u8, 0, 0, 0].into_iter().chain((0..4000).flat_map(|_| [0xff, 0x7f, 0x04, 0x80])).collect();
    let alphabet = [0, 1, 2, 3, 4, 6, 7, 10, 0x80, 0xff, b'm', b'n'];
    fuzz("nf_tables", &[&masquerade, &target, &dump], &alphabet, &[&deep], |input| {
        let mut read = crate::model::nat::RulesRead::default();
        rule_message(input, &mut read);
        let _ = parse_rule(1, input);
        let _ = crate::inspect::conntrack::walk_messages(input, "nf_tables", &mut Vec::new(), &mut |_, payload| {
            rule_message(payload, &mut read)
        });
        assert!(read.rules.len() <= crate::model::nat::MAX_NAT_RULES);
        read.rules.iter().for_each(|rule| assert!(rule.ports.is_none_or(|p| p.low > 0 && p.low <= p.high)));
    });
}

#[test]
fn java_node_and_proxy_names_in_maps_and_command_lines() {
    use crate::inspect::python::mapped_paths;
    use crate::inspect::runtimes::{self, tests::JAVA_MAPS};
    let node_maps: &[u8] = b"7f00-7f01 r-xp 0 08:01 5 /usr/lib/x86_64-linux-gnu/libnode.so.108\n\
        7f01-7f02 r--p 0 08:01 6 /root/.nvm/versions/node/v16.20.2/bin/node\n";
    let title: &[u8] = b"nginx: master process /usr/sbin/nginx -p /srv/ -c conf/n.conf -g daemon off;\0";
    let release: &[u8] = b"JAVA_VERSION=\"17.0.15\"\nJAVA_RUNTIME_VERSION=\"17.0.15+6\"\n";
    let seeds: &[&[u8]] = &[JAVA_MAPS.as_bytes(), node_maps, title, release];
    fuzz("runtimes", seeds, b"/ -.\n0123456789vjar.so\"=libjvm", REGRESSIONS, |input| {
        let text = String::from_utf8_lossy(input);
        let mapped = mapped_paths(&text);
        let _ = (runtimes::java_home(&mapped), runtimes::node_from_libnode(&mapped), runtimes::nginx_conf(input));
        let _ = (runtimes::release_version(&text), runtimes::version_after(input), runtimes::runtime_by_name(&text));
        let _ = runtimes::haproxy_version(input);
        for path in mapped.iter().take(50) {
            let _ =
                (runtimes::http_jar(path, "mapped"), runtimes::version_in_home(path), runtimes::node_from_path(path));
        }
    });
}

#[test]
fn nginx_configurations_with_deep_includes_and_huge_files() {
    use crate::inspect::nginx::{Budget, MAX_CONF_BYTES, MAX_CONF_FILES, read_config, tests::MAIN};
    // Every include names the input itself again, so a file that includes anything includes
    // itself until a bound stops it; a glob gets the input twice.
    let deep: &[u8] = b"http { include a.conf; include conf.d/*; upstream u { } }";
    let huge = [b"upstream x { keepalive 1; } ".repeat(12_000), b"{".repeat(200_000)].concat();
    fuzz("nginx", &[MAIN.as_bytes(), deep], b"{};#\"'\\ \n$includeupstreamkeepaliveproxy_pass*", &[&huge], |input| {
        let mut load = |pattern: &str, budget: Budget| {
            let copies = if pattern.contains('*') { 2 } else { 1 };
            let bytes = input[..input.len().min(MAX_CONF_BYTES as usize).min(budget.bytes)].to_vec();
            Ok((0..copies.min(budget.files)).map(|i| (format!("{pattern}.{i}"), bytes.clone())).collect())
        };
        let config = read_config("/etc/nginx/nginx.conf", &mut load);
        assert!(config.files_read as usize <= MAX_CONF_FILES);
        assert!(config.upstreams_without_keepalive.len() <= 32 && config.direct_proxy_pass.len() <= 32);
    });
}

#[test]
fn elf_version_markers_and_jar_manifests() {
    use crate::inspect::gobuild::{after_marker, elf_with_named_section};
    use crate::inspect::jar::{
        manifest_version,
        tests::{MANIFEST_TEXT, jar},
    };
    let rodata = b"/etc/nginx/nginx.conf\0nginx/1.22.1\0https://nodejs.org/download/release/v20.20.2/\0";
    let (wide, narrow) =
        (elf_with_named_section(".rodata", rodata, true), elf_with_named_section(".rodata", rodata, false));
    let stored = jar(&[("META-INF/MANIFEST.MF", MANIFEST_TEXT, false)]);
    let deflated = jar(&[("a/B.class", b"\xca\xfe\xba\xbe", true), ("META-INF/MANIFEST.MF", MANIFEST_TEXT, true)]);
    let seeds: &[&[u8]] = &[&wide, &narrow, &stored, &deflated];
    let alphabet = b"\x7fELF\x00\x01\x02\xffPK\x01\x02\x03\x04\x05\x06nginx/0123456789.";
    fuzz("elf markers and jars", seeds, alphabet, &[b"\x7fELF\x02\x01", b"PK\x05\x06"], |input| {
        let accept = |bytes: &[u8]| crate::inspect::runtimes::version_after(bytes);
        let _ = after_marker(input, b".rodata", b"nginx/", 1 << 24, &accept);
        let _ = after_marker(input, b".rodata", b"nodejs.org/download/release/v", 1 << 24, &accept);
        let _ = manifest_version(input, input.len() as u64);
        let _ = manifest_version(input, u64::MAX);
    });
}
