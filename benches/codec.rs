//! Pure cores: register decoding and the read planner.
//!
//! `cargo bench --bench codec`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relais::sources::modbus::decode::decode;
use relais::sources::modbus::planner::{Limits, TagSpan, plan};
use relais::sources::modbus::types::{ByteOrder, DataType, Table};
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let words: Vec<u16> = (0..1000u16).map(|i| i.wrapping_mul(7919)).collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(250));
    for (name, ty, order) in [
        ("f32_CDAB", DataType::F32, ByteOrder::CDAB),
        ("u64_ABCD", DataType::U64, ByteOrder::ABCD),
        ("i16", DataType::I16, ByteOrder::ABCD),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for i in 0..250 {
                    black_box(decode(&words[i * 4..i * 4 + 4], ty, order, None).unwrap());
                }
            })
        });
    }
    g.finish();
    let tags: Vec<TagSpan> =
        (0..3000u16).map(|i| TagSpan { index: i as usize, table: Table::Holding, address: i * 2 + (i % 7), count: 2 }).collect();
    let mut g = c.benchmark_group("planner");
    g.throughput(Throughput::Elements(tags.len() as u64));
    g.bench_function("3000_tags", |b| b.iter(|| black_box(plan(&tags, &Limits::default()).unwrap())));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
