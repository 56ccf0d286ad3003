//! `TmConfig`: the transaction layer's timer values and limits, named as RFC 3261 §17
//! (T1, T2, T4, Timer C) and the OpenSIPS `tm` module (`fr_timer`, `fr_inv_timer`,
//! `wt_timer`) name them.
//!
//! Invariants (checked by [`TmConfig::validate`]): `0 < t1 <= t2`, every other duration is
//! non-zero, every duration (and 64*T1) is at most [`MAX_TIMER`] so `now + timer` cannot
//! overflow, `1 <= max_branches`. Timers that RFC 3261 §17 sets to zero on reliable
//! transports (E, G, D, K, I, J) are never armed there; the machines skip the state instead.

use std::time::Duration;

/// Longest value accepted for any timer (one day): values come from the script.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// Timer values and limits of the transaction layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmConfig {
    /// RTT estimate (RFC 3261 §17.1.1.1), default 500 ms. Timers A, E, G start at T1;
    /// Timers B/F (RFC values) and H last 64*T1.
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE responses,
    /// default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, default 5 s (Timers I and K, capped by
    /// `wt_timer`).
    pub t4: Duration,
    /// OpenSIPS `fr_timer`: how long a branch waits for a first response, default 5 s.
    /// Used as Timer B (INVITE client, no response yet) and Timer F (non-INVITE client).
    /// RFC 3261 uses 64*T1 for both; set `fr_timer = 64 * t1` for that behaviour.
    pub fr_timer: Duration,
    /// OpenSIPS `fr_inv_timer`: how long an INVITE branch may ring, counted from its first
    /// provisional response, default 120 s. Not restarted by later provisionals.
    pub fr_inv_timer: Duration,
    /// Timer C (RFC 3261 §16.6 step 11): an INVITE branch without any provisional response
    /// for this long is given up (408 + CANCEL, §16.8). Restarted by every provisional
    /// (§16.7 step 2). Default 180 s (the RFC asks for more than 3 minutes).
    pub timer_c: Duration,
    /// OpenSIPS `wt_timer`: how long a transaction that has ended stays in the table to
    /// absorb late retransmissions, default 5 s. Used for Timer D (INVITE client Completed,
    /// RFC 3261 §17.1.1.2: at least 32 s), Timer J (non-INVITE server Completed, 64*T1) and
    /// Timers L and M (INVITE server/client Accepted, RFC 6026 §7.1/§7.2: 64*T1). Set it to
    /// 32 s (`modparam("tm", "wt_timer", 32)`) for the RFC values. Every call keeps two
    /// transactions for this long, so it bounds the sustainable call rate at a given
    /// table size: 32 s at 65 536 transactions per shard is ~1 000 calls/s per shard.
    pub wt_timer: Duration,
    /// Most client branches one proxy transaction may have (OpenSIPS `MAX_BRANCHES`, 12).
    pub max_branches: u8,
}

impl Default for TmConfig {
    fn default() -> Self {
        TmConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            fr_timer: Duration::from_secs(5),
            fr_inv_timer: Duration::from_secs(120),
            timer_c: Duration::from_secs(180),
            wt_timer: Duration::from_secs(5),
            max_branches: 12,
        }
    }
}

/// A `TmConfig` value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("tm: T1 must be non-zero and at most T2 (t1 = {t1:?}, t2 = {t2:?})")]
    T1T2 { t1: Duration, t2: Duration },
    #[error("tm: timer `{name}` must be non-zero")]
    ZeroTimer { name: &'static str },
    #[error("tm: timer `{name}` = {value:?} is longer than one day")]
    TooLong { name: &'static str, value: Duration },
    #[error("tm: max_branches must be at least 1")]
    NoBranches,
}

impl TmConfig {
    /// 64*T1: Timer H and the CANCEL guard of RFC 3261 §9.1 (J, L, M use `wt_timer`).
    pub fn t1_x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timers I and K: T4 (RFC 3261 §17.1.2.2, §17.2.1), but never longer than `wt_timer`,
    /// so an ended transaction lingers at most `wt_timer`.
    pub fn linger_t4(&self) -> Duration {
        self.t4.min(self.wt_timer)
    }

    /// Check the invariants listed in the module doc.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.t1.is_zero() || self.t1 > self.t2 {
            return Err(ConfigError::T1T2 {
                t1: self.t1,
                t2: self.t2,
            });
        }
        for (name, value) in [
            ("t1", self.t1),
            ("64*t1", self.t1_x64()),
            ("t2", self.t2),
            ("t4", self.t4),
            ("fr_timer", self.fr_timer),
            ("fr_inv_timer", self.fr_inv_timer),
            ("timer_c", self.timer_c),
            ("wt_timer", self.wt_timer),
        ] {
            if value > MAX_TIMER {
                return Err(ConfigError::TooLong { name, value });
            }
        }
        for (name, d) in [
            ("t4", self.t4),
            ("fr_timer", self.fr_timer),
            ("fr_inv_timer", self.fr_inv_timer),
            ("timer_c", self.timer_c),
            ("wt_timer", self.wt_timer),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroTimer { name });
            }
        }
        if self.max_branches == 0 {
            return Err(ConfigError::NoBranches);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_opensips_like() {
        let c = TmConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.fr_timer, Duration::from_secs(5));
        assert_eq!(c.fr_inv_timer, Duration::from_secs(120));
        assert_eq!(c.t1_x64(), Duration::from_secs(32));
        assert_eq!(c.wt_timer, Duration::from_secs(5));
    }

    #[test]
    fn rejects_bad_values() {
        let c = TmConfig {
            t1: Duration::from_secs(5),
            ..TmConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::T1T2 { .. })));
        let c = TmConfig {
            fr_timer: Duration::ZERO,
            ..TmConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroTimer { name: "fr_timer" })
        );
        let c = TmConfig {
            max_branches: 0,
            ..TmConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::NoBranches));
        let c = TmConfig {
            fr_inv_timer: Duration::MAX,
            ..TmConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooLong {
                name: "fr_inv_timer",
                ..
            })
        ));
    }
}
