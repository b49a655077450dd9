//! When a token must be renewed, as the kubelet's token manager decides (facts §7.2): past 80 %
//! of its lifetime, older than 24 h, or issued in the future (the clock went back), each less
//! a random jitter of up to 10 s. The lifetime comes from the TokenRequest's
//! `status.expirationTimestamp` and `spec.expirationSeconds`, not from the JWT's `exp`, so an
//! extended 3607 s token (a year in its `exp`) is still renewed after about 48 minutes.

use jiff::{SignedDuration, Timestamp};

/// `maxTTL`: no token is kept longer than this, whatever its lifetime.
const MAX_TTL: SignedDuration = SignedDuration::from_hours(24);
/// The largest random jitter subtracted from the refresh times.
pub(crate) const MAX_JITTER: SignedDuration = SignedDuration::from_secs(10);

/// What the server said about one issued token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// `status.expirationTimestamp`.
    pub(crate) expires: Timestamp,
    /// `spec.expirationSeconds` of the response (what the server granted).
    pub(crate) seconds: i64,
}

impl Lifetime {
    /// The issue time the kubelet derives: expiry minus the granted lifetime.
    pub(crate) fn issued(&self) -> Timestamp {
        self.expires
            .checked_sub(SignedDuration::from_secs(self.seconds))
            .unwrap_or(self.expires)
    }

    /// The earliest time the token requires a refresh, with `jitter` already subtracted.
    pub(crate) fn refresh_at(&self, jitter: SignedDuration) -> Timestamp {
        let iat = self.issued();
        // 80 %: expiry minus a fifth of the lifetime.
        let by_ratio = self
            .expires
            .checked_sub(SignedDuration::from_secs(self.seconds / 5))
            .unwrap_or(iat);
        let by_ttl = iat.checked_add(MAX_TTL).unwrap_or(self.expires);
        let at = by_ratio.min(by_ttl);
        at.checked_sub(jitter).unwrap_or(at)
    }

    /// Whether, at `now`, the token must be renewed.
    pub(crate) fn requires_refresh(&self, now: Timestamp, jitter: SignedDuration) -> bool {
        now < self.issued() || now > self.refresh_at(jitter)
    }

    /// Whether the token may still be served (a failed refresh keeps it until then).
    pub(crate) fn still_valid(&self, now: Timestamp) -> bool {
        now < self.expires
    }
}

/// A random jitter between 0 and [`MAX_JITTER`].
pub(crate) fn jitter() -> SignedDuration {
    let millis = rand::random_range(0..=MAX_JITTER.as_millis() as i64);
    SignedDuration::from_millis(millis)
}

/// Exponential backoff for failed refreshes: 1 s, 2 s, 4 s … up to 30 s.
pub(crate) fn backoff(failures: u32) -> std::time::Duration {
    let secs = 1u64 << failures.min(5);
    std::time::Duration::from_secs(secs.min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    const ZERO: SignedDuration = SignedDuration::ZERO;

    #[test]
    fn renewed_after_eighty_percent_of_the_lifetime() {
        // Issued at 1000 for 3600 s.
        let l = Lifetime {
            expires: at(4600),
            seconds: 3600,
        };
        assert_eq!(l.issued(), at(1000));
        assert!(!l.requires_refresh(at(1000), ZERO));
        assert!(!l.requires_refresh(at(1000 + 2880), ZERO));
        assert!(l.requires_refresh(at(1000 + 2881), ZERO));
        // Jitter brings it forward by up to 10 s.
        assert!(l.requires_refresh(at(1000 + 2871), SignedDuration::from_secs(10)));
    }

    #[test]
    fn the_extended_token_follows_its_status_not_its_jwt() {
        // 3607 s requested; the JWT says a year, the status says 3607 s.
        let l = Lifetime {
            expires: at(3607),
            seconds: 3607,
        };
        let refresh = l.refresh_at(ZERO).as_second();
        assert_eq!(refresh, 3607 - 3607 / 5);
        assert!((2880..=2890).contains(&refresh), "{refresh}");
    }

    #[test]
    fn no_token_is_kept_past_a_day() {
        let week = 7 * 24 * 3600;
        let l = Lifetime {
            expires: at(week),
            seconds: week,
        };
        assert!(!l.requires_refresh(at(24 * 3600), ZERO));
        assert!(l.requires_refresh(at(24 * 3600 + 1), ZERO));
    }

    #[test]
    fn a_clock_that_went_back_renews() {
        let l = Lifetime {
            expires: at(4600),
            seconds: 3600,
        };
        assert!(l.requires_refresh(at(999), ZERO));
    }

    #[test]
    fn short_test_tokens_and_validity() {
        let l = Lifetime {
            expires: at(130),
            seconds: 30,
        };
        assert_eq!(l.refresh_at(ZERO), at(124));
        assert!(l.still_valid(at(129)));
        assert!(!l.still_valid(at(130)));
    }

    #[test]
    fn jitter_and_backoff_are_bounded() {
        for _ in 0..100 {
            let j = jitter();
            assert!(j >= ZERO && j <= MAX_JITTER);
        }
        assert_eq!(backoff(0).as_secs(), 1);
        assert_eq!(backoff(3).as_secs(), 8);
        assert_eq!(backoff(40).as_secs(), 30);
    }
}
