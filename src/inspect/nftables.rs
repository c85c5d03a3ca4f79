//! The source-NAT rules of one network namespace, read from nf_tables over twtune's own
//! `NETLINK_NETFILTER` socket (connected to the kernel): one `NFT_MSG_GETRULE` dump of every
//! table of every family, in which native `masquerade` and `snat` statements and iptables-nft's
//! compat MASQUERADE and SNAT targets are found. No program is run.
//!
//! A rule's expressions run in order over a small register file: `immediate` loads the NAT's
//! addresses and ports into registers which the `nat` or `masq` expression then names. So the
//! registers are followed through the rule: a register last written by `immediate` has a known
//! value, one written by anything else (a map lookup: `snat to ip saddr map {..}`) does not, and
//! the rule is then reported without the addresses or ports it takes from there.
//!
//! Values are taken from the uapi headers (`linux/netfilter/nf_tables.h`, `nf_tables_compat.h`,
//! `nf_nat.h`) and the kernel's `nft_masq.c`, `nft_nat.c`, `nft_compat.c`, `xt_MASQUERADE.c`,
//! `xt_nat.c`. The parser walks a fixed depth of attributes (rule, expression list, expression,
//! its data, a data value), never recursing, and keeps at most [`MAX_NAT_RULES`] rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::inspect::conntrack::{Failed, NetfilterSocket, attributes, find};
use crate::model::nat::{MAX_NAT_RULES, NatRange, NatRule, RulesRead};

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE`, and `..._NEWRULE` for the rules of a dump.
const GET_RULE: u16 = 10 << 8 | 7;
const NEW_RULE: u16 = 10 << 8 | 6;

// enum nft_rule_attributes, nft_list_attributes, nft_expr_attributes.
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
// enum nft_immediate_attributes, nft_data_attributes.
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
// enum nft_masq_attributes.
const NFTA_MASQ_FLAGS: u16 = 1;
const NFTA_MASQ_REG_PROTO_MIN: u16 = 2;
const NFTA_MASQ_REG_PROTO_MAX: u16 = 3;
// enum nft_nat_attributes; NFT_NAT_SNAT is 0.
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_ADDR_MAX: u16 = 4;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_REG_PROTO_MAX: u16 = 6;
const NFTA_NAT_FLAGS: u16 = 7;
const NFT_NAT_SNAT: u32 = 0;
// enum nft_target_attributes (nf_tables_compat.h).
const NFTA_TARGET_NAME: u16 = 1;
const NFTA_TARGET_REV: u16 = 2;
const NFTA_TARGET_INFO: u16 = 3;
// NF_NAT_RANGE_* (nf_nat.h).
const MAP_IPS: u32 = 1;
const PROTO_SPECIFIED: u32 = 2;
const FLAG_NAMES: [(u32, &str); 3] = [(4, "random"), (16, "fully-random"), (8, "persistent")];
// NFPROTO_*.
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

/// Registers in 32-bit words: the verdict's four, then `NFT_REG_1`..`NFT_REG_4` of four words each
/// (the same storage as `NFT_REG32_00`..`NFT_REG32_15`).
const WORDS: usize = 20;

/// The rules of the calling thread's namespace. `Ok(Err(..))`: why they could not be read.
pub(crate) fn read_rules() -> crate::error::Result<std::result::Result<RulesRead, Failed>> {
    let mut socket = match NetfilterSocket::open("nf_tables")? {
        Ok(socket) => socket,
        Err(failed) => return Ok(Err(failed)),
    };
    let mut read = RulesRead::default();
    let mut warnings = Vec::new();
    let done = socket.dump(GET_RULE, &mut warnings, &mut |kind, payload| {
        if kind == NEW_RULE {
            rule_message(payload, &mut read);
        }
    });
    Ok(done.map(|()| read))
}

/// One `NFT_MSG_NEWRULE` payload (nfgenmsg first): its NAT statement, if any, into `read`.
pub(crate) fn rule_message(payload: &[u8], read: &mut RulesRead) {
    let Some((&family, attrs)) = payload.first().zip(payload.get(4..)) else { return };
    let Some(rule) = parse_rule(family, attrs) else { return };
    if read.rules.len() < MAX_NAT_RULES {
        read.rules.push(rule);
    } else {
        read.dropped += 1;
    }
}

/// The source-NAT statement of one rule, with the rule's table, chain and handle.
pub(crate) fn parse_rule(family: u8, attrs: &[u8]) -> Option<NatRule> {
    let family_name = match family {
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        NFPROTO_INET => "inet",
        _ => return None, // bridge, arp, netdev: no source NAT of IP flows
    };
    let mut registers = Registers::default();
    let mut found = None;
    for (kind, element) in attributes(find(attrs, NFTA_RULE_EXPRESSIONS)?) {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let name = find(element, NFTA_EXPR_NAME).map(text).unwrap_or_default();
        let data = find(element, NFTA_EXPR_DATA).unwrap_or_default();
        match name.as_str() {
            "immediate" => registers.immediate(data),
            "masq" => found = Some(masquerade(data, &registers)),
            "nat" => found = snat(data, &registers),
            "target" => found = compat_target(family, data),
            // These read registers and write none.
            "cmp" | "counter" | "range" | "log" | "limit" | "quota" | "match" | "bitwise" | "notrack" => {}
            _ => registers = Registers::default(),
        }
        if found.is_some() {
            break;
        }
    }
    let mut rule = found?;
    rule.family = family_name;
    rule.table = find(attrs, NFTA_RULE_TABLE).map(text).unwrap_or_default();
    rule.chain = find(attrs, NFTA_RULE_CHAIN).map(text).unwrap_or_default();
    rule.handle = find(attrs, NFTA_RULE_HANDLE).and_then(|v| Some(u64::from_be_bytes(v.try_into().ok()?))).unwrap_or(0);
    Some(rule)
}

/// A kernel name: at most 256 bytes (`NFT_NAME_MAXLEN`), up to its NUL, control characters dropped.
fn text(value: &[u8]) -> String {
    let value = &value[..value.len().min(256)];
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).chars().filter(|c| !c.is_control()).collect()
}

/// A big-endian `NLA_U32`, as nf_tables sends them.
fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

/// The register file, with which words hold a value an `immediate` loaded.
struct Registers {
    data: [u8; WORDS * 4],
    known: [bool; WORDS],
}

impl Default for Registers {
    fn default() -> Self {
        Registers { data: [0; WORDS * 4], known: [false; WORDS] }
    }
}

impl Registers {
    /// The word a register number names (`nft_parse_register`), if any.
    fn word(register: u32) -> Option<usize> {
        let word = match register {
            0..=4 => register * 4,
            8..=23 => register - 8 + 4,
            _ => return None,
        };
        Some(word as usize)
    }

    fn immediate(&mut self, data: &[u8]) {
        let register = find(data, NFTA_IMMEDIATE_DREG).and_then(be32).and_then(Registers::word);
        let value = find(data, NFTA_IMMEDIATE_DATA).and_then(|d| find(d, NFTA_DATA_VALUE));
        let (Some(word), Some(value)) = (register, value) else { return };
        let start = word * 4;
        let Some(slot) = self.data.get_mut(start..start + value.len()) else { return };
        slot.copy_from_slice(value);
        let words = value.len().div_ceil(4);
        self.known[word..(word + words).min(WORDS)].iter_mut().for_each(|k| *k = true);
    }

    /// `len` bytes of the register an attribute names, when an `immediate` loaded them.
    fn read(&self, attribute: Option<&[u8]>, len: usize) -> Option<&[u8]> {
        let word = Registers::word(be32(attribute?)?)?;
        let words = self.known.get(word..word + len.div_ceil(4))?;
        words.iter().all(|k| *k).then(|| &self.data[word * 4..word * 4 + len])
    }

    /// A port range from two registers holding big-endian ports (`nft_reg_load_be16`).
    fn ports(&self, min: Option<&[u8]>, max: Option<&[u8]>) -> Option<NatRange> {
        let port = |r| self.read(r, 2).map(|v| u16::from_be_bytes([v[0], v[1]]));
        let low = port(min)?;
        ports(low, port(max).unwrap_or(low))
    }
}

/// A valid range: the kernel refuses a reversed one; port 0 is not one it hands out.
fn ports(low: u16, high: u16) -> Option<NatRange> {
    (low > 0 && low <= high).then_some(NatRange { low, high })
}

fn flag_names(flags: u32) -> Vec<&'static str> {
    FLAG_NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect()
}

fn rule(origin: &'static str, action: &'static str) -> NatRule {
    NatRule {
        origin,
        family: "",
        table: String::new(),
        chain: String::new(),
        handle: 0,
        action,
        addresses: None,
        ports: None,
        flags: Vec::new(),
        ip_family: None,
    }
}

/// `masquerade [to :PORTS] [FLAGS]` (nft_masq.c).
fn masquerade(data: &[u8], registers: &Registers) -> NatRule {
    let mut masq = rule("nftables", "masquerade");
    masq.flags = flag_names(find(data, NFTA_MASQ_FLAGS).and_then(be32).unwrap_or(0));
    masq.ports = registers.ports(find(data, NFTA_MASQ_REG_PROTO_MIN), find(data, NFTA_MASQ_REG_PROTO_MAX));
    masq
}

/// `snat [ip|ip6] to ADDR[-ADDR][:PORTS] [FLAGS]` (nft_nat.c); `None` for a `dnat`.
fn snat(data: &[u8], registers: &Registers) -> Option<NatRule> {
    if find(data, NFTA_NAT_TYPE).and_then(be32)? != NFT_NAT_SNAT {
        return None;
    }
    let mut snat = rule("nftables", "snat");
    let v6 = match find(data, NFTA_NAT_FAMILY).and_then(be32)? {
        2 => false,
        10 => true,
        _ => return None,
    };
    snat.ip_family = Some(if v6 { "ip6" } else { "ip" });
    snat.flags = flag_names(find(data, NFTA_NAT_FLAGS).and_then(be32).unwrap_or(0));
    let address = |attribute| -> Option<IpAddr> {
        let bytes = registers.read(find(data, attribute), if v6 { 16 } else { 4 })?;
        Some(if v6 { IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)) } else { v4(bytes)? })
    };
    let low = address(NFTA_NAT_REG_ADDR_MIN);
    snat.addresses = low.zip(address(NFTA_NAT_REG_ADDR_MAX).or(low)).map(|(l, h)| [l, h]).filter(|[l, h]| l <= h);
    snat.ports = registers.ports(find(data, NFTA_NAT_REG_PROTO_MIN), find(data, NFTA_NAT_REG_PROTO_MAX));
    Some(snat)
}

fn v4(bytes: &[u8]) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes.get(..4)?).ok()?)))
}

/// iptables-nft's `-j MASQUERADE` and `-j SNAT`, kept as x_tables targets whose info is the
/// target's own struct: `nf_nat_ipv4_multi_range_compat` for IPv4 MASQUERADE and SNAT revision 0,
/// else `nf_nat_range` (SNAT revision 1, IPv6 MASQUERADE) or `nf_nat_range2` (SNAT revision 2,
/// `nf_nat_range` with a field after).
fn compat_target(family: u8, data: &[u8]) -> Option<NatRule> {
    let name = text(find(data, NFTA_TARGET_NAME)?);
    let action = match name.as_str() {
        "MASQUERADE" => "masquerade",
        "SNAT" => "snat",
        _ => return None,
    };
    let revision = find(data, NFTA_TARGET_REV).and_then(be32).unwrap_or(0);
    let info = find(data, NFTA_TARGET_INFO)?;
    let word = |at: usize| Some(u32::from_ne_bytes(info.get(at..at + 4)?.try_into().ok()?));
    let port = |at: usize| Some(u16::from_be_bytes(info.get(at..at + 2)?.try_into().ok()?));
    let mut target = rule("iptables-nft", action);
    let compat = family == NFPROTO_IPV4 && (action == "masquerade" || revision == 0);
    // compat: rangesize, then flags, min_ip, max_ip, min, max. nf_nat_range: flags, min_addr and
    // max_addr of 16 bytes, min_proto, max_proto.
    let (flags_at, addresses_at, ports_at) = if compat { (4, [8, 12], 16) } else { (0, [4, 20], 36) };
    let flags = word(flags_at)?;
    target.flags = flag_names(flags);
    if flags & PROTO_SPECIFIED != 0 {
        target.ports = ports(port(ports_at)?, port(ports_at + 2)?);
    }
    if action == "snat" && flags & MAP_IPS != 0 {
        let address = |at: usize| -> Option<IpAddr> {
            if family != NFPROTO_IPV6 {
                return v4(info.get(at..)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(info.get(at..at + 16)?).ok()?)))
        };
        target.addresses =
            address(addresses_at[0]).zip(address(addresses_at[1])).map(|(l, h)| [l, h]).filter(|[l, h]| l <= h);
    }
    Some(target)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(a.len().div_ceil(4) * 4, 0);
        a
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attribute(kind | 0x8000, &parts.concat())
    }

    fn expression(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        nested(NFTA_LIST_ELEM, &[attribute(NFTA_EXPR_NAME, &name), nested(NFTA_EXPR_DATA, data)])
    }

    fn u32_attr(kind: u16, value: u32) -> Vec<u8> {
        attribute(kind, &value.to_be_bytes())
    }

    fn immediate(register: u32, value: &[u8]) -> Vec<u8> {
        expression(
            "immediate",
            &[
                u32_attr(NFTA_IMMEDIATE_DREG, register),
                nested(NFTA_IMMEDIATE_DATA, &[attribute(NFTA_DATA_VALUE, value)]),
            ],
        )
    }

    /// A rule of `family` in table `t`, chain `p`, handle 7, made of `expressions`.
    pub(crate) fn rule_payload(family: u8, expressions: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![family, 0, 0, 0];
        payload.extend(attribute(NFTA_RULE_TABLE, b"t\0"));
        payload.extend(attribute(NFTA_RULE_CHAIN, b"p\0"));
        payload.extend(attribute(NFTA_RULE_HANDLE, &7u64.to_be_bytes()));
        payload.extend(nested(NFTA_RULE_EXPRESSIONS, expressions));
        payload
    }

    /// `masquerade to :20000-20099 random,persistent` as nft 1.0.6 sends it.
    pub(crate) fn masquerade_rule() -> Vec<u8> {
        rule_payload(
            NFPROTO_INET,
            &[
                expression("meta", &[u32_attr(1, 1), u32_attr(2, 16)]),
                expression("cmp", &[u32_attr(1, 1)]),
                immediate(1, &20000u16.to_be_bytes()),
                immediate(2, &20099u16.to_be_bytes()),
                expression(
                    "masq",
                    &[
                        u32_attr(NFTA_MASQ_FLAGS, 0xe),
                        u32_attr(NFTA_MASQ_REG_PROTO_MIN, 1),
                        u32_attr(NFTA_MASQ_REG_PROTO_MAX, 2),
                    ],
                ),
            ],
        )
    }

    fn parsed(payload: &[u8]) -> Option<NatRule> {
        let mut read = RulesRead::default();
        rule_message(payload, &mut read);
        read.rules.pop()
    }

    #[test]
    fn native_masquerade_and_snat_are_read_with_their_registers() {
        let masq = parsed(&masquerade_rule()).expect("masq");
        assert_eq!(masq.describe(), "nftables inet t p handle 7: masquerade to :20000-20099 random,persistent");
        // snat ip to 10.2.0.1-10.2.0.2:21000-21099 fully-random, the 32-bit register names too.
        let snat = |expressions: &[Vec<u8>]| parsed(&rule_payload(NFPROTO_INET, expressions));
        let nat = |family: u32, regs: [u32; 4]| {
            expression(
                "nat",
                &[
                    u32_attr(NFTA_NAT_TYPE, NFT_NAT_SNAT),
                    u32_attr(NFTA_NAT_FAMILY, family),
                    u32_attr(NFTA_NAT_REG_ADDR_MIN, regs[0]),
                    u32_attr(NFTA_NAT_REG_ADDR_MAX, regs[1]),
                    u32_attr(NFTA_NAT_REG_PROTO_MIN, regs[2]),
                    u32_attr(NFTA_NAT_REG_PROTO_MAX, regs[3]),
                    u32_attr(NFTA_NAT_FLAGS, 0x13),
                ],
            )
        };
        let loads = [
            immediate(1, &[10, 2, 0, 1]),
            immediate(9, &[10, 2, 0, 2]),
            immediate(3, &21000u16.to_be_bytes()),
            immediate(4, &21099u16.to_be_bytes()),
        ];
        let rule = snat(&[loads.to_vec(), vec![nat(2, [1, 9, 3, 4])]].concat()).expect("snat");
        assert_eq!(rule.describe(), "nftables inet t p handle 7: snat to 10.2.0.1-10.2.0.2:21000-21099 fully-random");
        assert_eq!(rule.ip_family, Some("ip"));
        // snat ip6 to [fd00::1]:22000-22009
        let v6: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().expect("ip").octets();
        let rule = snat(&[
            immediate(1, &v6),
            immediate(2, &22000u16.to_be_bytes()),
            immediate(3, &22009u16.to_be_bytes()),
            nat(10, [1, 1, 2, 3]),
        ])
        .expect("snat ip6");
        assert_eq!(
            (rule.addresses.map(|a| a[0].to_string()), rule.ports),
            (Some("fd00::1".into()), ports(22000, 22009))
        );
        // snat to ip saddr map {..}: the address comes from a lookup, not from the rule.
        let rule = snat(&[immediate(1, &[10, 2, 0, 1]), expression("lookup", &[]), nat(2, [1, 1, 0, 0])]).expect("map");
        assert_eq!((rule.addresses, rule.ports), (None, None));
        assert!(rule.describe().contains("an address from a map"));
        let dnat = expression("nat", &[u32_attr(NFTA_NAT_TYPE, 1), u32_attr(NFTA_NAT_FAMILY, 2)]);
        assert_eq!(snat(&[dnat]), None, "dnat is not source NAT");
        assert_eq!(parsed(&rule_payload(7, &[expression("masq", &[])])), None, "a bridge table");
    }

    /// iptables-nft's MASQUERADE target (IPv4, `nf_nat_ipv4_multi_range_compat`).
    pub(crate) fn compat_rule(family: u8, name: &str, revision: u32, info: &[u8]) -> Vec<u8> {
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        rule_payload(
            family,
            &[expression(
                "target",
                &[
                    attribute(NFTA_TARGET_NAME, &name),
                    u32_attr(NFTA_TARGET_REV, revision),
                    attribute(NFTA_TARGET_INFO, info),
                ],
            )],
        )
    }

    #[test]
    fn iptables_nft_targets_are_read_from_their_structures() {
        let mut compat = 1u32.to_ne_bytes().to_vec();
        compat.extend((PROTO_SPECIFIED | 16).to_ne_bytes());
        compat.extend([0; 8]);
        compat.extend(40000u16.to_be_bytes());
        compat.extend(40999u16.to_be_bytes());
        compat.extend([0; 4]);
        let rule = parsed(&compat_rule(NFPROTO_IPV4, "MASQUERADE", 0, &compat)).expect("MASQUERADE");
        assert_eq!(rule.describe(), "iptables-nft ip t p handle 7: MASQUERADE to :40000-40999 fully-random");
        // SNAT revision 1 in ip6: nf_nat_range with addresses.
        let mut range = (MAP_IPS | PROTO_SPECIFIED).to_ne_bytes().to_vec();
        range.extend("fd00::1".parse::<Ipv6Addr>().expect("ip").octets());
        range.extend("fd00::2".parse::<Ipv6Addr>().expect("ip").octets());
        range.extend(30000u16.to_be_bytes());
        range.extend(30009u16.to_be_bytes());
        let rule = parsed(&compat_rule(NFPROTO_IPV6, "SNAT", 1, &range)).expect("SNAT");
        assert_eq!(rule.describe(), "iptables-nft ip6 t p handle 7: SNAT to [fd00::1]-[fd00::2]:30000-30009");
        // Short or unknown: no rule, no panic.
        assert_eq!(parsed(&compat_rule(NFPROTO_IPV4, "MASQUERADE", 0, &compat[..10])), None);
        assert_eq!(parsed(&compat_rule(NFPROTO_IPV4, "DNAT", 0, &compat)), None);
        // More rules than kept are counted, not kept.
        let mut read = RulesRead::default();
        (0..MAX_NAT_RULES + 2).for_each(|_| rule_message(&masquerade_rule(), &mut read));
        assert_eq!((read.rules.len(), read.dropped), (MAX_NAT_RULES, 2));
    }
}
