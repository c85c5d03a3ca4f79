//! Forecasts (docs/port-model.md, "Churn, lifetimes and forecasts"): when a bucket runs out, or
//! where it levels off, from its live sockets, its TIME_WAIT by age and the rates measured. Pure
//! numbers; [`super::compare`] applies it to the buckets of two reads.
//!
//! A TIME_WAIT socket holds its port for 60 s and then frees it, so a client that closes `c`
//! connections a second holds about `c × 60` ports in TIME_WAIT once it has run a minute, however
//! long it runs: the ports a bucket holds level off at `live + c × 60 s` (at `live + c × delay`
//! where reuse takes TIME_WAIT over after the delay). A straight line through two reads mistakes
//! the first minute's rise for a trend. The bucket runs out only when that level is above what it
//! may hold, or when its live sockets keep growing (a leak), and then when the sum first reaches it:
//! the TIME_WAIT held now that is still held then (each frees its port at 60 s of age), plus the
//! closes and the live growth to come.

use serde::Serialize;

use crate::model::churn::Ages;
use crate::model::records::TIME_WAIT_MS;

/// The longest window the close rate is measured over: periodic churn (a burst every few seconds)
/// averages out, and a change of rate shows within half a minute.
const WINDOW_SECONDS: f64 = 30.0;
/// The shortest: a client that has just started is measured over what it has done.
const MIN_WINDOW_SECONDS: f64 = 1.0;
/// Steps of the search for the moment the bucket fills, in seconds.
const STEP_SECONDS: f64 = 0.25;

/// What a bucket's forecast is made from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Inputs {
    /// Ports the bucket may hold in all before connect() to it fails (its usable ports less those
    /// bound by clients that bind first).
    pub room: u32,
    /// Its sockets other than TIME_WAIT now.
    pub live: u32,
    /// How many live sockets it gained per second over the sample (negative: lost).
    pub live_growth_per_sec: f64,
    /// Its held TIME_WAIT sockets by age (none of it reusable: see `reuse_delay_seconds`).
    pub ages: Ages,
    /// Where connect() takes over TIME_WAIT older than the reuse delay: that delay, in seconds.
    pub reuse_delay_seconds: Option<f64>,
    /// Held TIME_WAIT now, where reuse applies (younger than the delay).
    pub young_time_wait: u32,
    /// TIME_WAIT whose age the source did not give: held, with no time known to free its port,
    /// and how many more of them there were per second over the sample (their closes).
    pub unaged_time_wait: u32,
    pub unaged_growth_per_sec: f64,
    /// How long the sample was, in seconds: the close rate is never read over less, nor above what
    /// the closes within it say (a burst before the sample is no rate).
    pub sample_seconds: f64,
}

/// A bucket's forecast, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Forecast {
    /// Connections this host closed per second toward the bucket, from the ages of its TIME_WAIT
    /// over the last `window_seconds` (TIME_WAIT says when each connection closed).
    pub closes_per_sec: f64,
    pub window_seconds: f64,
    /// Live sockets gained per second over the sample.
    pub live_growth_per_sec: f64,
    /// The ports it holds once its TIME_WAIT has levelled off at that close rate (live sockets
    /// as now): `live + closes_per_sec × 60 s`, or × the reuse delay where reuse applies.
    pub level: u32,
    /// What it may hold before connect() fails.
    pub room: u32,
    /// Seconds until it holds all of `room`; `null` when it levels off below.
    pub seconds_to_exhaustion: Option<f64>,
}

/// The forecast of a bucket.
pub(crate) fn forecast(inputs: &Inputs) -> Forecast {
    let time_wait_seconds = f64::from(TIME_WAIT_MS) / 1000.0;
    let lifetime = inputs.reuse_delay_seconds.map_or(time_wait_seconds, |d| d.clamp(0.001, time_wait_seconds));
    let (closes_per_sec, window_seconds) = close_rate(&inputs.ages, inputs.sample_seconds);
    let closes_per_sec = inputs.unaged_growth_per_sec.max(0.0)
        + if inputs.reuse_delay_seconds.is_some() {
            // Reuse takes TIME_WAIT over after the delay: its ages do not tell the close rate, and what
            // it holds is the young TIME_WAIT, which the close rate keeps level.
            f64::from(inputs.young_time_wait) / lifetime
        } else {
            closes_per_sec
        };
    let level = (f64::from(inputs.live + inputs.unaged_time_wait) + closes_per_sec * lifetime).round();
    Forecast {
        closes_per_sec: round(closes_per_sec, 10.0),
        window_seconds: round(window_seconds, 10.0),
        live_growth_per_sec: round(inputs.live_growth_per_sec, 10.0),
        level: level as u32,
        room: inputs.room,
        seconds_to_exhaustion: runs_out(inputs, closes_per_sec, lifetime).map(|s| round(s, 1.0)),
    }
}

/// Closes per second, and the window they were read over: the last 30 s of TIME_WAIT ages, or,
/// where the bucket started closing more recently, the closes since its first (the oldest
/// TIME_WAIT); never over less than the sample, and never above the rate of the closes within the
/// sample, so that a burst just before it is not taken for a rate.
fn close_rate(ages: &Ages, sample_seconds: f64) -> (f64, f64) {
    let oldest = ages.oldest_seconds();
    let sample = sample_seconds.clamp(MIN_WINDOW_SECONDS, WINDOW_SECONDS);
    let (rate, window) = if oldest >= WINDOW_SECONDS {
        (ages.younger_than(WINDOW_SECONDS) / WINDOW_SECONDS, WINDOW_SECONDS)
    } else if oldest >= sample {
        (f64::from(ages.total().saturating_sub(1)) / oldest, oldest)
    } else {
        // It started closing within the sample: its closes since the first.
        let window = oldest.max(MIN_WINDOW_SECONDS);
        return (f64::from(ages.total().saturating_sub(1)) / window, window);
    };
    (rate.min(ages.younger_than(sample) / sample), window)
}

/// When the ports held first reach the room: held TIME_WAIT that is still held then, plus the
/// closes to come (each held for `lifetime`), plus the live sockets and their growth.
fn runs_out(inputs: &Inputs, closes_per_sec: f64, lifetime: f64) -> Option<f64> {
    let room = f64::from(inputs.room);
    let growth = inputs.live_growth_per_sec.max(0.0);
    // What is held now and still held `t` from now: TIME_WAIT frees its port at 60 s of age, and
    // under reuse the young TIME_WAIT is taken over within the delay.
    let held_now_at = |t: f64| match inputs.reuse_delay_seconds {
        Some(delay) => f64::from(inputs.young_time_wait) * (1.0 - t / delay).max(0.0),
        None => inputs.ages.still_held_after(t),
    };
    let held = |t: f64| {
        f64::from(inputs.live + inputs.unaged_time_wait)
            + growth * t
            + held_now_at(t)
            + closes_per_sec * t.min(lifetime)
    };
    if held(0.0) >= room {
        return Some(0.0);
    }
    // Within the first lifetime, old TIME_WAIT frees ports while new closes take them: search.
    let mut t = 0.0;
    while t < lifetime {
        t += STEP_SECONDS;
        if held(t) >= room {
            return Some(t);
        }
    }
    // Past it, the TIME_WAIT has levelled off and only live growth moves.
    let level = f64::from(inputs.live + inputs.unaged_time_wait) + closes_per_sec * lifetime;
    (growth > 0.0).then(|| (room - level) / growth).filter(|s| *s > 0.0).map(|s| s.max(lifetime))
}

fn round(x: f64, per_unit: f64) -> f64 {
    (x * per_unit).round() / per_unit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TIME_WAIT of a client closing `rate` connections a second for the last `seconds`.
    fn steady(rate: u32, seconds: u32) -> Ages {
        let mut ages = Ages::default();
        for ms in (0..seconds * 1000).step_by((1000 / rate) as usize) {
            ages.add(TIME_WAIT_MS - ms);
        }
        ages
    }

    fn inputs(room: u32, live: u32, ages: Ages) -> Inputs {
        Inputs {
            room,
            live,
            live_growth_per_sec: 0.0,
            ages,
            reuse_delay_seconds: None,
            young_time_wait: 0,
            unaged_time_wait: 0,
            unaged_growth_per_sec: 0.0,
            sample_seconds: 5.0,
        }
    }

    #[test]
    fn churn_that_levels_below_its_room_never_runs_out() {
        // nginx at 8 closes a second in 1 000 ports, 10 s in (80 closes since the first, 9.875 s
        // ago): it levels off near 8 × 60 + 4 live, below 1 000.
        let f = forecast(&inputs(1000, 4, steady(8, 10)));
        assert_eq!((f.closes_per_sec, f.window_seconds, f.level, f.seconds_to_exhaustion), (8.0, 9.9, 484, None));
        // A proxy at 100 closes a second in 28 232 ports, a minute in: ~6 000.
        let f = forecast(&inputs(28232, 0, steady(100, 60)));
        assert_eq!((f.closes_per_sec, f.window_seconds, f.level, f.seconds_to_exhaustion), (100.0, 30.0, 6000, None));
    }

    #[test]
    fn churn_above_its_room_runs_out_when_the_closes_reach_it() {
        // 40 closes a second in 1 000 ports, 8 s in (320 held): 17 s more.
        let f = forecast(&inputs(1000, 0, steady(40, 8)));
        assert_eq!((f.level, f.seconds_to_exhaustion), (2400, Some(17.0)));
        // 20 a second for 50 s (1 000 held, full) then: it is full now.
        let f = forecast(&inputs(1000, 0, steady(20, 50)));
        assert_eq!(f.seconds_to_exhaustion, Some(0.0));
        // 20 a second for 40 s in 1 000 ports (800 held): level 1 200; none of its TIME_WAIT frees a
        // port within 20 s, so the 200 closes to come fill it at 10 s.
        let f = forecast(&inputs(1000, 0, steady(20, 40)));
        assert_eq!((f.level, f.seconds_to_exhaustion), (1200, Some(10.0)));
    }

    #[test]
    fn a_burst_before_the_sample_is_no_rate() {
        // 3 000 closes at once 7 s before the last read of a 5 s sample, none since.
        let mut ages = Ages::default();
        (0..3000).for_each(|_| ages.add(TIME_WAIT_MS - 7_000));
        let f = forecast(&inputs(28232, 0, ages));
        assert_eq!((f.closes_per_sec, f.level, f.seconds_to_exhaustion), (0.0, 0, None));
    }

    #[test]
    fn live_sockets_that_keep_growing_run_out_past_the_level() {
        // A leak of 5 CLOSE_WAIT a second beside churn that levels at 600 of 1 000: 80 s.
        let mut leak = inputs(1000, 0, steady(10, 60));
        leak.live_growth_per_sec = 5.0;
        assert_eq!(forecast(&leak).seconds_to_exhaustion, Some(80.0));
        leak.live_growth_per_sec = -5.0;
        assert_eq!(forecast(&leak).seconds_to_exhaustion, None);
    }

    #[test]
    fn under_reuse_the_young_time_wait_is_the_level() {
        let mut reuse = inputs(1000, 100, Ages::default());
        reuse.reuse_delay_seconds = Some(1.0);
        reuse.young_time_wait = 300;
        let f = forecast(&reuse);
        assert_eq!((f.closes_per_sec, f.level, f.seconds_to_exhaustion), (300.0, 400, None));
        reuse.live_growth_per_sec = 50.0;
        assert_eq!(forecast(&reuse).seconds_to_exhaustion, Some(12.0));
    }
}
