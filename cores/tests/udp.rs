//! UDP through the shard: echo via multishot receive + batched send, re-arm of the
//! multishot receive after the provided buffers run out, connected UDP.

mod common;

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::sync::mpsc;
use std::time::Duration;

use common::{config, BACKENDS, HANG};
use cores::{AsyncDatagram, Backend, ConnectedUdp, UdpSocket};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts a one-shard echo server; returns the runtime and the server address.
fn echo_server(cfg: cores::Config, stall_first_ms: u64) -> (cores::Runtime, SocketAddr) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let rt = cores::start(cfg, move |_| {
        let sock = UdpSocket::bind(loopback(), true)?;
        let _ = tx.lock().unwrap().send(sock.local_addr());
        let mut first = true;
        sock.recv_with(move |s, data, peer| {
            if first && stall_first_ms > 0 {
                first = false;
                // Deliberately stall the shard so the flood fills every provided buffer.
                std::thread::sleep(Duration::from_millis(stall_first_ms));
            }
            let _ = s.send_to(data, peer);
        })?;
        Ok(())
    })
    .expect("start");
    let addr = rx.recv_timeout(HANG).expect("server address");
    (rt, addr)
}

#[test]
fn udp_echo_through_the_shard() {
    for backend in BACKENDS {
        let (rt, addr) = echo_server(config(backend, 1), 0);
        let client = StdUdp::bind(loopback()).unwrap();
        client.set_read_timeout(Some(HANG)).unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..200u32 {
            let msg = format!("datagram {i} {}", "x".repeat((i % 50) as usize));
            client.send_to(msg.as_bytes(), addr).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, addr, "{backend:?}");
            assert_eq!(&buf[..n], msg.as_bytes(), "{backend:?}");
        }
        let st = rt.shards()[0].stats();
        assert_eq!(st.udp_received, 200, "{backend:?}");
        assert_eq!(st.udp_sent, 200, "{backend:?}");
        assert_eq!(st.udp_send_errors, 0, "{backend:?}");
        rt.shutdown();
    }
}

#[test]
fn multishot_receive_rearms_after_buffer_exhaustion() {
    for backend in BACKENDS {
        let mut cfg = config(backend, 1);
        cfg.udp_buffers = 4;
        let (rt, addr) = echo_server(cfg, 100);
        let client = StdUdp::bind(loopback()).unwrap();
        // Flood while the shard is stalled in its first handler call.
        for i in 0..64u32 {
            client.send_to(&i.to_be_bytes(), addr).unwrap();
        }
        // After the flood, the socket must still deliver: ping until an echo of the
        // ping itself comes back.
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        let mut got_ping = false;
        for _ in 0..150 {
            client.send_to(b"ping", addr).unwrap();
            while let Ok((n, _)) = client.recv_from(&mut buf) {
                if &buf[..n] == b"ping" {
                    got_ping = true;
                    break;
                }
            }
            if got_ping {
                break;
            }
        }
        assert!(got_ping, "{backend:?}: no echo after the flood");
        let st = rt.shards()[0].stats();
        assert!(st.udp_received >= 5, "{backend:?}: {st:?}");
        if backend == Backend::IoUring {
            assert!(
                st.udp_enobufs >= 1,
                "{backend:?}: buffers never ran out: {st:?}"
            );
            assert!(st.udp_rearms >= 1, "{backend:?}: never re-armed: {st:?}");
        }
        rt.shutdown();
    }
}

#[test]
fn connected_udp_sends_and_receives() {
    for backend in BACKENDS {
        let peer = StdUdp::bind(loopback()).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            peer.set_read_timeout(Some(HANG)).unwrap();
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            buf[..n].reverse();
            peer.send_to(&buf[..n], from).unwrap();
        });
        let got = common::run(backend, move || {
            Box::pin(async move {
                let mut s = ConnectedUdp::connect(peer_addr).unwrap();
                let sent = s.send(b"abcdef").await.unwrap();
                let mut buf = [0u8; 3];
                // Truncated to the caller's buffer.
                let n = s.recv(&mut buf).await.unwrap();
                (sent, buf[..n].to_vec())
            })
        });
        echo.join().unwrap();
        assert_eq!(got, (6, b"fed".to_vec()), "{backend:?}");
    }
}
