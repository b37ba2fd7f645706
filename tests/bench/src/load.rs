//! The offered load, shared by every system so they see the same traffic:
//! record payloads from a fixed seed, the send-time stamp inside each
//! record, the fixed-rate schedule, and latency recording.
//!
//! A fixed rate is offered in 1 ms ticks. Every record of a tick carries the
//! tick's *scheduled* time as its stamp, so when the producer falls behind
//! (all acks in flight are taken) the wait counts in the latency: no
//! coordinated omission. An unpaced producer stamps a record when it builds it.

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes at the start of every value holding the send stamp.
pub const STAMP_BYTES: usize = 8;
/// Schedule granularity of a fixed rate.
pub const TICK: Duration = Duration::from_millis(1);

/// The offered load of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Load {
    /// As fast as the window of unacknowledged records allows.
    Max,
    /// A fixed rate, records per second.
    Rate(u64),
}

impl Load {
    pub fn label(self) -> String {
        match self {
            Load::Max => "max".into(),
            Load::Rate(r) if r >= 1000 && r.is_multiple_of(1000) => format!("{}k/s", r / 1000),
            Load::Rate(r) => format!("{r}/s"),
        }
    }

    pub fn key(self) -> String {
        match self {
            Load::Max => "max".into(),
            Load::Rate(r) => r.to_string(),
        }
    }
}

/// Nanoseconds since this process first asked; producer and consumer run
/// in the same process, so their stamps share the clock.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The `Instant` of a [`now_ns`] value.
pub fn instant_of(ns: u64) -> Instant {
    let now = now_ns();
    let i = Instant::now();
    if ns >= now {
        i + Duration::from_nanos(ns - now)
    } else {
        i - Duration::from_nanos(now - ns)
    }
}

/// The value template of a run: `size` bytes from `seed`; each record's
/// value is the template with its stamp over the first [`STAMP_BYTES`].
pub fn template(seed: u64, size: usize) -> Vec<u8> {
    assert!(size >= STAMP_BYTES, "records must hold a stamp");
    let mut v = vec![0u8; size];
    rand::rngs::StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

pub fn write_stamp(value: &mut [u8], ns: u64) {
    value[..STAMP_BYTES].copy_from_slice(&ns.to_le_bytes());
}

pub fn read_stamp(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(
        value.get(..STAMP_BYTES)?.try_into().ok()?,
    ))
}

/// Fixed-rate schedule: the `k`-th tick is due at `start + k * TICK` and
/// carries the records that bring the total to `rate * elapsed`.
#[derive(Debug, Clone)]
pub struct Ticker {
    rate: u64,
    start_ns: u64,
    tick: u64,
    emitted: u64,
}

impl Ticker {
    pub fn new(rate: u64, start_ns: u64) -> Self {
        Self {
            rate,
            start_ns,
            tick: 0,
            emitted: 0,
        }
    }

    /// The next tick: its due time (ns) and how many records it carries
    /// (zero for some ticks at rates below 1000/s).
    pub fn next_tick(&mut self) -> (u64, u64) {
        self.tick += 1;
        let tick_ns = TICK.as_nanos() as u64;
        let due = self.start_ns + self.tick * tick_ns;
        let total = (u128::from(self.rate) * u128::from(self.tick) * u128::from(tick_ns)
            / 1_000_000_000) as u64;
        let n = total - self.emitted;
        self.emitted = total;
        (due, n)
    }
}

/// Produce-to-consume latencies of the records stamped inside the
/// measurement window; records outside it (warm-up) are only counted.
pub struct LatencyRecorder {
    pub hist: Histogram<u64>,
    window_ns: (u64, u64),
    /// Every record seen, in or out of the window.
    pub seen: u64,
}

impl LatencyRecorder {
    pub fn new(window_ns: (u64, u64)) -> Self {
        Self {
            // 1 µs to 1 hour at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            window_ns,
            seen: 0,
        }
    }

    /// Records one consumed record stamped `stamp_ns`, seen at `now_ns`.
    pub fn handle_record(&mut self, stamp_ns: u64, now_ns: u64) {
        self.handle_records(stamp_ns, now_ns, 1);
    }

    /// Records `n` records with the same stamp, seen at `now_ns`.
    pub fn handle_records(&mut self, stamp_ns: u64, now_ns: u64, n: u64) {
        self.seen += n;
        if stamp_ns >= self.window_ns.0 && stamp_ns < self.window_ns.1 {
            let us = now_ns.saturating_sub(stamp_ns) / 1000;
            let _ = self.hist.record_n(us.clamp(1, self.hist.high()), n);
        }
    }

    /// Latency at quantile `q`, milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_emits_the_rate_exactly_over_a_second() {
        for rate in [1u64, 999, 10_000, 100_000, 123_457] {
            let mut t = Ticker::new(rate, 5);
            let mut total = 0;
            let mut last_due = 5;
            for _ in 0..1000 {
                let (due, n) = t.next_tick();
                assert_eq!(due - last_due, 1_000_000, "ticks are 1 ms apart");
                last_due = due;
                total += n;
            }
            assert_eq!(total, rate, "rate {rate}");
        }
    }

    #[test]
    fn ticker_spreads_evenly() {
        let mut t = Ticker::new(10_000, 0);
        assert!((0..50).all(|_| t.next_tick().1 == 10));
    }

    #[test]
    fn stamps_round_trip_and_template_is_seeded() {
        let mut v = template(42, 100);
        assert_eq!(v, template(42, 100));
        assert_ne!(v, template(43, 100));
        write_stamp(&mut v, 0x0123_4567_89ab_cdef);
        assert_eq!(read_stamp(&v), Some(0x0123_4567_89ab_cdef));
        assert_eq!(read_stamp(&v[..7]), None);
    }

    #[test]
    fn recorder_counts_warm_up_but_does_not_measure_it() {
        let mut r = LatencyRecorder::new((1_000_000, 2_000_000));
        r.handle_record(500_000, 600_000); // warm-up
        r.handle_record(1_000_000, 3_000_000); // 2 ms
        r.handle_record(2_000_000, 2_100_000); // after the window
        assert_eq!(r.seen, 3);
        assert_eq!(r.hist.len(), 1);
        assert!((r.quantile_ms(0.5) - 2.0).abs() < 0.01);
    }

    #[test]
    fn load_labels() {
        assert_eq!(Load::Rate(10_000).label(), "10k/s");
        assert_eq!(Load::Max.key(), "max");
        assert!(Load::Max < Load::Rate(1));
    }
}
