//! The SQLite buffer: acceptance, seq, cursors, retention caps (B27),
//! lock contention (B26), full database, corrupt file, data_dir lock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use relais::buffer::Buffer;
use relais::config::BufferConfig;
use relais::ingest::Ingest;
use relais::model::{Quality, Sample, TagMeta, Timestamp, Value};

use crate::common::{buffer_with, sample};

fn all_rows(b: &Buffer) -> Vec<Sample> {
    b.reader().unwrap().read_blocking(0, u64::MAX, 1_000_000).unwrap()
}

#[tokio::test]
async fn accepts_every_value_kind_with_strictly_increasing_seq() {
    let tb = buffer_with(BufferConfig::default(), &[]);
    let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
    assert!(base > 1_700_000_000_000_000, "a new buffer starts at the current time in µs, not at 1 ({base})");
    let m = TagMeta::new("dev", "t", Some("Cel"));
    let ts = Timestamp(1_764_410_073_120_000_001);
    let values = vec![
        Value::F64(79.34),
        Value::I64(i64::MIN),
        Value::U64(u64::MAX),
        Value::U64(9007199254740993),
        Value::Bool(true),
        Value::Str("PUMP-01".into()),
    ];
    for v in &values {
        tb.ingest.push(Sample::good(m.clone(), v.clone(), ts)).await;
    }
    tb.ingest.push(Sample::bad(m.clone(), "timeout: no response".into(), ts)).await;
    let last = tb.ingest.barrier().await.unwrap();
    assert_eq!(last, base + 7);
    let rows = all_rows(&tb.buffer);
    assert_eq!(rows.iter().map(|s| s.seq).collect::<Vec<_>>(), (base + 1..=base + 7).collect::<Vec<_>>());
    for (r, v) in rows.iter().zip(&values) {
        assert_eq!(&r.value, v);
        assert_eq!(r.quality, Quality::Good);
        assert_eq!(r.ts, ts, "ns timestamps survive");
        assert_eq!(r.meta.unit.as_deref(), Some("Cel"));
    }
    assert_eq!(rows[6].value, Value::Null);
    assert_eq!(rows[6].quality, Quality::Bad);
    assert_eq!(rows[6].reason.as_deref(), Some("timeout: no response"));
}

#[tokio::test]
async fn seq_continues_across_reopen_even_when_rows_were_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig::default();
    let m = TagMeta::new("d", "t", None);
    let base;
    {
        let ingest = std::sync::Arc::new(Ingest::new(1024));
        let b = Buffer::open(&cfg, dir.path(), ingest.clone(), &["s"]).unwrap();
        base = b.stats().last_seq.load(Ordering::Relaxed);
        assert_eq!(b.cursor("s").unwrap().get(), base, "a new sink starts just before the first row");
        for i in 0..10 {
            ingest.push(sample(&m, i as f64)).await;
        }
        assert_eq!(ingest.barrier().await, Some(base + 10));
        // The sink delivered everything: retention may delete all rows.
        b.cursor("s").unwrap().advance(base + 10);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(b.stats().rows(), 0, "delivered rows are deleted");
        b.close();
    }
    let ingest = std::sync::Arc::new(Ingest::new(1024));
    let b = Buffer::open(&cfg, dir.path(), ingest.clone(), &["s"]).unwrap();
    assert_eq!(b.cursor("s").unwrap().get(), base + 10, "cursor persisted");
    ingest.push(sample(&m, 1.0)).await;
    assert_eq!(ingest.barrier().await, Some(base + 11), "seq never goes back, even with an empty table");
    drop(b);
    // Deleting the buffer file never makes seq repeat.
    for f in ["buffer.db", "buffer.db-wal", "buffer.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let ingest = std::sync::Arc::new(Ingest::new(1024));
    let _b = Buffer::open(&cfg, dir.path(), ingest.clone(), &["s"]).unwrap();
    ingest.push(sample(&m, 2.0)).await;
    assert!(ingest.barrier().await.unwrap() > base + 11, "a new buffer starts above the old one");
}

#[tokio::test]
async fn b27_max_rows_drops_oldest_and_counts() {
    let cfg = BufferConfig { max_rows: 1000, ..Default::default() };
    let tb = buffer_with(cfg, &["mqtt"]);
    let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
    let m = TagMeta::new("d", "t", None);
    for i in 1..=1500 {
        tb.ingest.push(sample(&m, i as f64)).await;
    }
    tb.ingest.barrier().await;
    let rows = all_rows(&tb.buffer);
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows.first().unwrap().seq, base + 501);
    assert_eq!(rows.last().unwrap().seq, base + 1500);
    assert_eq!(rows.first().unwrap().value, Value::F64(501.0));
    assert_eq!(tb.buffer.stats().dropped_total.load(Ordering::Relaxed), 500);
}

#[tokio::test]
async fn max_bytes_keeps_the_file_bounded() {
    let cfg = BufferConfig { max_bytes: 1 << 20, batch_max: 1000, ..Default::default() };
    let tb = buffer_with(cfg, &["mqtt"]);
    let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
    let m = TagMeta::new("d", "t", None);
    let text = "x".repeat(200);
    for _ in 0..20_000 {
        tb.ingest.push(Sample::good(m.clone(), Value::Str(text.clone()), Timestamp::now())).await;
    }
    let last = tb.ingest.barrier().await.unwrap();
    assert_eq!(last, base + 20_000);
    let st = tb.buffer.stats();
    let used = st.bytes_used.load(Ordering::Relaxed);
    assert!(used <= 1 << 20, "live pages {used} above max_bytes");
    let dropped = st.dropped_total.load(Ordering::Relaxed);
    assert!(dropped > 10_000, "the oldest rows were dropped and counted ({dropped})");
    assert_eq!(st.rows() + dropped, 20_000, "every sample is either kept or counted as dropped");
    let rows = all_rows(&tb.buffer);
    assert_eq!(rows.last().unwrap().seq, base + 20_000, "the newest are kept");
}

/// A producer of garbage during a broker outage: quarantined records never
/// push undelivered samples out of a full buffer; the oldest quarantined
/// records go first.
#[tokio::test]
async fn quarantine_never_pushes_out_undelivered_samples() {
    let cfg = BufferConfig { max_bytes: 2 << 20, batch_max: 1000, ..Default::default() };
    let tb = buffer_with(cfg, &["mqtt"]);
    let m = TagMeta::new("d", "t", None);
    for i in 0..5_000 {
        tb.ingest.push(Sample::good(m.clone(), Value::F64(i as f64), Timestamp::now())).await;
    }
    tb.ingest.barrier().await;
    for i in 0..200 {
        let q = relais::parse::Quarantined {
            source: "bad".into(),
            origin: "http".into(),
            location: format!("record {i}"),
            reason: "parse_error: not JSON".into(),
            raw: "z".repeat(60 * 1024),
        };
        let g = relais::ingest::Group { samples: Vec::new(), quarantine: vec![q], progress: None, done: None, moved: None };
        tb.ingest.push_group(g).await;
    }
    tb.ingest.barrier().await;
    let st = tb.buffer.stats();
    assert_eq!(st.dropped_total.load(Ordering::Relaxed), 0, "no undelivered sample dropped for the quarantine");
    assert_eq!(st.rows(), 5_000);
    let c = rusqlite::Connection::open(tb.buffer.path()).unwrap();
    let n: i64 = c.query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0)).unwrap();
    assert!(n > 0 && n < 200, "the oldest quarantined records were deleted ({n} kept)");
    let newest: String = c.query_row("SELECT location FROM quarantine ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(newest, "record 199", "the newest are kept");
    let oldest: String = c.query_row("SELECT location FROM quarantine ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_ne!(oldest, "record 0", "the oldest went first");
    assert!(st.bytes_used.load(Ordering::Relaxed) <= 2 << 20);
}

#[tokio::test]
async fn a_batch_larger_than_the_cap_still_lands_its_newest_samples() {
    // One transaction bigger than 125 % of max_bytes hits SQLITE_FULL (the same
    // path as a full disk): the oldest part is dropped and counted, no crash.
    let cfg = BufferConfig { max_bytes: 1 << 20, batch_max: 100_000, ring_capacity: 200_000, ..Default::default() };
    let tb = buffer_with(cfg, &["mqtt"]);
    let m = TagMeta::new("d", "t", None);
    crate::common::logs();
    let text = "y".repeat(300);
    for _ in 0..20_000 {
        assert!(
            tb.ingest.try_push(relais::ingest::Entry::Sample(Sample::good(m.clone(), Value::Str(text.clone()), Timestamp::now()))).is_ok()
        );
    }
    tb.ingest.barrier().await;
    let st = tb.buffer.stats();
    let dropped = st.dropped_total.load(Ordering::Relaxed);
    assert!(dropped > 0);
    assert_eq!(st.rows() + dropped, 20_000, "kept + dropped = produced");
    let rows = all_rows(&tb.buffer);
    assert!(!rows.is_empty());
}

#[tokio::test]
async fn b26_database_locked_by_another_process_loses_nothing() {
    let tb = buffer_with(BufferConfig::default(), &[]);
    let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
    let path = tb.buffer.path().to_path_buf();
    let m = TagMeta::new("d", "t", None);
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        c.execute_batch("COMMIT").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 10 samples per 100 ms while the lock is held, and after.
    for i in 0..30 {
        tb.ingest.push(sample(&m, i as f64)).await;
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    holder.join().unwrap();
    let last = tokio::time::timeout(Duration::from_secs(5), tb.ingest.barrier()).await.unwrap().unwrap();
    assert_eq!(last, base + 30);
    let rows = all_rows(&tb.buffer);
    let values: Vec<f64> = rows.iter().map(|s| s.value.as_f64().unwrap()).collect();
    assert_eq!(values, (0..30).map(|i| i as f64).collect::<Vec<_>>(), "none lost, none duplicated, in order");
    assert!(tb.buffer.stats().commit_retries.load(Ordering::Relaxed) > 0, "the lock was really hit");
}

#[tokio::test]
async fn corrupt_file_is_moved_aside_and_seq_keeps_rising() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig::default();
    {
        let ingest = std::sync::Arc::new(Ingest::new(1024));
        let b = Buffer::open(&cfg, dir.path(), ingest.clone(), &[]).unwrap();
        ingest.push(sample(&TagMeta::new("d", "t", None), 1.0)).await;
        ingest.barrier().await;
        b.close();
    }
    std::fs::write(dir.path().join("buffer.db"), b"this is not a database at all, just garbage bytes".repeat(100)).unwrap();
    let _ = std::fs::remove_file(dir.path().join("buffer.db-wal"));
    let ingest = std::sync::Arc::new(Ingest::new(1024));
    let _b = Buffer::open(&cfg, dir.path(), ingest.clone(), &[]).unwrap();
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("buffer.db.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "the corrupt file is kept aside");
    ingest.push(sample(&TagMeta::new("d", "t", None), 2.0)).await;
    let seq = ingest.barrier().await.unwrap();
    assert!(seq > 1_700_000_000_000_000, "a new buffer continues above anything the old one issued ({seq})");
}

#[tokio::test]
async fn a_second_instance_on_the_same_data_dir_is_refused() {
    let tb = buffer_with(BufferConfig::default(), &[]);
    let err = Buffer::open(&BufferConfig::default(), tb.dir.path(), std::sync::Arc::new(Ingest::new(16)), &[]).unwrap_err();
    assert!(err.to_string().contains("in use by another relais"), "{err}");
}

#[tokio::test]
async fn a_full_ring_makes_producers_wait_and_counts_it() {
    let tb = buffer_with(BufferConfig { ring_capacity: 1024, ..Default::default() }, &[]);
    let base = tb.buffer.stats().last_seq.load(Ordering::Relaxed);
    let m = TagMeta::new("d", "t", None);
    let mut tasks = Vec::new();
    for p in 0..4 {
        let ingest = tb.ingest.clone();
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5000 {
                ingest.push(sample(&m, (p * 10_000 + i) as f64)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(tb.ingest.barrier().await, Some(base + 20_000), "nothing dropped");
    let rows = all_rows(&tb.buffer);
    // Per producer, order is preserved.
    for p in 0..4 {
        let mine: Vec<f64> = rows.iter().map(|s| s.value.as_f64().unwrap()).filter(|v| (*v as i64) / 10_000 == p).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "producer {p} out of order");
        assert_eq!(mine.len(), 5000);
    }
}

/// A tmpfs of `size` mounted for a test (root only); unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        let p = dir.join("fs");
        std::fs::create_dir_all(&p).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&p)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(p))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_keeps_acquiring_and_counts_every_drop() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(dir.path(), "3M") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    // max_bytes above the disk size: the disk fills first, as in the field.
    let cfg = BufferConfig { max_bytes: 64 << 20, ..Default::default() };
    let ingest = std::sync::Arc::new(Ingest::new(cfg.ring_capacity));
    let b = Buffer::open(&cfg, &disk.0, ingest.clone(), &["mqtt"]).unwrap();
    let m = TagMeta::new("d", "t", None);
    let text = "z".repeat(100);
    let t0 = std::time::Instant::now();
    let mut produced = 0u64;
    while t0.elapsed() < Duration::from_secs(3) {
        for _ in 0..500 {
            ingest.push(Sample::good(m.clone(), Value::Str(text.clone()), Timestamp::now())).await;
            produced += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pushed_for = t0.elapsed();
    assert!(pushed_for < Duration::from_secs(6), "producers were blocked by the full disk: {pushed_for:?}");
    tokio::time::timeout(Duration::from_secs(10), ingest.barrier()).await.expect("the writer keeps going");
    let st = b.stats();
    let (accepted, dropped) = (st.accepted_total.load(Ordering::Relaxed), st.dropped_total.load(Ordering::Relaxed));
    assert!(produced > 50_000, "enough to fill 3 MB ({produced})");
    assert!(dropped > 0, "drops are counted");
    assert!(accepted + dropped >= produced, "every sample accepted or counted as dropped: {accepted} + {dropped} < {produced}");
    // The newest sample is kept.
    let rows = b.reader().unwrap().read_blocking(0, u64::MAX, 10_000_000).unwrap();
    assert_eq!(rows.last().unwrap().seq, st.last_seq.load(Ordering::Relaxed));
    b.close();
    drop(disk);
}

#[tokio::test]
async fn a_sinks_live_lane_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig::default();
    let base;
    {
        let ingest = std::sync::Arc::new(Ingest::new(1024));
        let b = Buffer::open(&cfg, dir.path(), ingest.clone(), &["s"]).unwrap();
        base = b.stats().last_seq.load(Ordering::Relaxed);
        let c = b.cursor("s").unwrap();
        c.advance(base + 10);
        c.set_live(Some((base + 500, base + 620)));
        tokio::time::sleep(Duration::from_millis(400)).await;
        b.close();
    }
    let b = Buffer::open(&cfg, dir.path(), std::sync::Arc::new(Ingest::new(16)), &["s"]).unwrap();
    let c = b.cursor("s").unwrap();
    assert_eq!(c.get(), base + 10);
    assert_eq!(c.live(), Some((base + 500, base + 620)));
}
