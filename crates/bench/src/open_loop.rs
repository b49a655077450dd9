//! Open-loop load at a constant rate: requests are put on a fixed timetable (slot k at
//! start + k ÷ rate) and each latency is measured from its slot's time, not from when it was
//! actually sent, so that a slow server cannot hold the load back and hide its queueing
//! (coordinated omission, `shared/reference/performance.md` C.2). It owns the timetable and
//! the workers that follow it; it must not judge or print anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{Client, Conn, Histogram, Plan, Tally, nanos};

/// The slots of one open-loop run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timetable {
    start: Instant,
    rate_per_s: f64,
    slots: u64,
}

impl Timetable {
    /// `rate_per_s` requests a second for `duration`, from `start`; a rate that is not a
    /// positive number gives no slots.
    pub(crate) fn new(start: Instant, rate_per_s: f64, duration: Duration) -> Timetable {
        let slots = if rate_per_s.is_finite() && rate_per_s > 0.0 {
            // Truncation is meant: only whole slots inside the duration.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (rate_per_s * duration.as_secs_f64()).floor() as u64;
            n
        } else {
            0
        };
        Timetable {
            start,
            rate_per_s,
            slots,
        }
    }

    pub(crate) fn slots(&self) -> u64 {
        self.slots
    }

    pub(crate) fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }

    /// When slot `k` is due, or None past the last slot. Computed from `k` rather than by
    /// adding intervals, so that rounding does not accumulate over a long run.
    pub(crate) fn at(&self, k: u64) -> Option<Instant> {
        if k >= self.slots {
            return None;
        }
        // Slot numbers stay far below 2^52, where f64 would lose precision.
        #[allow(clippy::cast_precision_loss)]
        let offset = Duration::from_secs_f64(k as f64 / self.rate_per_s);
        Some(self.start + offset)
    }
}

/// One worker's share of an open-loop run: the usual tally (latency from the slot's time)
/// and how late each send started after its slot, which the latency includes: tokio's timer
/// has millisecond granularity, and a slot waits for a free worker when all are busy.
pub(crate) struct OpenTally {
    pub(crate) tally: Tally,
    pub(crate) lateness: Histogram,
}

/// Takes the next free slot from `next`, waits for it, sends, and measures from the slot's
/// time, until the timetable ends. A worker busy with a slow response takes no slot, so
/// the slots it would have taken wait for the next free worker, and their wait counts.
pub(crate) async fn worker(
    client: Arc<Client>,
    mut conn: Conn,
    plan: Arc<Plan>,
    timetable: Timetable,
    next: Arc<AtomicU64>,
    worker: usize,
    workers: usize,
) -> anyhow::Result<(Conn, OpenTally)> {
    let mut out = OpenTally {
        tally: Tally::new(),
        lateness: Histogram::new(),
    };
    let mut i = 0;
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let Some(due) = timetable.at(k) else {
            break;
        };
        // Built before the wait, so that building does not delay the send.
        let Some((req, check)) = plan.next(&client, worker, workers, i)? else {
            break;
        };
        i += 1;
        tokio::time::sleep_until(due.into()).await;
        out.lateness.record(nanos(due.elapsed()));
        match conn.call(req).await {
            Ok((status, body)) => match check.error(status, &body) {
                None => {
                    out.tally.ok += 1;
                    out.tally.latency.record(nanos(due.elapsed()));
                }
                Some(kind) => *out.tally.errors.entry(kind).or_default() += 1,
            },
            Err(e) => {
                *out.tally
                    .errors
                    .entry(format!("transport: {e}"))
                    .or_default() += 1;
                // As in the closed loop: a lost connection is replaced, and failing to
                // reconnect ends the benchmark.
                conn = client.connect().await.context("reconnecting")?;
                out.tally.reconnects += 1;
            }
        }
    }
    Ok((conn, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_from_the_start() {
        let start = Instant::now();
        let t = Timetable::new(start, 4000.0, Duration::from_secs(5));
        assert_eq!(t.slots(), 20_000);
        assert_eq!(t.at(0), Some(start));
        assert_eq!(t.at(1), Some(start + Duration::from_micros(250)));
        assert_eq!(t.at(4000), Some(start + Duration::from_secs(1)));
        // The last slot is inside the duration, and there is none after it.
        assert_eq!(
            t.at(19_999),
            Some(start + Duration::from_secs(5) - Duration::from_micros(250))
        );
        assert_eq!(t.at(20_000), None);
    }

    #[test]
    fn no_positive_rate_no_slots() {
        let start = Instant::now();
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let t = Timetable::new(start, rate, Duration::from_secs(5));
            assert_eq!(t.slots(), 0, "{rate}");
            assert_eq!(t.at(0), None, "{rate}");
        }
        // A fraction of a slot is not a slot.
        assert_eq!(
            Timetable::new(start, 1.5, Duration::from_secs(1)).slots(),
            1
        );
    }

    #[test]
    fn a_long_run_does_not_drift() {
        let start = Instant::now();
        let t = Timetable::new(start, 3.0, Duration::from_secs(3600));
        // One third of a second is not exact in f64; slot 3k is still exactly k seconds.
        assert_eq!(t.at(3 * 3000), Some(start + Duration::from_secs(3000)));
    }
}
