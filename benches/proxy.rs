//! The fault proxy with no toxic (issue 13: "no added latency worth
//! measuring", < 50 µs at p99): request/response round trips of a 12-byte
//! Modbus-sized request to an echo server, directly and through
//! `relais::proxy::Proxy`. Criterion measures the means; then 20,000 round
//! trips each way, interleaved in blocks of 1,000, give p50/p99/max and the
//! added p50/p99 (proxy minus direct), printed at the end.
//!
//! `cargo bench --bench proxy`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use relais::proxy::{Protocol, Proxy};

/// Round trips per way for the percentiles.
const SAMPLES: usize = 20_000;

fn echo(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                s.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    })
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn round_trip(s: &mut TcpStream) {
    let req = [0u8, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1];
    let mut got = [0u8; 12];
    s.write_all(&req).unwrap();
    s.read_exact(&mut got).unwrap();
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn proxy(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let upstream = echo(&rt);
    let p = rt.block_on(Proxy::start("127.0.0.1:0".parse().unwrap(), upstream.to_string(), Protocol::Modbus, 0)).unwrap();
    let mut direct = client(upstream);
    let mut via = client(p.local_addr());
    for _ in 0..1000 {
        round_trip(&mut direct);
        round_trip(&mut via);
    }
    let mut g = c.benchmark_group("proxy_round_trip");
    g.bench_function("direct", |b| b.iter(|| round_trip(&mut direct)));
    g.bench_function("through_proxy_no_toxic", |b| b.iter(|| round_trip(&mut via)));
    g.finish();

    let (mut d, mut v) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for _ in 0..SAMPLES / 1000 {
        for (s, out) in [(&mut direct, &mut d), (&mut via, &mut v)] {
            for _ in 0..1000 {
                let t0 = Instant::now();
                round_trip(s);
                out.push(t0.elapsed());
            }
        }
    }
    d.sort_unstable();
    v.sort_unstable();
    let us = |x: Duration| x.as_secs_f64() * 1e6;
    println!("\nround trip, {SAMPLES} each (µs):      p50      p99      max");
    println!("  direct                      {:8.1} {:8.1} {:8.1}", us(pct(&d, 0.5)), us(pct(&d, 0.99)), us(pct(&d, 1.0)));
    println!("  through the proxy, no toxic {:8.1} {:8.1} {:8.1}", us(pct(&v, 0.5)), us(pct(&v, 0.99)), us(pct(&v, 1.0)));
    println!(
        "  added by the proxy          {:8.1} {:8.1}   (target: p99 < 50 µs)",
        us(pct(&v, 0.5)) - us(pct(&d, 0.5)),
        us(pct(&v, 0.99)) - us(pct(&d, 0.99))
    );
    drop(p);
}

criterion_group!(benches, proxy);
criterion_main!(benches);
