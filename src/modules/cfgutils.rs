//! cfgutils: OpenSIPS' `sleep(seconds)`, `usleep(microseconds)`, `rand_event()`,
//! `rand_set_prob()`, `rand_reset_prob()`, `rand_get_prob()` and the `$RANDOM` value.
//!
//! Owns: the sleeps as asynchronous functions on the shard's timer wheel
//! ([`cores::sleep`]), and the shard's probability state for `rand_event`
//! ([`RandEvent`], `modparam("cfgutils", "initial_probability", n)`).
//!
//! **Synchronous sleep is rejected.** OpenSIPS' plain `sleep()`/`usleep()` block the
//! worker process; here that would stall every transaction of the shard. So the script
//! checker must refuse `sleep`/`usleep` outside `async(...)` with
//! [`check_sync_call`]'s error (file:line from the checker), pointing at
//! `async(usleep(n), resume_route)`. Under `async()` they suspend the transaction and
//! the resume route runs after the delay with `$rc` = 1.
//!
//! Invariants: a delay is at most [`MAX_SLEEP`]; negative or larger arguments fail
//! with a negative `$rc` at once instead of sleeping. `rand_event` probabilities are
//! percentages in `0..=100`.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use super::rest_client::ModparamValue;
use crate::transport::dns::SplitMix64;

/// `$rc` after a completed sleep.
pub const SLEEP_OK: i32 = 1;
/// `$rc` for an invalid (negative or too long) delay.
pub const SLEEP_INVALID: i32 = -1;

/// Longest accepted delay (one day): every async operation is bounded.
pub const MAX_SLEEP: Duration = Duration::from_secs(86_400);

/// The functions of this module that may only run under `async()`.
pub const ASYNC_ONLY: &[&str] = &["sleep", "usleep"];

/// Why a cfgutils call was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CfgutilsError {
    #[error("{function}() would block the shard; use async({function}(...), resume_route)")]
    SyncSleep { function: &'static str },
    #[error("{function}({value}): delay must be 0..={max_secs} s")]
    InvalidDelay {
        function: &'static str,
        value: i64,
        max_secs: u64,
    },
    #[error("rand_set_prob({0}): probability must be 0..=100 (percent)")]
    InvalidProbability(i64),
    #[error("cfgutils has no parameter {0:?}")]
    UnknownParam(String),
    #[error("cfgutils parameter {0:?} expects an integer 0..=100")]
    BadParamValue(&'static str),
}

/// The checker's rule for a call outside `async()`: `sleep`/`usleep` are refused.
pub fn check_sync_call(function: &str) -> Result<(), CfgutilsError> {
    match ASYNC_ONLY.iter().find(|f| **f == function) {
        Some(f) => Err(CfgutilsError::SyncSleep { function: f }),
        None => Ok(()),
    }
}

/// The delay of `sleep(seconds)`.
pub fn sleep_delay(seconds: i64) -> Result<Duration, CfgutilsError> {
    delay("sleep", seconds, Duration::from_secs)
}

/// The delay of `usleep(microseconds)`.
pub fn usleep_delay(microseconds: i64) -> Result<Duration, CfgutilsError> {
    delay("usleep", microseconds, Duration::from_micros)
}

fn delay(
    function: &'static str,
    value: i64,
    unit: fn(u64) -> Duration,
) -> Result<Duration, CfgutilsError> {
    let invalid = CfgutilsError::InvalidDelay {
        function,
        value,
        max_secs: MAX_SLEEP.as_secs(),
    };
    let v = u64::try_from(value).map_err(|_| invalid.clone())?;
    let d = unit(v);
    if d > MAX_SLEEP {
        return Err(invalid);
    }
    Ok(d)
}

/// `async(sleep(seconds), ...)` on the current shard: `$rc` [`SLEEP_OK`] after the
/// delay, [`SLEEP_INVALID`] at once for a bad argument.
pub fn sleep(seconds: i64) -> impl Future<Output = i32> + 'static {
    run_delay(sleep_delay(seconds))
}

/// `async(usleep(microseconds), ...)` on the current shard.
pub fn usleep(microseconds: i64) -> impl Future<Output = i32> + 'static {
    run_delay(usleep_delay(microseconds))
}

async fn run_delay(delay: Result<Duration, CfgutilsError>) -> i32 {
    match delay {
        Ok(d) => {
            cores::sleep(d).await;
            SLEEP_OK
        }
        Err(e) => {
            tracing::warn!(error = %e, "cfgutils: sleep refused");
            SLEEP_INVALID
        }
    }
}

/// Default of `initial_probability` (OpenSIPS: 10 %).
pub const DEFAULT_PROBABILITY: u8 = 10;

/// One shard's `rand_event` state.
#[derive(Debug, Clone)]
pub struct RandEvent {
    initial: u8,
    current: u8,
    rng: SplitMix64,
}

impl RandEvent {
    /// `initial_probability` in percent (clamped to 100), `seed` for the generator
    /// ([`crate::transport::dns::entropy_seed`] in production).
    pub fn new(initial_probability: u8, seed: u64) -> RandEvent {
        let p = initial_probability.min(100);
        RandEvent {
            initial: p,
            current: p,
            rng: SplitMix64::new(seed),
        }
    }

    /// Applies `modparam("cfgutils", "initial_probability", n)`.
    pub fn set_param(&mut self, name: &str, value: ModparamValue<'_>) -> Result<(), CfgutilsError> {
        if name != "initial_probability" {
            return Err(CfgutilsError::UnknownParam(name.to_owned()));
        }
        match value {
            ModparamValue::Int(v @ 0..=100) => {
                let p = u8::try_from(v).unwrap_or(100);
                self.initial = p;
                self.current = p;
                Ok(())
            }
            _ => Err(CfgutilsError::BadParamValue("initial_probability")),
        }
    }

    /// `rand_event()`: 1 with the current probability, else -1.
    pub fn rand_event(&mut self) -> i32 {
        if self.rng.next_u64() % 100 < u64::from(self.current) {
            1
        } else {
            -1
        }
    }

    /// `rand_set_prob(percent)`.
    pub fn rand_set_prob(&mut self, percent: i64) -> Result<(), CfgutilsError> {
        match u8::try_from(percent) {
            Ok(p) if p <= 100 => {
                self.current = p;
                Ok(())
            }
            _ => Err(CfgutilsError::InvalidProbability(percent)),
        }
    }

    /// `rand_reset_prob()`: back to `initial_probability`.
    pub fn rand_reset_prob(&mut self) {
        self.current = self.initial;
    }

    /// `rand_get_prob()`.
    pub fn rand_get_prob(&self) -> u8 {
        self.current
    }

    /// `$RANDOM`: a value in `0..=i32::MAX` (the C library's `RAND_MAX` on Linux).
    pub fn random(&mut self) -> i32 {
        i32::try_from(self.rng.next_u64() >> 33).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_sleep_is_refused() {
        assert_eq!(
            check_sync_call("usleep"),
            Err(CfgutilsError::SyncSleep { function: "usleep" })
        );
        assert!(check_sync_call("sleep").is_err());
        assert_eq!(check_sync_call("rand_event"), Ok(()));
    }

    #[test]
    fn delays_are_bounded() {
        assert_eq!(sleep_delay(2), Ok(Duration::from_secs(2)));
        assert_eq!(usleep_delay(1500), Ok(Duration::from_micros(1500)));
        assert_eq!(sleep_delay(0), Ok(Duration::ZERO));
        assert!(sleep_delay(-1).is_err());
        assert!(sleep_delay(86_401).is_err());
        assert!(usleep_delay(i64::MAX).is_err());
    }

    #[test]
    fn rand_event_follows_probability() {
        let mut r = RandEvent::new(DEFAULT_PROBABILITY, 42);
        assert_eq!(r.rand_get_prob(), 10);
        r.rand_set_prob(0).unwrap();
        assert!((0..1000).all(|_| r.rand_event() == -1));
        r.rand_set_prob(100).unwrap();
        assert!((0..1000).all(|_| r.rand_event() == 1));
        r.rand_set_prob(50).unwrap();
        let hits = (0..10_000).filter(|_| r.rand_event() == 1).count();
        assert!((4000..6000).contains(&hits), "{hits}");
        assert!(r.rand_set_prob(101).is_err());
        assert!(r.rand_set_prob(-1).is_err());
        r.rand_reset_prob();
        assert_eq!(r.rand_get_prob(), 10);
        r.set_param("initial_probability", ModparamValue::Int(30))
            .unwrap();
        assert_eq!(r.rand_get_prob(), 30);
        assert!(r
            .set_param("initial_probability", ModparamValue::Int(300))
            .is_err());
        assert!(r.set_param("nope", ModparamValue::Int(3)).is_err());
        assert!((0..1000).all(|_| r.random() >= 0));
    }
}
