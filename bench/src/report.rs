//! The run report: built from the merged [`UacStats`], printed as a table and written as
//! the JSON object fixed by `LOADGEN_CONTRACT.md` (field names and nesting are the
//! contract; extra fields may be added, none renamed or removed). Also the progress line
//! and the process CPU time (getrusage).

use std::io::{self, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::engine::{ConnErrors, Failures, UacStats, UasStats};

/// Percentiles of one latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles {
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                count: 0,
            };
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailureCounts {
    pub timeout: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub status_6xx: u64,
    pub other: u64,
    /// Extra: the call's TCP connection was lost.
    pub connection: u64,
    /// Extra: the failing final responses by request and status (`"BYE 481": 3`).
    pub by_status: std::collections::BTreeMap<String, u64>,
}

impl From<&Failures> for FailureCounts {
    fn from(f: &Failures) -> Self {
        FailureCounts {
            timeout: f.timeout,
            status_4xx: f.status_4xx,
            status_5xx: f.status_5xx,
            status_6xx: f.status_6xx,
            other: f.other,
            connection: f.connection,
            by_status: f
                .by_status
                .iter()
                .map(|((request, code), n)| (format!("{request} {code}"), *n))
                .collect(),
        }
    }
}

/// Extra: TCP connections opened, and connection errors by reason (all 0 over UDP).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ConnectionReport {
    pub opened: u64,
    pub errors: ConnErrorCounts,
    /// With an in-process UAS (`run --uas`): the connections it accepted and the
    /// errors that closed them (e.g. `write_backlog` when the proxy stops reading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uas: Option<UasConnectionReport>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct UasConnectionReport {
    pub accepted: u64,
    pub rejected: u64,
    pub errors: ConnErrorCounts,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ConnErrorCounts {
    pub refused: u64,
    pub connect_timeout: u64,
    pub reset: u64,
    pub closed: u64,
    pub missing_content_length: u64,
    pub bad_content_length: u64,
    pub too_large: u64,
    pub write_backlog: u64,
    pub other: u64,
}

impl ConnErrorCounts {
    /// `refused 0, connect timeout 0, ...` for the table.
    fn describe(&self) -> String {
        format!(
            "refused {}, connect timeout {}, reset {}, closed {}, no Content-Length {}, \
             bad Content-Length {}, too large {}, write backlog {}, other {}",
            self.refused,
            self.connect_timeout,
            self.reset,
            self.closed,
            self.missing_content_length,
            self.bad_content_length,
            self.too_large,
            self.write_backlog,
            self.other
        )
    }
}

impl From<ConnErrors> for ConnErrorCounts {
    fn from(e: ConnErrors) -> Self {
        ConnErrorCounts {
            refused: e.refused,
            connect_timeout: e.connect_timeout,
            reset: e.reset,
            closed: e.closed,
            missing_content_length: e.missing_content_length,
            bad_content_length: e.bad_content_length,
            too_large: e.too_large,
            write_backlog: e.write_backlog,
            other: e.other,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct LatencyReport {
    pub invite_180: Percentiles,
    pub invite_200: Percentiles,
    pub bye_200: Percentiles,
    pub request_200: Percentiles,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
}

impl Cpu {
    /// This process's CPU time so far (every thread).
    pub fn of_process() -> Cpu {
        // SAFETY: getrusage only writes the struct we pass; an all-zero rusage is a
        // valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        if rc != 0 {
            return Cpu {
                user_s: 0.0,
                sys_s: 0.0,
            };
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu {
            user_s: secs(ru.ru_utime),
            sys_s: secs(ru.ru_stime),
        }
    }
}

/// The whole report; see `LOADGEN_CONTRACT.md`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    /// Extra: `udp` or `tcp`.
    pub transport: String,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub calls_started: u64,
    pub calls_ok: u64,
    pub calls_failed: u64,
    pub failures: FailureCounts,
    pub retransmissions: u64,
    pub latency_us: LatencyReport,
    pub cpu: Cpu,
    /// Extra: responses matching no live transaction.
    pub stray_responses: u64,
    /// Extra: datagrams that were not a readable SIP response.
    pub unparsable: u64,
    /// Extra: TCP connections and their errors.
    pub connections: ConnectionReport,
}

impl Report {
    /// `offered_rate` is 0 for a closed loop; `duration` runs from the first call start
    /// to the end of the last call.
    pub fn new(
        scenario: &str,
        target: &str,
        transport: &str,
        offered_rate: f64,
        duration: Duration,
        stats: &UacStats,
        cpu: Cpu,
    ) -> Report {
        let secs = duration.as_secs_f64();
        let done = stats.calls_ok + stats.calls_failed;
        Report {
            scenario: scenario.to_string(),
            target: target.to_string(),
            transport: transport.to_string(),
            offered_rate,
            achieved_rate: if secs > 0.0 { done as f64 / secs } else { 0.0 },
            duration_s: secs,
            calls_started: stats.calls_started,
            calls_ok: stats.calls_ok,
            calls_failed: stats.calls_failed,
            failures: (&stats.failures).into(),
            retransmissions: stats.retransmissions,
            latency_us: LatencyReport {
                invite_180: Percentiles::of(&stats.latency.invite_180),
                invite_200: Percentiles::of(&stats.latency.invite_200),
                bye_200: Percentiles::of(&stats.latency.bye_200),
                request_200: Percentiles::of(&stats.latency.request_200),
            },
            cpu,
            stray_responses: stats.stray_responses,
            unparsable: stats.unparsable,
            connections: ConnectionReport {
                opened: stats.connections_opened,
                errors: stats.connection_errors.into(),
                uas: None,
            },
        }
    }

    /// Adds the in-process UAS's connection counters (TCP runs with `--uas`).
    pub fn set_uas(&mut self, uas: &UasStats) {
        if self.transport == "udp" {
            return;
        }
        self.connections.uas = Some(UasConnectionReport {
            accepted: uas.connections_accepted,
            rejected: uas.connections_rejected,
            errors: uas.connection_errors.into(),
        });
    }

    pub fn to_json(&self) -> String {
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the human-readable table.
    pub fn write_table(&self, w: &mut impl Write) -> io::Result<()> {
        writeln!(
            w,
            "scenario {}  target {}  transport {}",
            self.scenario, self.target, self.transport
        )?;
        let offered = if self.offered_rate > 0.0 {
            format!("{:.1}/s", self.offered_rate)
        } else {
            "closed loop".to_string()
        };
        writeln!(
            w,
            "offered {offered}  achieved {:.1}/s  duration {:.2} s",
            self.achieved_rate, self.duration_s
        )?;
        writeln!(
            w,
            "calls started {}  ok {}  failed {}  (timeout {}, 4xx {}, 5xx {}, 6xx {}, other {}{})",
            self.calls_started,
            self.calls_ok,
            self.calls_failed,
            self.failures.timeout,
            self.failures.status_4xx,
            self.failures.status_5xx,
            self.failures.status_6xx,
            self.failures.other,
            if self.transport == "udp" {
                String::new()
            } else {
                format!(", connection {}", self.failures.connection)
            }
        )?;
        if !self.failures.by_status.is_empty() {
            let list: Vec<String> = self
                .failures
                .by_status
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            writeln!(w, "failed on status: {}", list.join(", "))?;
        }
        if self.transport != "udp" {
            writeln!(
                w,
                "connections opened {}  errors: {}",
                self.connections.opened,
                self.connections.errors.describe()
            )?;
            if let Some(u) = &self.connections.uas {
                writeln!(
                    w,
                    "UAS connections accepted {} rejected {}  errors: {}",
                    u.accepted,
                    u.rejected,
                    u.errors.describe()
                )?;
            }
        }
        writeln!(
            w,
            "retransmissions {}  stray responses {}  unparsable {}",
            self.retransmissions, self.stray_responses, self.unparsable
        )?;
        writeln!(
            w,
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "latency µs", "p50", "p90", "p99", "p99.9", "max", "count"
        )?;
        let l = &self.latency_us;
        for (name, p) in [
            ("INVITE→180", &l.invite_180),
            ("INVITE→200", &l.invite_200),
            ("BYE→200", &l.bye_200),
            ("request→200", &l.request_200),
        ] {
            if p.count == 0 {
                continue;
            }
            writeln!(
                w,
                "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                name, p.p50, p.p90, p.p99, p.p999, p.max, p.count
            )?;
        }
        writeln!(
            w,
            "cpu user {:.3} s  sys {:.3} s  ({:.1} µs per call)",
            self.cpu.user_s,
            self.cpu.sys_s,
            self.cpu_per_call_us()
        )
    }

    /// The generator's CPU (user + sys) per started call, in microseconds.
    pub fn cpu_per_call_us(&self) -> f64 {
        if self.calls_started == 0 {
            return 0.0;
        }
        (self.cpu.user_s + self.cpu.sys_s) * 1e6 / self.calls_started as f64
    }
}

/// The once-a-second progress line; `rate` is calls finished per second since the last.
pub fn progress_line(
    elapsed: Duration,
    rate: f64,
    started: u64,
    ok: u64,
    failed: u64,
    retrans: u64,
) -> String {
    format!(
        "[{:>6.1} s] {rate:>8.1}/s  started {started}  ok {ok}  failed {failed}  in flight {}  \
         retrans {retrans}",
        elapsed.as_secs_f64(),
        started.saturating_sub(ok + failed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_shape() {
        let mut stats = UacStats {
            calls_started: 10,
            calls_ok: 9,
            calls_failed: 1,
            retransmissions: 2,
            ..Default::default()
        };
        stats.failures.status_5xx = 1;
        stats.failures.by_status.insert(("INVITE", 503), 1);
        for v in [100, 200, 300] {
            stats.latency.invite_200.record(v).unwrap();
        }
        let cpu = Cpu {
            user_s: 0.5,
            sys_s: 0.25,
        };
        let r = Report::new(
            "call",
            "127.0.0.1:5060",
            "udp",
            1000.0,
            Duration::from_secs(2),
            &stats,
            cpu,
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["scenario"], "call");
        assert_eq!(v["target"], "127.0.0.1:5060");
        assert_eq!(v["offered_rate"], 1000.0);
        assert_eq!(v["achieved_rate"], 5.0);
        assert_eq!(v["duration_s"], 2.0);
        assert_eq!(v["calls_started"], 10);
        assert_eq!(v["calls_ok"], 9);
        assert_eq!(v["calls_failed"], 1);
        let f = v["failures"].as_object().unwrap();
        let mut keys: Vec<_> = f.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "by_status",
                "connection",
                "other",
                "status_4xx",
                "status_5xx",
                "status_6xx",
                "timeout"
            ]
        );
        assert_eq!(v["transport"], "udp");
        assert_eq!(v["connections"]["opened"], 0);
        assert_eq!(v["connections"]["errors"]["refused"], 0);
        assert_eq!(v["failures"]["status_5xx"], 1);
        assert_eq!(v["failures"]["by_status"]["INVITE 503"], 1);
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("failed on status: INVITE 503: 1"), "{table}");
        assert_eq!(v["retransmissions"], 2);
        for name in ["invite_180", "invite_200", "bye_200", "request_200"] {
            let h = &v["latency_us"][name];
            for k in ["p50", "p90", "p99", "p999", "max", "count"] {
                assert!(h[k].is_u64(), "{name}.{k}");
            }
        }
        assert_eq!(v["latency_us"]["invite_200"]["count"], 3);
        assert_eq!(v["latency_us"]["invite_200"]["p50"], 200);
        assert_eq!(v["latency_us"]["invite_200"]["max"], 300);
        assert_eq!(v["latency_us"]["invite_180"]["count"], 0);
        assert_eq!(v["cpu"]["user_s"], 0.5);
        assert_eq!(v["cpu"]["sys_s"], 0.25);
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("INVITE→200"));
        assert!(!table.contains("connections opened"), "{table}");
        assert!(!table.contains("INVITE→180"));
        assert_eq!(r.cpu_per_call_us(), 75_000.0);
    }

    #[test]
    fn progress_line_counts_calls_in_flight() {
        let l = progress_line(Duration::from_millis(2500), 99.5, 300, 250, 10, 3);
        assert_eq!(
            l,
            "[   2.5 s]     99.5/s  started 300  ok 250  failed 10  in flight 40  retrans 3"
        );
    }

    #[test]
    fn process_cpu_is_readable() {
        let c = Cpu::of_process();
        assert!(c.user_s >= 0.0 && c.sys_s >= 0.0);
    }

    #[test]
    fn tcp_report_counts_connection_errors_by_reason() {
        let mut stats = UacStats {
            calls_started: 3,
            calls_failed: 3,
            connections_opened: 1,
            ..Default::default()
        };
        stats.failures.connection = 3;
        stats.connection_errors.refused = 7;
        stats.connection_errors.missing_content_length = 1;
        let cpu = Cpu {
            user_s: 0.0,
            sys_s: 0.0,
        };
        let r = Report::new(
            "options",
            "127.0.0.1:5060",
            "tcp",
            0.0,
            Duration::ZERO,
            &stats,
            cpu,
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["transport"], "tcp");
        assert_eq!(v["failures"]["connection"], 3);
        assert_eq!(v["connections"]["opened"], 1);
        let e = v["connections"]["errors"].as_object().unwrap();
        assert_eq!(e.len(), 9);
        assert_eq!(e["refused"], 7);
        assert_eq!(e["missing_content_length"], 1);
        assert_eq!(e["reset"], 0);
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("other 0, connection 3)"), "{table}");
        assert!(
            table.contains("connections opened 1  errors: refused 7, connect timeout 0"),
            "{table}"
        );
        assert!(table.contains("no Content-Length 1,"), "{table}");
        assert!(!table.contains("UAS connections"), "{table}");
        assert!(v["connections"].get("uas").is_none());
        let mut uas = UasStats {
            connections_accepted: 2,
            ..Default::default()
        };
        uas.connection_errors.write_backlog = 1;
        let mut r = r;
        r.set_uas(&uas);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["connections"]["uas"]["accepted"], 2);
        assert_eq!(v["connections"]["uas"]["errors"]["write_backlog"], 1);
        let mut table = Vec::new();
        r.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("UAS connections accepted 2 rejected 0  errors: refused 0,"),
            "{table}"
        );
        assert!(table.contains("write backlog 1,"), "{table}");
    }
}
