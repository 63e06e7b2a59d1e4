//! Read planner: field cases B06 and B07, holes, splitting after exceptions.

use relais::sources::modbus::planner::{Limits, ReadRequest, TagSpan, plan, split};
use relais::sources::modbus::types::Table;

fn regs(addrs: &[(u16, u16)]) -> Vec<TagSpan> {
    addrs.iter().enumerate().map(|(i, (a, n))| TagSpan { index: i, table: Table::Holding, address: *a, count: *n }).collect()
}

fn shape(reqs: &[ReadRequest]) -> Vec<(u16, u16)> {
    reqs.iter().map(|r| (r.start, r.count)).collect()
}

#[test]
fn b07_347_registers_default_limit() {
    let tags = regs(&(0..347).map(|a| (a, 1)).collect::<Vec<_>>());
    let reqs = plan(&tags, &Limits::default()).unwrap();
    assert_eq!(shape(&reqs), vec![(0, 125), (125, 125), (250, 97)]);
    assert!(reqs.iter().all(|r| r.count <= 125));
    let served: usize = reqs.iter().map(|r| r.tags.len()).sum();
    assert_eq!(served, 347, "every tag is served exactly once");
}

#[test]
fn b07_device_limit_40_never_splits_a_32_bit_tag() {
    let tags = regs(&(0..347).map(|a| (a, 1)).collect::<Vec<_>>());
    let limits = Limits { max_registers: 40, ..Limits::default() };
    let reqs = plan(&tags, &limits).unwrap();
    let mut expect = vec![];
    for i in 0..8 {
        expect.push((i * 40, 40));
    }
    expect.push((320, 27));
    assert_eq!(shape(&reqs), expect);
    // 32-bit tags at odd alignment: a request ends before a tag rather than cutting it.
    let tags = regs(&(0..30).map(|i| (1 + 2 * i, 2)).collect::<Vec<_>>());
    let reqs = plan(&tags, &Limits { max_registers: 5, ..Limits::default() }).unwrap();
    for r in &reqs {
        assert!(r.count <= 5);
        for t in &r.tags {
            let tag = tags[*t];
            assert!(tag.address >= r.start && tag.end() <= r.start as u32 + r.count as u32, "tag {tag:?} split by {r:?}");
        }
    }
}

#[test]
fn b06_sixteen_bit_tags_share_one_request() {
    let tags: Vec<TagSpan> = (0..16).map(|i| TagSpan { index: i, table: Table::Holding, address: 228, count: 1 }).collect();
    let reqs = plan(&tags, &Limits::default()).unwrap();
    assert_eq!(shape(&reqs), vec![(228, 1)]);
    assert_eq!(reqs[0].tags.len(), 16);
}

#[test]
fn holes_tables_and_bits() {
    // A hole of 10 is bridged by default, 11 is not.
    let reqs = plan(&regs(&[(0, 2), (12, 1), (24, 1)]), &Limits::default()).unwrap();
    assert_eq!(shape(&reqs), vec![(0, 13), (24, 1)]);
    // Tables never mix; coils merge up to 2000 bits.
    let mut tags = vec![TagSpan { index: 0, table: Table::Input, address: 0, count: 1 }];
    tags.extend((0..2500).map(|i| TagSpan { index: i as usize + 1, table: Table::Coil, address: i, count: 1 }));
    let reqs = plan(&tags, &Limits::default()).unwrap();
    let coil: Vec<_> = reqs.iter().filter(|r| r.table == Table::Coil).map(|r| (r.start, r.count)).collect();
    assert_eq!(coil, vec![(0, 2000), (2000, 500)]);
    assert_eq!(reqs.iter().filter(|r| r.table == Table::Input).count(), 1);
    // A tag wider than the limit cannot be planned.
    let err = plan(&regs(&[(0, 4)]), &Limits { max_registers: 3, ..Limits::default() }).unwrap_err();
    assert_eq!(err.limit, 3);
}

#[test]
fn split_cuts_at_holes_then_in_halves() {
    // Field case B09 layout: A = 1455..=1461 (7 × i16), B = 1466..=1469 (4 tags), C = 1500..=1503.
    let mut spans: Vec<(u16, u16)> = (1455..=1461).map(|a| (a, 1)).collect();
    spans.extend((1466..=1469).map(|a| (a, 1)));
    spans.extend((1500..=1503).map(|a| (a, 1)));
    let tags = regs(&spans);
    let reqs = plan(&tags, &Limits::default()).unwrap();
    assert_eq!(shape(&reqs), vec![(1455, 15), (1500, 4)], "A and B merged over a hole of 4");
    let parts = split(&reqs[0], &tags);
    assert_eq!(shape(&parts), vec![(1455, 7), (1466, 4)], "split at the hole first");
    let halves = split(&parts[1], &tags);
    assert_eq!(shape(&halves), vec![(1466, 2), (1468, 2)]);
    let single = split(&split(&halves[0], &tags)[0], &tags);
    assert_eq!(shape(&single), vec![(1466, 1)], "a single tag cannot be split further");
}
