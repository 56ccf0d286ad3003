//! UDP round trips on one shard (`cores`: multishot recvmsg into the buffer ring +
//! batched sendmsg) against a blocking recvmmsg/sendmmsg echo loop, in the same run.
//!
//! A client thread keeps a window of datagrams in flight to an echo server on loopback
//! and measures the time for `iters` round trips. Both servers echo on one thread.
//! Run: `cargo bench -p ringsip-bench --bench udp_loop`.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WINDOW: u64 = 16;
const PAYLOAD: usize = 400;

/// Sends `iters` datagrams with at most `WINDOW` outstanding; returns the elapsed time.
fn round_trips(client: &UdpSocket, server: SocketAddr, iters: u64) -> Duration {
    let msg = [0x5au8; PAYLOAD];
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut received = 0u64;
    while received < iters {
        while sent < iters && sent - received < WINDOW {
            if client.send_to(&msg, server).is_ok() {
                sent += 1;
            }
        }
        match client.recv_from(&mut buf) {
            Ok(_) => received += 1,
            // A lost datagram: re-send to keep the window full.
            Err(_) => sent = received,
        }
    }
    start.elapsed()
}

fn client_for(server: SocketAddr) -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("client time-out");
    let _ = c.connect(server);
    c
}

/// The blocking baseline: recvmmsg a batch, sendmmsg it back, on one thread.
fn blocking_server(stop: Arc<AtomicBool>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("baseline socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("baseline time-out");
    let addr = sock.local_addr().expect("baseline addr");
    std::thread::spawn(move || {
        const BATCH: usize = 32;
        let fd = sock.as_raw_fd();
        let mut bufs = vec![[0u8; 2048]; BATCH];
        // The arrays below are handed to recvmmsg/sendmmsg; all stay alive for the
        // duration of each call and their lengths match BATCH.
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        while !stop.load(Ordering::Relaxed) {
            for i in 0..BATCH {
                iovs[i].iov_len = 2048;
                hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                hdrs[i].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every header points at a live name and iovec of this thread.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                continue;
            }
            for i in 0..n as usize {
                iovs[i].iov_len = hdrs[i].msg_len as usize;
            }
            // SAFETY: the first n headers were filled by recvmmsg and point at live buffers.
            unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as u32, 0) };
        }
    });
    addr
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_round_trip");
    g.throughput(Throughput::Elements(1));

    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let rt = cores::start(
        cores::Config {
            cpus: Some(vec![0]),
            ..cores::Config::default()
        },
        move |_| {
            let sock = cores::UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), true)?;
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(sock.local_addr());
            }
            sock.recv_with(|s, data, peer| {
                let _ = s.send_to(data, peer);
            })
        },
    )
    .expect("start cores");
    let shard_addr = rx.recv().expect("shard address");
    let client = client_for(shard_addr);
    g.bench_function(format!("cores_{}", rt.backend()), |b| {
        b.iter_custom(|iters| round_trips(&client, shard_addr, iters))
    });
    rt.shutdown();

    let stop = Arc::new(AtomicBool::new(false));
    let base_addr = blocking_server(stop.clone());
    let client = client_for(base_addr);
    g.bench_function("blocking_recvmmsg_sendmmsg", |b| {
        b.iter_custom(|iters| round_trips(&client, base_addr, iters))
    });
    stop.store(true, Ordering::Relaxed);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
