//! Unit tests of the committed-data tap (`super`).

use super::*;
use crate::model::{Sample, TagMeta, Timestamp, Value};

fn batch(first: u64, n: usize) -> Vec<Record> {
    let m = TagMeta::new("d", "t", None);
    (0..n)
        .map(|i| {
            let mut s = Sample::good(m.clone(), Value::I64(i as i64), Timestamp(0));
            s.seq = first + i as u64;
            Record::Sample(s)
        })
        .collect()
}

#[test]
fn in_order_then_exact_loss_when_behind() {
    let tap = Arc::new(Tap::new(100));
    let mut sub = tap.subscribe();
    tap.publish(101, 110, 10, &mut batch(101, 10));
    let t = sub.try_recv();
    assert_eq!(t.records().map(|r| r.seq()).collect::<Vec<_>>(), (101..=110).collect::<Vec<_>>());
    assert_eq!(t.missed_samples, 0);
    // Fall behind by more than the tap holds.
    let mut next = 111;
    for _ in 0..(TAP_RECORDS / 1000 + 3) {
        tap.publish(next, next + 999, 1000, &mut batch(next, 1000));
        next += 1000;
    }
    let t = sub.try_recv();
    let held: u64 = t.records().count() as u64;
    assert_eq!(t.missed_samples + held, next - 111, "every sample is either delivered or counted missed");
    assert_eq!(t.missed_range.unwrap().0, 111);
    assert_eq!(t.records().next().unwrap().seq(), t.missed_range.unwrap().1 + 1);
    assert!(sub.try_recv().chunks.is_empty());
}

#[test]
fn range_serves_recent_records_only() {
    let tap = Arc::new(Tap::new(0));
    let _sub = tap.subscribe();
    tap.publish(1, 5, 5, &mut batch(1, 5));
    tap.publish(6, 9, 4, &mut batch(6, 4));
    let c = tap.range(3, 9, 100).unwrap();
    let seqs: Vec<u64> = c.iter().flat_map(|c| c.records().iter().map(|r| r.seq())).collect();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8, 9]);
    let c = tap.range(3, 9, 3).unwrap();
    assert_eq!(c.iter().map(|c| c.records().len()).sum::<usize>(), 3);
    assert!(tap.range(9, 12, 10).is_none(), "nothing committed after 9 yet");
}

#[test]
fn a_hold_alone_keeps_the_newest_hold_records_a_subscriber_all() {
    let tap = Arc::new(Tap::new(0));
    let hold = tap.hold();
    let mut next = 1;
    for _ in 0..(HOLD_RECORDS / 1000 + 3) {
        tap.publish(next, next + 999, 1000, &mut batch(next, 1000));
        next += 1000;
    }
    let last = next - 1;
    assert!(tap.range(last - HOLD_RECORDS as u64 + 1000, last, 10).is_some(), "the newest records are held");
    assert!(tap.range(0, last, 10).is_none(), "a hold keeps about HOLD_RECORDS, not TAP_RECORDS");
    let _sub = tap.subscribe();
    for _ in 0..(HOLD_RECORDS / 1000 + 3) {
        tap.publish(next, next + 999, 1000, &mut batch(next, 1000));
        next += 1000;
    }
    assert!(tap.range(last, next - 1, 10).is_some(), "with a subscriber the tap keeps up to TAP_RECORDS");
    drop(hold);
}

#[test]
fn nothing_kept_without_subscribers_but_loss_is_counted() {
    let tap = Arc::new(Tap::new(0));
    tap.publish(1, 5, 5, &mut batch(1, 5));
    assert!(tap.range(0, 5, 10).is_none());
    let mut sub = tap.subscribe();
    tap.publish(6, 7, 2, &mut batch(6, 2));
    assert_eq!(sub.try_recv().records().count(), 2);
}

#[test]
fn a_subscriber_that_keeps_up_costs_hold_records_a_slow_one_keeps_its_unread() {
    let tap = Arc::new(Tap::new(0));
    let mut fast = tap.subscribe();
    let mut next = 1;
    for _ in 0..(HOLD_RECORDS / 1000 + 10) {
        tap.publish(next, next + 999, 1000, &mut batch(next, 1000));
        next += 1000;
        assert_eq!(fast.try_recv().records().count(), 1000);
    }
    let held = tap.ring.lock().unwrap().held;
    assert!(held <= HOLD_RECORDS + 1000, "a permanent subscriber that keeps up holds {held} records, not TAP_RECORDS");
    assert!(held + 1000 > HOLD_RECORDS, "the sink lanes' window stays: {held}");
    // A slow subscriber: what it has not read is kept (up to TAP_RECORDS).
    let mut slow = tap.subscribe();
    let from = next;
    for _ in 0..20 {
        tap.publish(next, next + 999, 1000, &mut batch(next, 1000));
        next += 1000;
        fast.try_recv();
    }
    let t = slow.try_recv();
    assert_eq!(t.missed_samples, 0, "nothing the slow subscriber had not read was evicted");
    assert_eq!(t.records().next().unwrap().seq(), from);
    assert_eq!(t.records().count() as u64, next - from);
    drop(slow);
    tap.publish(next, next + 999, 1000, &mut batch(next, 1000));
    assert!(tap.ring.lock().unwrap().held <= HOLD_RECORDS + 1000, "a dropped subscriber no longer holds memory");
}
