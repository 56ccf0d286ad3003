//! Engine tests: a UAC wired to a UAS through an in-memory network with a fake clock,
//! a fixed one-way delay and seeded packet loss (the seed is printed on failure).

use super::*;

const UAS_ADDR: &str = "127.0.0.1:5060";

fn cfg(scenario: Scenario) -> UacConfig {
    UacConfig {
        scenario,
        target: UAS_ADDR.parse().unwrap(),
        ruri: format!("sip:uas@{UAS_ADDR}"),
        locals: (0..4)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 6000 + i)))
            .collect(),
        transport: Transport::Udp,
        rate: 100.0,
        concurrency: 10,
        max_calls: Some(100),
        duration: Duration::from_secs(60),
        hold: Duration::ZERO,
        timeout: DEFAULT_TIMEOUT,
        shard: 1,
        nonce: 0xfeed,
        max_in_flight: 10_000,
    }
}

struct Packet {
    at: Instant,
    to_uas: bool,
    local: usize,
    bytes: Vec<u8>,
}

/// UAC ↔ UAS over a fake network.
struct Net {
    uac: Uac,
    uas: Uas,
    t0: Instant,
    now: Instant,
    delay: Duration,
    loss_percent: u64,
    /// Drops every packet to the UAS (a dead peer).
    uas_down: bool,
    rng: u64,
    seed: u64,
    queue: VecDeque<Packet>,
    out: Outbox,
    max_in_flight_seen: usize,
    /// Start times of the calls (INVITE/OPTIONS/REGISTER first transmissions).
    starts: Vec<Duration>,
    call_ids: std::collections::HashSet<Vec<u8>>,
}

impl Net {
    fn new(c: UacConfig, seed: u64) -> Net {
        let t0 = Instant::now();
        Net {
            uas: Uas::new(&[UAS_ADDR.parse().unwrap()]),
            uac: Uac::new(c),
            t0,
            now: t0,
            delay: Duration::from_millis(1),
            loss_percent: 0,
            uas_down: false,
            rng: seed | 1,
            seed,
            queue: VecDeque::new(),
            out: Outbox::new(),
            max_in_flight_seen: 0,
            starts: Vec::new(),
            call_ids: Default::default(),
        }
    }

    fn lost(&mut self) -> bool {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100 < self.loss_percent
    }

    /// Moves the outbox into the network queue; `from_uac` says who wrote it.
    fn flush(&mut self, from_uac: bool) {
        let out = std::mem::take(&mut self.out);
        for (local, to, bytes) in out.iter() {
            if from_uac {
                assert_eq!(to, self.uac.config().target);
                if bytes.starts_with(b"INVITE")
                    || bytes.starts_with(b"OPTIONS")
                    || bytes.starts_with(b"REGISTER")
                {
                    let s = msg::summarize(bytes);
                    let cid = s.call_id.unwrap().to_vec();
                    // Count first transmissions only.
                    if self.call_ids.insert(cid) {
                        self.starts.push(self.now - self.t0);
                    }
                }
            }
            if self.lost() || (from_uac && self.uas_down) {
                continue;
            }
            let local = if from_uac {
                local
            } else {
                self.uac
                    .config()
                    .locals
                    .iter()
                    .position(|l| *l == to)
                    .unwrap()
            };
            self.queue.push_back(Packet {
                at: self.now + self.delay,
                to_uas: from_uac,
                local,
                bytes: bytes.to_vec(),
            });
        }
        self.out = out;
        self.out.clear();
    }

    /// Runs until the UAC is done; panics (with the seed) if it takes more than `limit`
    /// of fake time.
    fn run(&mut self, limit: Duration) {
        loop {
            self.uac.on_tick(self.now, &mut self.out);
            self.flush(true);
            self.uas.on_tick(self.now, &mut self.out);
            self.flush(false);
            self.max_in_flight_seen = self.max_in_flight_seen.max(self.uac.in_flight());
            if self.uac.is_done() {
                return;
            }
            let next_packet = self.queue.front().map(|p| p.at);
            let next = [
                next_packet,
                self.uac.next_deadline(),
                self.uas.next_deadline(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| panic!("stuck, seed {}", self.seed));
            self.now = self.now.max(next);
            assert!(
                self.now - self.t0 <= limit,
                "not done after {limit:?}, seed {}",
                self.seed
            );
            while self.queue.front().is_some_and(|p| p.at <= self.now) {
                let p = self.queue.pop_front().unwrap();
                if p.to_uas {
                    let from = self.uac.config().locals[p.local];
                    self.uas
                        .on_datagram(&p.bytes, from, 0, self.now, &mut self.out);
                    self.flush(false);
                } else {
                    let from = self.uac.config().target;
                    self.uac
                        .on_datagram(&p.bytes, from, p.local, self.now, &mut self.out);
                    self.flush(true);
                }
            }
        }
    }
}

#[test]
fn calls_complete_over_a_clean_network() {
    let mut c = cfg(Scenario::Call);
    c.max_calls = Some(50);
    let mut net = Net::new(c, 1);
    net.run(Duration::from_secs(10));
    let s = &net.uac.stats;
    assert_eq!(s.calls_started, 50);
    assert_eq!(s.calls_ok, 50);
    assert_eq!(s.calls_failed, 0);
    assert_eq!(s.retransmissions, 0);
    assert_eq!(s.stray_responses, 0);
    assert_eq!(s.unparsable, 0);
    // 2 ms round trip, recorded in µs.
    for h in [
        &s.latency.invite_180,
        &s.latency.invite_200,
        &s.latency.bye_200,
    ] {
        assert_eq!(h.len(), 50);
        assert_eq!(h.value_at_quantile(0.5), 2000);
    }
    assert_eq!(s.latency.request_200.len(), 0);
    assert_eq!(net.uas.stats.invite, 50);
    assert_eq!(net.uas.stats.ack, 50);
    assert_eq!(net.uas.stats.bye, 50);
    assert_eq!(net.uas.stats.unparsable, 0);
}

#[test]
fn options_and_register_complete() {
    for scenario in [Scenario::Options, Scenario::Register] {
        let mut net = Net::new(cfg(scenario), 2);
        net.run(Duration::from_secs(10));
        let s = &net.uac.stats;
        assert_eq!((s.calls_started, s.calls_ok, s.calls_failed), (100, 100, 0));
        assert_eq!(s.latency.request_200.len(), 100);
        assert_eq!(s.latency.invite_200.len(), 0);
        let u = &net.uas.stats;
        match scenario {
            Scenario::Options => assert_eq!(u.options, 100),
            _ => assert_eq!(u.register, 100),
        }
    }
}

#[test]
fn lossy_network_retransmits_and_accounts_every_call() {
    for seed in [3, 4, 5] {
        let mut c = cfg(Scenario::Call);
        c.max_calls = Some(300);
        c.rate = 300.0;
        let mut net = Net::new(c, seed);
        net.loss_percent = 20;
        net.run(Duration::from_secs(120));
        let s = &net.uac.stats;
        assert_eq!(s.calls_started, 300, "seed {seed}");
        assert_eq!(s.calls_ok + s.calls_failed, 300, "seed {seed}");
        assert_eq!(s.failures.total(), s.calls_failed, "seed {seed}");
        assert!(s.retransmissions > 30, "seed {seed}: {}", s.retransmissions);
        // Lost requests are retransmitted by the UAC, lost 200s to INVITE by the UAS
        // (Timer G), so only a transaction losing every one of its ~7 attempts fails.
        assert_eq!(s.failures.timeout, s.calls_failed, "seed {seed}");
        assert!(s.calls_ok >= 298, "seed {seed}: {:?}", s.failures);
        assert!(net.uas.stats.retransmissions > 0, "seed {seed}");
        assert_eq!(net.uac.in_flight(), 0);
    }
}

#[test]
fn dead_uas_times_out_after_timer_a_backoff() {
    let mut c = cfg(Scenario::Call);
    c.max_calls = Some(20);
    c.timeout = Duration::from_secs(4);
    let mut net = Net::new(c, 6);
    net.uas_down = true;
    net.run(Duration::from_secs(20));
    let s = &net.uac.stats;
    assert_eq!(s.calls_failed, 20);
    assert_eq!(s.failures.timeout, 20);
    // INVITE sent at 0, retransmitted at 0.5, 1.5 and 3.5 s, timed out at 4 s.
    assert_eq!(s.retransmissions, 60);
    assert_eq!(s.latency.invite_200.len(), 0);
}

#[test]
fn dead_uas_non_invite_backoff_caps_at_t2() {
    let mut c = cfg(Scenario::Options);
    c.max_calls = Some(1);
    c.timeout = Duration::from_secs(16);
    let mut net = Net::new(c, 7);
    net.uas_down = true;
    net.run(Duration::from_secs(20));
    // Sent at 0; retransmitted at 0.5, 1.5, 3.5, 7.5, 11.5, 15.5 (T2 = 4 s cap).
    assert_eq!(net.uac.stats.retransmissions, 6);
    assert_eq!(net.uac.stats.failures.timeout, 1);
}

#[test]
fn rate_paces_call_starts() {
    let mut c = cfg(Scenario::Options);
    c.max_calls = None;
    c.rate = 200.0;
    c.duration = Duration::from_secs(2);
    let mut net = Net::new(c, 8);
    net.run(Duration::from_secs(5));
    assert_eq!(net.uac.stats.calls_started, 400);
    assert_eq!(net.starts.len(), 400);
    for (i, t) in net.starts.iter().enumerate() {
        let ideal = Duration::from_micros(5000 * i as u64);
        assert!(
            t.abs_diff(ideal) < Duration::from_micros(10),
            "call {i} at {t:?}"
        );
    }
    let done = net.uac.finished_at().unwrap() - net.uac.started_at().unwrap();
    // The last call starts at 1.995 s and ends 2 ms later.
    assert_eq!(done, Duration::from_millis(1997));
}

#[test]
fn late_tick_still_starts_calls_scheduled_before_the_end() {
    let mut c = cfg(Scenario::Options);
    c.max_calls = None;
    c.rate = 1000.0;
    c.duration = Duration::from_millis(10);
    let mut uac = Uac::new(c);
    let mut out = Outbox::new();
    let t0 = Instant::now();
    uac.on_tick(t0, &mut out);
    // The next tick comes 1 ms after the end (a coarse timer wheel).
    uac.on_tick(t0 + Duration::from_millis(11), &mut out);
    assert_eq!(uac.stats.calls_started, 10);
    assert_eq!(out.len(), 10);
}

#[test]
fn closed_loop_keeps_concurrency_outstanding() {
    let mut c = cfg(Scenario::Call);
    c.rate = 0.0;
    c.concurrency = 7;
    c.max_calls = Some(70);
    c.hold = Duration::from_millis(100);
    let mut net = Net::new(c, 9);
    net.run(Duration::from_secs(10));
    assert_eq!(net.uac.stats.calls_ok, 70);
    assert_eq!(net.max_in_flight_seen, 7);
    // 10 waves of ~104 ms (INVITE 2 ms, hold 100 ms, BYE 2 ms).
    let done = net.uac.finished_at().unwrap() - net.t0;
    assert!(done >= Duration::from_millis(1000), "{done:?}");
    assert!(done < Duration::from_millis(1100), "{done:?}");
}

#[test]
fn hold_delays_the_bye() {
    let mut c = cfg(Scenario::Call);
    c.max_calls = Some(1);
    c.hold = Duration::from_secs(3);
    let mut net = Net::new(c, 10);
    net.run(Duration::from_secs(10));
    assert_eq!(net.uac.stats.calls_ok, 1);
    let done = net.uac.finished_at().unwrap() - net.t0;
    assert_eq!(done, Duration::from_millis(3004));
}

#[test]
fn error_response_fails_the_call_and_is_acked_in_its_transaction() {
    let mut c = cfg(Scenario::Call);
    c.max_calls = Some(1);
    let mut uac = Uac::new(c);
    let mut out = Outbox::new();
    let now = Instant::now();
    uac.on_tick(now, &mut out);
    assert_eq!(out.len(), 1);
    let (local, _, invite) = out.get(0).unwrap();
    let invite = invite.to_vec();
    let mut resp = Vec::new();
    write_response(
        &mut resp,
        &invite,
        b"503 Service Unavailable",
        Some(b"0123456789abcdef"),
        None,
    );
    out.clear();
    let from = UAS_ADDR.parse().unwrap();
    uac.on_datagram(&resp, from, local, now, &mut out);
    assert_eq!(uac.stats.failures.status_5xx, 1);
    assert_eq!(uac.stats.calls_failed, 1);
    let (_, _, ack) = out.get(0).unwrap();
    assert!(ack.starts_with(b"ACK "));
    let branch = |m: &[u8]| {
        let s = String::from_utf8_lossy(m).to_string();
        let i = s.find("branch=").unwrap();
        s[i..i + 48].to_string()
    };
    assert_eq!(branch(ack), branch(&invite));
    assert_eq!(msg::summarize(ack).to_tag, Some(&b"0123456789abcdef"[..]));
    // The same response again is stray: the call is over.
    uac.on_datagram(&resp, from, local, now, &mut out);
    assert_eq!(uac.stats.stray_responses, 1);
    assert!(
        uac.is_done() || {
            uac.on_tick(now, &mut out);
            uac.is_done()
        }
    );
}

#[test]
fn retransmitted_2xx_is_acked_again() {
    let mut c = cfg(Scenario::Call);
    c.max_calls = Some(1);
    c.hold = Duration::from_secs(1);
    let mut uac = Uac::new(c);
    let mut out = Outbox::new();
    let now = Instant::now();
    uac.on_tick(now, &mut out);
    let (local, _, invite) = out.get(0).unwrap();
    let invite = invite.to_vec();
    let mut ok = Vec::new();
    write_response(&mut ok, &invite, b"200 OK", Some(b"0123456789abcdef"), None);
    let from = UAS_ADDR.parse().unwrap();
    for _ in 0..2 {
        out.clear();
        uac.on_datagram(&ok, from, local, now, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out.get(0).unwrap().2.starts_with(b"ACK "));
    }
    assert_eq!(uac.stats.retransmissions, 1);
    assert_eq!(uac.stats.latency.invite_200.len(), 1);
}

#[test]
fn uas_answers_a_foreign_invite_statelessly() {
    let invite = b"INVITE sip:uas@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKproxy\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKuac\r\n\
        Record-Route: <sip:10.0.0.9;lr>\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:uas@x>\r\nCall-ID: c1@x\r\n\
        CSeq: 7 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n";
    let mut uas = Uas::new(&[UAS_ADDR.parse().unwrap()]);
    let mut out = Outbox::new();
    let from: SocketAddr = "10.0.0.9:5060".parse().unwrap();
    let now = Instant::now();
    uas.on_datagram(invite, from, 0, now, &mut out);
    uas.on_datagram(invite, from, 0, now, &mut out);
    assert_eq!(out.len(), 6);
    let codes: Vec<_> = out
        .iter()
        .map(|(_, to, m)| {
            assert_eq!(to, from);
            match msg::start_line(m) {
                Some(StartLine::Response { code }) => code,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(codes, [100, 180, 200, 100, 180, 200]);
    let ok = out.get(2).unwrap().2;
    let text = String::from_utf8_lossy(ok);
    assert!(text.contains(
        "Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKproxy\r\nVia: SIP/2.0/UDP 10.0.0.1:5070"
    ));
    assert!(text.contains("Record-Route: <sip:10.0.0.9;lr>\r\n"));
    assert!(text.contains("Contact: <sip:uas@127.0.0.1:5060>\r\n"));
    assert!(text.contains("CSeq: 7 INVITE\r\n"));
    let tag = msg::summarize(ok).to_tag.unwrap().to_vec();
    assert_eq!(msg::summarize(out.get(5).unwrap().2).to_tag, Some(&tag[..]));
    assert_eq!(msg::summarize(out.get(0).unwrap().2).to_tag, None);
    uas.on_datagram(b"SIP/2.0 200 OK\r\n\r\n", from, 0, now, &mut out);
    uas.on_datagram(
        b"INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n",
        from,
        0,
        now,
        &mut out,
    );
    assert_eq!(uas.stats.unparsable, 2);
    assert_eq!(out.len(), 6);
}

#[test]
fn uas_retransmits_its_200_until_the_ack() {
    let invite = b"INVITE sip:uas@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKuac\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:uas@x>\r\nCall-ID: g1@x\r\n\
        CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let ack = b"ACK sip:uas@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKack\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:uas@x>;tag=t\r\nCall-ID: g1@x\r\n\
        CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    let mut uas = Uas::new(&[UAS_ADDR.parse().unwrap()]);
    let mut out = Outbox::new();
    let from: SocketAddr = "10.0.0.1:5070".parse().unwrap();
    let t0 = Instant::now();
    uas.on_datagram(invite, from, 0, t0, &mut out);
    let ok = out.get(2).unwrap().2.to_vec();
    // A retransmitted INVITE does not add a second pending 200.
    uas.on_datagram(invite, from, 0, t0, &mut out);
    assert_eq!(uas.pending_2xx(), 1);
    out.clear();
    // Timer G: 0.5, 1.5, 3.5, 7.5 s (T1 doubling, then T2 = 4 s).
    let mut sent_at = Vec::new();
    while let Some(at) = uas.next_deadline() {
        if at - t0 > Duration::from_secs(8) {
            break;
        }
        uas.on_tick(at, &mut out);
        if !out.is_empty() {
            assert_eq!(out.get(0).unwrap().2, &ok[..]);
            sent_at.push(at - t0);
            out.clear();
        }
    }
    let ms: Vec<u128> = sent_at.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, [500, 1500, 3500, 7500]);
    uas.on_datagram(ack, from, 0, t0 + Duration::from_secs(8), &mut out);
    assert_eq!(uas.pending_2xx(), 0);
    uas.on_tick(t0 + Duration::from_secs(60), &mut out);
    assert!(out.is_empty());
    assert_eq!(uas.stats.retransmissions, 4);
    assert_eq!(uas.stats.ack_timeouts, 0);

    // Without an ACK the UAS gives up after 64·T1.
    uas.on_datagram(invite, from, 0, t0, &mut out);
    let mut now = t0;
    while let Some(at) = uas.next_deadline() {
        now = at;
        uas.on_tick(at, &mut out);
    }
    assert!(now - t0 >= Duration::from_secs(32));
    assert_eq!(uas.stats.ack_timeouts, 1);
    assert_eq!(uas.pending_2xx(), 0);
}

#[test]
fn slab_limit_fails_calls_as_other() {
    let mut c = cfg(Scenario::Options);
    c.max_calls = Some(5);
    c.rate = 1000.0;
    c.max_in_flight = 3;
    let mut uac = Uac::new(c);
    let mut out = Outbox::new();
    let t0 = Instant::now();
    uac.on_tick(t0, &mut out);
    uac.on_tick(t0 + Duration::from_millis(4), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(uac.stats.calls_started, 5);
    assert_eq!(uac.stats.calls_failed, 2);
    assert_eq!(uac.stats.failures.other, 2);
}

#[test]
fn in_dialog_requests_follow_contact_and_record_route() {
    let mut c = cfg(Scenario::Call);
    c.max_calls = Some(1);
    let mut uac = Uac::new(c);
    let mut out = Outbox::new();
    let now = Instant::now();
    uac.on_tick(now, &mut out);
    let (local, _, invite) = out.get(0).unwrap();
    let invite = invite.to_vec();
    // What a record-routing proxy pair relays back: the UAS copied both Record-Routes.
    let mut ok = Vec::new();
    write_response(
        &mut ok,
        &invite,
        b"200 OK",
        Some(b"0123456789abcdef"),
        Some(b"Contact: \"UAS\" <sip:uas@10.0.0.2:5080;transport=udp>;expires=60\r\n"),
    );
    let at = ok.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    ok.splice(
        at..at,
        b"Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\nRecord-Route: <sip:p0.example;lr>\r\n"
            .iter()
            .copied(),
    );
    out.clear();
    let from = UAS_ADDR.parse().unwrap();
    uac.on_datagram(&ok, from, local, now, &mut out);
    // hold 0: ACK then BYE at once.
    assert_eq!(out.len(), 2);
    for (i, method) in ["ACK", "BYE"].iter().enumerate() {
        let (_, to, m) = out.get(i).unwrap();
        assert_eq!(to, from, "sent to the target (the first proxy)");
        let text = String::from_utf8_lossy(m);
        let first_two: Vec<&str> = text.split("\r\n").take(2).collect();
        assert_eq!(
            first_two,
            [
                format!("{method} sip:uas@10.0.0.2:5080;transport=udp SIP/2.0").as_str(),
                "Route: <sip:p0.example;lr>, <sip:p1.example;lr>, <sip:p2.example;lr>",
            ]
        );
        let s = msg::summarize(m);
        assert_eq!(s.to_tag, Some(&b"0123456789abcdef"[..]));
    }
    // Without Record-Route: no Route header, the Contact is still the target.
    let mut c = cfg(Scenario::Call);
    c.max_calls = Some(1);
    let mut uac = Uac::new(c);
    out.clear();
    uac.on_tick(now, &mut out);
    let invite = out.get(0).unwrap().2.to_vec();
    let mut ok = Vec::new();
    write_response(
        &mut ok,
        &invite,
        b"200 OK",
        Some(b"0123456789abcdef"),
        Some(b"m: sip:uas@10.9.9.9\r\n"),
    );
    out.clear();
    uac.on_datagram(&ok, from, 0, now, &mut out);
    let bye = String::from_utf8_lossy(out.get(1).unwrap().2).to_string();
    assert!(
        bye.starts_with("BYE sip:uas@10.9.9.9 SIP/2.0\r\nVia: "),
        "{bye}"
    );
}

fn tcp_cfg(scenario: Scenario) -> UacConfig {
    UacConfig {
        transport: Transport::Tcp,
        ruri: format!("sip:uas@{UAS_ADDR};transport=tcp"),
        ..cfg(scenario)
    }
}

#[test]
fn tcp_calls_complete_without_retransmissions() {
    for scenario in [Scenario::Call, Scenario::Options] {
        let mut net = Net::new(tcp_cfg(scenario), 11);
        net.uas = Uas::new_stream(UAS_ADDR.parse().unwrap());
        net.run(Duration::from_secs(10));
        let s = &net.uac.stats;
        assert_eq!((s.calls_started, s.calls_ok, s.calls_failed), (100, 100, 0));
        assert_eq!(s.retransmissions, 0);
        assert_eq!(net.uas.stats.retransmissions, 0);
    }
}

#[test]
fn tcp_dead_uas_times_out_without_timer_a() {
    for scenario in [Scenario::Call, Scenario::Options] {
        let mut c = tcp_cfg(scenario);
        c.max_calls = Some(20);
        c.timeout = Duration::from_secs(4);
        let mut net = Net::new(c, 12);
        net.uas_down = true;
        net.run(Duration::from_secs(20));
        let s = &net.uac.stats;
        assert_eq!(s.calls_failed, 20);
        assert_eq!(s.failures.timeout, 20);
        // Each request was sent exactly once: no Timer A/E on a reliable transport.
        assert_eq!(s.retransmissions, 0);
        assert_eq!(net.call_ids.len(), 20);
        // Calls start every 10 ms and time out 4 s later.
        let done = net.uac.finished_at().unwrap() - net.t0;
        assert_eq!(done, Duration::from_millis(4190));
    }
}

#[test]
fn tcp_requests_name_tcp_and_the_uas_answers_on_the_connection() {
    let mut c = tcp_cfg(Scenario::Call);
    c.max_calls = Some(1);
    let mut uac = Uac::new(c);
    let mut uas = Uas::new_stream(UAS_ADDR.parse().unwrap());
    let mut out = Outbox::new();
    let now = Instant::now();
    uac.on_tick(now, &mut out);
    let (local, _, invite) = out.get(0).unwrap();
    let invite = invite.to_vec();
    let text = String::from_utf8_lossy(&invite);
    assert!(
        text.contains("\r\nVia: SIP/2.0/TCP 127.0.0.1:6000;"),
        "{text}"
    );
    assert!(text.contains(";transport=tcp>\r\n"), "{text}");
    out.clear();
    // Connection id 0x0003_0007 (the driver's opaque id), peer 10.0.0.1:40000.
    let peer: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    uas.on_datagram(&invite, peer, 0x0003_0007, now, &mut out);
    assert_eq!(out.len(), 3);
    for (conn, to, _) in out.iter() {
        assert_eq!((conn, to), (0x0003_0007, peer));
    }
    let ok = String::from_utf8_lossy(out.get(2).unwrap().2).to_string();
    assert!(
        ok.contains("\r\nContact: <sip:uas@127.0.0.1:5060;transport=tcp>\r\n"),
        "{ok}"
    );
    let _ = local;
}

#[test]
fn lost_connection_fails_its_calls_and_the_others_carry_on() {
    let mut c = tcp_cfg(Scenario::Options);
    c.max_calls = Some(8);
    c.rate = 1000.0;
    let mut uac = Uac::new(c);
    let mut out = Outbox::new();
    let t0 = Instant::now();
    // 4 calls (at 0, 1, 2, 3 ms), one per connection (round-robin).
    uac.on_tick(t0, &mut out);
    uac.on_tick(t0 + Duration::from_millis(3), &mut out);
    assert_eq!(uac.in_flight(), 4);
    let locals: Vec<usize> = out.iter().map(|(l, _, _)| l).collect();
    assert_eq!(locals, [0, 1, 2, 3]);
    uac.connection_lost(1);
    uac.connection_lost(1); // reported twice (reader and writer): counted once
    assert_eq!(uac.stats.failures.connection, 1);
    assert_eq!(uac.stats.calls_failed, 1);
    assert_eq!(uac.in_flight(), 3);
    // The next calls avoid connection 1.
    out.clear();
    uac.on_tick(t0 + Duration::from_millis(7), &mut out);
    let locals: Vec<usize> = out.iter().map(|(l, _, _)| l).collect();
    assert_eq!(locals, [0, 2, 3, 0]);
    // Every connection gone: calls in flight fail, nothing more starts, the run ends.
    for l in [0, 2, 3] {
        uac.connection_lost(l);
    }
    assert_eq!(uac.in_flight(), 0);
    assert_eq!(uac.stats.failures.connection, 8);
    out.clear();
    uac.on_tick(t0 + Duration::from_millis(20), &mut out);
    assert!(out.is_empty());
    assert!(uac.is_done());
    assert_eq!(uac.stats.calls_started, 8);
    assert_eq!(uac.stats.calls_failed, 8);
    assert_eq!(uac.stats.failures.total(), 8);
}

#[test]
fn no_connection_at_all_ends_the_run_without_starting_calls() {
    let mut c = tcp_cfg(Scenario::Call);
    c.locals.clear();
    let mut uac = Uac::new(c);
    let mut out = Outbox::new();
    uac.on_tick(Instant::now(), &mut out);
    assert!(out.is_empty());
    assert!(uac.is_done());
    assert_eq!(uac.stats.calls_started, 0);
}

#[test]
fn io_errors_map_to_connection_error_reasons() {
    use std::io::{Error, ErrorKind};
    let mut e = ConnErrors::default();
    for kind in [ErrorKind::ConnectionRefused, ErrorKind::TimedOut] {
        e.count(ConnError::of_connect(&Error::from(kind)));
    }
    for kind in [
        ErrorKind::ConnectionReset,
        ErrorKind::BrokenPipe,
        ErrorKind::PermissionDenied,
    ] {
        e.count(ConnError::of_io(&Error::from(kind)));
    }
    // A read time-out on an established connection is the peer gone, not a connect.
    assert_eq!(
        ConnError::of_io(&Error::from(ErrorKind::TimedOut)),
        ConnError::Reset
    );
    e.count(FrameError::MissingContentLength.into());
    e.count(FrameError::BadContentLength.into());
    e.count(FrameError::TooLarge.into());
    let want = ConnErrors {
        refused: 1,
        connect_timeout: 1,
        reset: 2,
        missing_content_length: 1,
        bad_content_length: 1,
        too_large: 1,
        other: 1,
        ..ConnErrors::default()
    };
    assert_eq!(e, want);
    assert_eq!(e.total(), 8);
    let mut sum = ConnErrors::default();
    sum.add(&e);
    sum.add(&e);
    assert_eq!(sum.reset, 4);
}
