//! The kernel's arithmetic of ephemeral ports, as docs/port-model.md describes it section by
//! section, one file each:
//!
//! | section of docs/port-model.md | file |
//! |---|---|
//! | Inputs (the records readers produce) | [`records`] |
//! | TIME_WAIT by direction, and the socket table counted as it streams | [`table`] |
//! | Reuse | [`reuse`] |
//! | The connect() budget, per destination | [`connect`] |
//! | The bind() budget, per local address (and which clients bind first) | [`bind`] |
//! | The NAT pool (and what it admits) | [`nat`], [`eviction`] |
//! | Churn, lifetimes and forecasts | [`churn`], [`lifetimes`], [`closes`] and [`histogram`] (traced), [`forecast`], [`compare`] (two reads) |
//!
//! The model does no I/O: it takes records and settings and returns numbers, each with the reason
//! the report gives for it. Readers (`inspect`) produce the records and nothing else; rules judge
//! what the model computes. It may import only `records`' neighbours below it: `ports` (ranges
//! and sets) and `sysctl` (the settings), and never a reader.

pub(crate) mod bind;
pub(crate) mod churn;
pub(crate) mod closes;
pub(crate) mod compare;
pub(crate) mod connect;
pub(crate) mod eviction;
pub(crate) mod failures;
pub(crate) mod forecast;
pub(crate) mod histogram;
pub(crate) mod lifetimes;
pub(crate) mod nat;
pub(crate) mod records;
pub(crate) mod reuse;
pub(crate) mod table;

use std::collections::HashMap;

/// Maps keyed by what the socket table holds, hashed with foldhash (randomly seeded) rather than
/// SipHash: every socket of the table is looked up in two of them, and hashing was a tenth of a
/// read.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// `part` as a percentage of `whole`, rounded to one decimal; an empty budget is all used.
pub(crate) fn percent(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        return 100.0;
    }
    (f64::from(part) * 1000.0 / f64::from(whole)).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::percent;

    #[test]
    fn percent_rounds_to_one_decimal_and_survives_an_empty_budget() {
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(percent(80, 100), 80.0);
        assert_eq!(percent(1, 0), 100.0);
    }
}
