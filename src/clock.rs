//! Where time comes from: the [`Clock`] trait, the system clock, a shifted clock for
//! black-box tests, and a fake clock for unit tests.
//!
//! Nothing else in the crate reads the system time (STYLE.md rule 7), so every
//! time-dependent rule can be tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub(crate) trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

pub(crate) type SharedClock = Arc<dyn Clock>;

/// The real time, optionally shifted by a fixed offset (the `--testing-clock-offset`
/// flag, which exists only so black-box tests can move a server into the future).
#[derive(Debug, Default)]
pub(crate) struct SystemClock {
    offset: SignedDuration,
}

impl SystemClock {
    pub(crate) fn shared() -> SharedClock {
        Arc::new(SystemClock::default())
    }

    /// A clock `offset` ahead of (or behind) the real one.
    pub(crate) fn with_offset(offset: SignedDuration) -> SharedClock {
        Arc::new(SystemClock { offset })
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        // An offset large enough to overflow is a flag error caught at start-up;
        // fall back to the real time rather than panic on a request path.
        now.checked_add(self.offset).unwrap_or(now)
    }
}

/// A clock that only moves when told to; for unit tests.
#[derive(Debug)]
pub(crate) struct FakeClock {
    seconds: AtomicI64,
}

impl FakeClock {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn at(seconds: i64) -> Arc<FakeClock> {
        Arc::new(FakeClock {
            seconds: AtomicI64::new(seconds),
        })
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn advance(&self, seconds: i64) {
        self.seconds.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_second(self.seconds.load(Ordering::SeqCst)).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Kubernetes' wire form of a `metav1.Time`: RFC 3339 in UTC, whole seconds.
pub(crate) fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Kubernetes' wire form of a `metav1.MicroTime` (a Lease's `renewTime`): RFC 3339 in UTC
/// with microseconds.
pub(crate) fn format_micro_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_has_six_digits() {
        let t = Timestamp::new(1_795_392_250, 123_456_789).expect("a time");
        assert_eq!(format_micro_time(t), "2026-11-23T00:04:10.123456Z");
        let whole = Timestamp::from_second(1_795_392_250).expect("a time");
        assert_eq!(format_micro_time(whole), "2026-11-23T00:04:10.000000Z");
    }

    #[test]
    fn offset_clock_is_ahead() {
        let shifted = SystemClock::with_offset(SignedDuration::from_hours(48));
        let delta = shifted.now().as_second() - Timestamp::now().as_second();
        assert!((47 * 3600..=49 * 3600).contains(&delta), "{delta}");
    }

    #[test]
    fn fake_clock_moves_only_when_told() {
        let clock = FakeClock::at(1_795_392_244);
        assert_eq!(format_time(clock.now()), "2026-11-23T00:04:04Z");
        clock.advance(600);
        assert_eq!(format_time(clock.now()), "2026-11-23T00:14:04Z");
    }
}
