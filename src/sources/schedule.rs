//! Periodic schedules shared by the polling sources (Modbus, OPC UA polls).

use std::time::Duration;

use tokio::time::Instant;

/// The longest start offset [`phase`] gives.
pub const PHASE_SPREAD_MAX: Duration = Duration::from_secs(1);

/// Start offset of a periodic schedule named `key` (a device name): a fixed
/// fraction of `min(interval, 1 s)` taken from a hash of the name, so that
/// devices with the same interval do not all poll at the same instant after
/// start (a hundred devices in lockstep hand the buffer a burst of every
/// sample at once, and the last of the burst waits for all the others).
/// The same name always gets the same offset (FNV-1a, stable across runs).
pub fn phase(key: &str, interval: Duration) -> Duration {
    let spread = interval.min(PHASE_SPREAD_MAX);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let nanos = spread.as_nanos() as u64;
    if nanos == 0 { Duration::ZERO } else { Duration::from_nanos(h % nanos) }
}

/// When a device's periodic polls happen within their interval
/// (`poll_phase` of a Modbus `[[device]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollPhase {
    /// At a fixed offset taken from the device's name ([`phase`]): devices
    /// with the same interval poll one after the other, so each poll's
    /// samples are committed and published on their own, at once (lowest
    /// latency; one buffer commit and one publish per poll).
    #[default]
    Spread,
    /// At multiples of the interval on the UTC clock ([`until_boundary`]),
    /// like Telegraf's `round_interval`: every device with the same interval
    /// polls at the same round instants (snapshots of the whole line at one
    /// time, one commit for many devices: less CPU, but each poll waits for
    /// the others of its instant before it is published).
    Aligned,
}

/// The choices of `poll_phase`, for the config reader.
pub const POLL_PHASES: &[(&str, PollPhase)] = &[("spread", PollPhase::Spread), ("aligned", PollPhase::Aligned)];

/// Time from the UTC instant `wall` to the next multiple of `interval` since
/// the Unix epoch (zero when `wall` is on one). `interval` of 1 s from
/// 10:00:00.300 → 700 ms; of 1 min → the next full minute.
pub fn until_boundary(wall: std::time::SystemTime, interval: Duration) -> Duration {
    let since = wall.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let step = interval.as_nanos().max(1);
    let rem = since % step;
    if rem == 0 { Duration::ZERO } else { Duration::from_nanos((step - rem) as u64) }
}

/// The first due time of a periodic schedule named `key`, from `now`.
pub fn first_due(how: PollPhase, key: &str, interval: Duration, now: Instant) -> Instant {
    match how {
        PollPhase::Spread => now + phase(key, interval),
        PollPhase::Aligned => now + until_boundary(std::time::SystemTime::now(), interval),
    }
}

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

    #[test]
    fn phases_are_stable_spread_and_bounded() {
        let iv = Duration::from_millis(100);
        assert_eq!(phase("dev1", iv), phase("dev1", iv));
        assert!(phase("dev1", iv) < iv);
        assert!(phase("dev1", Duration::from_secs(60)) < PHASE_SPREAD_MAX);
        let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(until_boundary(at(1_700_000_000_300), Duration::from_secs(1)), Duration::from_millis(700));
        assert_eq!(until_boundary(at(1_700_000_000_000), Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(until_boundary(at(1_699_999_990_000), Duration::from_secs(60)), Duration::from_secs(50));
        assert_eq!(phase("dev1", Duration::ZERO), Duration::ZERO);
        // 100 devices over 100 ms: no 10 ms slot holds more than a quarter of them.
        let mut slots = [0u32; 10];
        for d in 0..100 {
            slots[(phase(&format!("dev{d}"), iv).as_millis() / 10) as usize] += 1;
        }
        assert!(slots.iter().all(|&n| n <= 25), "{slots:?}");
        assert!(slots.iter().filter(|&&n| n > 0).count() >= 8, "{slots:?}");
    }

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
