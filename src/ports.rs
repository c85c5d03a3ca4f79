//! Port ranges and port sets as the kernel prints them (`ip_local_port_range`,
//! `ip_local_reserved_ports`): the values; the arithmetic of the budgets is the model's (`crate::model`).
//!
//! Pure: parsing and counting only.

use std::fmt;

/// `net.ipv4.ip_local_port_range`: the inclusive range connect() and bind(0) draw ports from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    /// The kernel default since Linux 4.2.
    pub(crate) const DEFAULT: PortRange = PortRange { low: 32768, high: 60999 };

    /// Parses `"32768 60999"` (any whitespace). Rejects what the kernel would reject: bounds outside
    /// 1..65535 or low above high.
    pub(crate) fn parse(text: &str) -> Result<PortRange, String> {
        let mut fields = text.split_whitespace();
        let (Some(low), Some(high), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("expected two ports \"LOW HIGH\", found {text:?}"));
        };
        let bound = |s: &str| -> Result<u16, String> {
            match s.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(format!("{s:?} is not a port between 1 and 65535")),
            }
        };
        let range = PortRange { low: bound(low)?, high: bound(high)? };
        if range.low > range.high {
            return Err(format!("low bound {} is above high bound {}", range.low, range.high));
        }
        Ok(range)
    }

    /// How many ports the range holds.
    pub(crate) fn size(self) -> u32 {
        u32::from(self.high) - u32::from(self.low) + 1
    }

    /// Whether the range holds `port`.
    pub(crate) fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    /// Whether both bounds are even or both odd (different parity lets connect() and bind(0) draw
    /// from different halves: docs/kernel-model.md, "Port settings").
    pub(crate) fn same_parity(self) -> bool {
        self.low % 2 == self.high % 2
    }

    /// The ports this range shares with `other`, if any.
    pub(crate) fn intersection(self, other: PortRange) -> Option<PortRange> {
        let low = self.low.max(other.low);
        let high = self.high.min(other.high);
        (low <= high).then_some(PortRange { low, high })
    }

    /// Whether the range starts below `ip_unprivileged_port_start`, which a running kernel refuses.
    pub(crate) fn starts_below(self, unprivileged_start: i64) -> bool {
        i64::from(self.low) < unprivileged_start
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.low, self.high)
    }
}

/// A set of ports such as `ip_local_reserved_ports` (`"8080,30000-32767"`), kept as a bitmap.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PortSet {
    bits: Box<[u64; 1024]>,
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet { bits: Box::new([0; 1024]) }
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortSet({self})")
    }
}

impl PortSet {
    /// Parses the kernel's list form: comma-separated ports and `a-b` ranges; empty means no ports.
    pub(crate) fn parse(text: &str) -> Result<PortSet, String> {
        let mut set = PortSet::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let port = |s: &str| s.trim().parse::<u16>().map_err(|_| format!("{s:?} is not a port number"));
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if a > b {
                        return Err(format!("range {item:?} runs backwards"));
                    }
                    (a..=b).for_each(|p| set.insert(p));
                }
                None => set.insert(port(item)?),
            }
        }
        Ok(set)
    }

    /// Adds one port.
    pub(crate) fn insert(&mut self, port: u16) {
        self.bits[usize::from(port / 64)] |= 1 << (port % 64);
    }

    /// Whether the set holds `port`.
    pub(crate) fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    /// The ports in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|p| self.contains(*p))
    }

    /// How many ports of `range` the set holds.
    pub(crate) fn count_in(&self, range: PortRange) -> u32 {
        (range.low..=range.high).filter(|p| self.contains(*p)).count() as u32
    }

    /// How many ports of `range` the set does not hold.
    pub(crate) fn missing_in(&self, range: PortRange) -> u32 {
        range.size() - self.count_in(range)
    }

    /// Adds every port of `other`.
    pub(crate) fn union_with(&mut self, other: &PortSet) {
        self.bits.iter_mut().zip(other.bits.iter()).for_each(|(a, b)| *a |= b);
    }
}

impl fmt::Display for PortSet {
    /// The kernel's own form: ascending, runs collapsed to `a-b`, comma-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut ports = self.iter().peekable();
        while let Some(start) = ports.next() {
            let mut end = start;
            while ports.peek() == Some(&(end.wrapping_add(1))) && end != u16::MAX {
                end = ports.next().unwrap_or(end);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end { write!(f, "{start}")? } else { write!(f, "{start}-{end}")? }
        }
        Ok(())
    }
}

/// The Kubernetes NodePort range, which kube-proxy binds on every node.
pub(crate) const KUBERNETES_NODEPORT: PortRange = PortRange { low: 30000, high: 32767 };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_the_kernel_accepts() {
        assert_eq!(PortRange::parse("32768\t60999"), Ok(PortRange::DEFAULT));
        assert_eq!(PortRange::DEFAULT.size(), 28232);
        assert_eq!(PortRange::parse("1 65535").map(PortRange::size), Ok(65535));
        assert_eq!(PortRange::parse("5000 5000").map(PortRange::size), Ok(1));
    }

    #[test]
    fn rejects_ranges_the_kernel_rejects() {
        for bad in ["", "1", "1 2 3", "0 100", "100 65536", "60000 50000", "a b", "-1 5"] {
            assert!(PortRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parity_and_overlap() {
        assert!(!PortRange::DEFAULT.same_parity());
        assert!(PortRange { low: 1024, high: 65534 }.same_parity());
        let overlap = |range: PortRange| range.intersection(KUBERNETES_NODEPORT).map_or(0, PortRange::size);
        assert_eq!(overlap(PortRange::DEFAULT), 0);
        assert_eq!(overlap(PortRange { low: 1024, high: 65535 }), 2768);
        assert_eq!(overlap(PortRange { low: 32000, high: 40000 }), 768);
        assert_eq!(PortRange::DEFAULT.intersection(KUBERNETES_NODEPORT), None);
        let reserved = PortSet::parse("30000-32767").expect("valid");
        assert_eq!(reserved.missing_in(PortRange { low: 32000, high: 32767 }), 0);
        assert_eq!(PortSet::default().missing_in(PortRange { low: 32000, high: 32767 }), 768);
    }

    #[test]
    fn port_set_round_trips_the_kernel_form() {
        let set = PortSet::parse("8080,30000-30002, 9000").expect("valid");
        assert_eq!(set.to_string(), "8080,9000,30000-30002");
        assert!(set.contains(30001) && !set.contains(30003));
        assert_eq!(set.count_in(PortRange { low: 9000, high: 30001 }), 3);
        assert_eq!(PortSet::parse("").expect("empty is valid"), PortSet::default());
        let edge = PortSet::parse("65534-65535,0").expect("valid");
        assert_eq!(edge.to_string(), "0,65534-65535");
    }

    #[test]
    fn port_set_rejects_garbage() {
        for bad in ["x", "1-", "5-2", "70000", "1,,a"] {
            assert!(PortSet::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn union_adds_ports() {
        let mut a = PortSet::parse("1,2").expect("valid");
        a.union_with(&PortSet::parse("3-4").expect("valid"));
        assert_eq!(a.to_string(), "1-4");
    }
}
