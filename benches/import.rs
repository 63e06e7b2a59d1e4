//! CSV import of a wide file into the buffer: values/s accepted (committed).
//!
//! `cargo bench --bench import` — 200,000 rows × 20 columns (4 M values), read
//! by the `file` source path (parse → groups → ring → SQLite).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use relais::buffer::Buffer;
use relais::config::{BufferConfig, Config};
use relais::ingest::Ingest;
use relais::parse::Mapper;
use relais::sources::SourceConfig;
use relais::sources::file::ingest::{LiveCounters, ingest_file};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.csv");
    let (rows, cols) = (200_000usize, 20usize);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        write!(f, "datetime").unwrap();
        for c in 0..cols {
            write!(f, ";col{c}").unwrap();
        }
        writeln!(f).unwrap();
        let t0 = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        for r in 0..rows {
            write!(f, "{}", (t0 + chrono::Duration::seconds(r as i64)).format("%Y-%m-%d %H:%M:%S")).unwrap();
            for c in 0..cols {
                write!(f, ";{:.4}", (r * 31 + c * 7) as f64 / 13.0).unwrap();
            }
            writeln!(f).unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let text = "[gateway]\nid = \"b\"\n[[source]]\nname = \"wide\"\ntype = \"file\"\nformat = \"csv\"\ndelimiter = \";\"\ntimestamp_column = \"datetime\"\ntimezone = \"Europe/Paris\"\n";
    let cfg = Config::parse(text, "bench.toml", dir.path()).unwrap();
    let SourceConfig::File(src) = cfg.sources.into_iter().next().unwrap() else { unreachable!() };
    for run in 0..3 {
        let data = dir.path().join(format!("data{run}"));
        let bcfg = BufferConfig { max_bytes: 8 << 30, ..Default::default() };
        let ingest = Arc::new(Ingest::new(bcfg.ring_capacity));
        let buffer = Buffer::open(&bcfg, &data, ingest.clone(), &[]).unwrap();
        let mut mapper = Mapper::new(&src.common.name, &src.common.device, &src.common.parse.tags);
        let t = Instant::now();
        let report = ingest_file(&path, &src.common.parse, &mut mapper, &ingest, None, 0, &LiveCounters::default(), None);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.samples, (rows * cols) as u64);
        println!(
            "run {run}: {} rows × {cols} columns ({:.1} MB) in {secs:.2} s: {:.0} values/s accepted, {:.0} rows/s",
            rows,
            size as f64 / 1e6,
            report.samples as f64 / secs,
            rows as f64 / secs
        );
        drop(buffer);
    }
}
