//! The retry delays of a failed reconcile, for the driver. Owns only the arithmetic; it
//! must not sleep or queue. (A failed watch or list is retried by `registry::shared_watch`,
//! with the same delays.)

use std::time::Duration;

/// Retry delays: 100 ms doubling to 30 s. The registry already retries lost write races
/// itself, so an error here is a storage problem or a precondition that outlived those
/// retries; backing off keeps a sick store from being hammered, and the 30 s cap keeps
/// recovery prompt once it is healthy (client-go's default limiter starts at 5 ms and caps
/// at 1000 s; a single-process server gains nothing from waiting that long).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(crate) fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(1_u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(8), Duration::from_millis(25_600));
        assert_eq!(backoff(9), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}
