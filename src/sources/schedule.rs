//! Periodic schedules shared by the polling sources (Modbus, OPC UA polls).

use std::time::Duration;

use tokio::time::Instant;

/// Moves `next_due` to the next tick after a cycle. A cycle that overran
/// skips the missed ticks rather than bursting to catch up; returns how many
/// were skipped (counted as overruns).
pub fn advance(next_due: &mut Instant, interval: Duration) -> u64 {
    *next_due += interval;
    let now = Instant::now();
    if *next_due > now {
        return 0;
    }
    let behind = now - *next_due;
    let skipped = (behind.as_nanos() / interval.as_nanos().max(1) + 1) as u64;
    *next_due += interval * skipped as u32;
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn skips_missed_ticks() {
        let iv = Duration::from_millis(100);
        let mut due = Instant::now();
        assert_eq!(advance(&mut due, iv), 0);
        tokio::time::advance(Duration::from_millis(350)).await;
        // The cycle due at 100 ms ran until 350 ms: the ticks at 200 and
        // 300 ms are skipped, the next is at 400 ms.
        assert_eq!(advance(&mut due, iv), 2);
        assert_eq!(due - Instant::now(), Duration::from_millis(50));
    }
}
