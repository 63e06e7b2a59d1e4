//! Issue 9: the buffer under a wrong clock (item 8), a full disk (item 5)
//! and corruption (item 6).

use std::sync::atomic::Ordering;
use std::time::Duration;

use relais::config::BufferConfig;
use relais::model::{Sample, TagMeta, Timestamp, Value};

use crate::common::{buffer_with, eventually};

/// Issue 9 item 8: samples acquired while the clock read 1970 (no RTC, NTP
/// not answering yet) and not delivered (broker down) are kept by
/// `max_age = "7d"`: they are seconds old for the gateway, not 56 years.
#[tokio::test]
async fn samples_taken_before_a_clock_correction_are_not_aged_out() {
    let tb = buffer_with(BufferConfig { max_age: Duration::from_secs(7 * 86_400), ..Default::default() }, &["down"]);
    let m = TagMeta::new("d", "t", None);
    for i in 0..100 {
        // The gateway's clock at boot: 1970-01-01T00:01:40Z + i ms.
        tb.ingest.push(Sample::good(m.clone(), Value::I64(i), Timestamp(100_000_000_000 + i * 1_000_000))).await;
    }
    tb.ingest.barrier().await.unwrap();
    // Retention runs once a second: give it three turns.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let st = tb.buffer.stats();
    assert_eq!(st.dropped_total.load(Ordering::Relaxed), 0, "nothing aged out");
    assert_eq!(st.rows(), 100);
}

/// `max_age` still drops what the gateway has held longer than it, counted.
#[tokio::test]
async fn max_age_drops_what_the_gateway_held_longer() {
    let tb = buffer_with(BufferConfig { max_age: Duration::from_secs(1), ..Default::default() }, &["down"]);
    let m = TagMeta::new("d", "t", None);
    for i in 0..50 {
        tb.ingest.push(Sample::good(m.clone(), Value::I64(i), Timestamp::now())).await;
    }
    tb.ingest.barrier().await.unwrap();
    let st = tb.buffer.stats().clone();
    assert!(eventually(Duration::from_secs(6), || st.dropped_total.load(Ordering::Relaxed) == 50).await, "aged out after 1 s");
    assert_eq!(tb.buffer.cursor("down").unwrap().dropped(), 50);
}
