//! JSON Lines over HTTP: samples/s accepted at 1, 10 and 100 concurrent
//! clients, each posting bodies of 100 lines × 10 fields and waiting for the
//! 200 (which comes after the commit).
//!
//! `cargo bench --bench http_ingest`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use relais::app::{Gateway, RunOptions};
use relais::config::Config;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let text = format!(
            "[gateway]\nid = \"b\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n[buffer]\nmax_bytes = \"8GiB\"\n\
             [[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nformat = \"jsonl\"\nmax_concurrent = 1000\ntimestamp_path = \"ts\"\n",
            dir.path().join("data").display()
        );
        let cfg = Config::parse(&text, "bench.toml", dir.path()).unwrap();
        let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
        let mut body = String::new();
        for i in 0..100 {
            body.push_str(&format!("{{\"ts\":\"2026-01-05T10:00:{:02}.{:03}Z\"", i % 60, i));
            for f in 0..10 {
                body.push_str(&format!(",\"f{f}\":{}.{}", i * f, f));
            }
            body.push_str("}\n");
        }
        let body = Arc::new(body);
        let url = format!("http://127.0.0.1:{port}/ingest/lab");
        for clients in [1usize, 10, 100] {
            let done = Arc::new(AtomicU64::new(0));
            let stop = Instant::now() + Duration::from_secs(8);
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (body, url, done) = (body.clone(), url.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    let http = reqwest::Client::new();
                    while Instant::now() < stop {
                        let r = http.post(&url).header("content-type", "application/x-ndjson").body(body.as_str().to_string()).send().await;
                        if let Ok(r) = r
                            && r.status() == 200
                        {
                            done.fetch_add(1000, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            let secs = t.elapsed().as_secs_f64();
            println!("{clients:>3} clients: {:>8.0} samples/s accepted ({:.0} requests/s)", done.load(Ordering::Relaxed) as f64 / secs, done.load(Ordering::Relaxed) as f64 / 1000.0 / secs);
        }
        gw.shutdown().await.unwrap();
    });
}
