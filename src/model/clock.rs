//! The gateway's guarded clock: what [`Timestamp::now`] returns.
//!
//! The wall clock can be wrong: a gateway without an RTC battery boots at
//! 1970, a bad time sync sets it back to a plausible past date, an operator
//! sets it a year ahead. Data stamped with such a clock goes out dated in the
//! past of data already sent, or in the future. So every stamp goes through
//! one guard:
//!
//! - **The clock** is `monotonic + D`: the process's monotonic clock
//!   (`Instant`, which never steps) plus an offset `D` taken from the wall
//!   clock while the wall clock is trusted. `D` never drops faster than time
//!   runs, so the clock never goes back.
//! - **The floor.** The buffer persists the clock (`meta('clock_floor')`,
//!   every second and at shutdown) and [`raise_floor`] loads it before any
//!   source starts: after a restart the clock starts at or after the floor,
//!   even when the wall clock is below it. Without a persisted floor the
//!   floor is [`BUILD_FLOOR_NS`] (2026-12-01), so nothing is ever dated 1970.
//! - **Trusted.** The wall clock (plus the lab offset, [`set_offset_s`]) is
//!   trusted while it agrees with the clock: no more than [`TOLERANCE`]
//!   behind it, no more than [`MAX_STEP`] ahead. Then the stamp is the wall
//!   clock (or the clock when the wall is slightly behind: small backward
//!   steps are absorbed by running the clock at 90 % speed until they agree;
//!   a step back beyond that but within [`MAX_SLEW_BACK`] is suspect while the
//!   clock slews to it the same way, then trusted).
//! - **Suspect.** A wall clock further behind (below the floor) or jumping
//!   ahead by more than [`MAX_STEP`] is not followed: the stamp is the clock
//!   (last trusted instant + monotonic time since), and samples stamped
//!   meanwhile are flagged `uncertain` with reason [`REASON`] by the buffer
//!   writer ([`suspect_window`]). The gateway emits `clock.suspect` once per
//!   episode and `clock.trusted` when the wall clock agrees again.
//! - **Genuine forward corrections.** A wall clock that jumps ahead is
//!   accepted (the clock jumps with it, `clock.trusted` says
//!   `accepted: "forward_correction"`) when (a) the clock has had no trusted
//!   wall reading since the process started (it stands on the persisted floor
//!   only, which is a lower bound: a gateway booted at 1970 whose NTP answers
//!   later), or (b) the wall clock has stayed at the same distance ahead
//!   (within [`TOLERANCE`]) for [`ACCEPT_AFTER`]: a real correction stays, a
//!   glitch goes away.
//!
//! The hot path is two clock reads and three relaxed atomic loads; the state
//! machine ([`Guard::tick_at`]) runs at most every 100 ms, in whichever
//! thread stamps first after that.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::Instant;

use super::Timestamp;

/// The reason code of a sample stamped while the clock was suspect.
pub const REASON: &str = "clock_suspect";

/// The largest forward step of the wall clock followed silently (5 s).
pub const MAX_STEP: i64 = 5_000_000_000;

/// How far the wall clock may be behind the clock and still agree (2 s).
pub const TOLERANCE: i64 = 2_000_000_000;

/// How long a forward jump must hold steady to be accepted as a correction (10 min).
pub const ACCEPT_AFTER: i64 = 600_000_000_000;

/// The largest step back of the wall clock the clock slews to (60 s): an NTP
/// correction of a drifting RTC. Such a step is suspect, and the clock runs at
/// 90 % speed until it meets the wall clock (a 30 s step takes 5 minutes),
/// then is trusted again. A larger step back (a bad time sync, a clock set to
/// a plausible past date) is not slewed to: the episode lasts until the wall
/// clock comes back.
pub const MAX_SLEW_BACK: i64 = 60_000_000_000;

/// The floor of a gateway without a persisted one: 2026-12-01T00:00:00Z, in ns.
pub const BUILD_FLOOR_NS: i64 = 1_796_083_200_000_000_000;

/// How often the state machine runs (100 ms).
const TICK_NS: i64 = 100_000_000;

/// What the clock said when it turned suspect (the details of `clock.suspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// The wall clock, lab offset included (ns since the epoch).
    pub wall: i64,
    /// The trusted clock it was compared with (ns since the epoch).
    pub trusted: i64,
    /// The lab offset in force, in seconds.
    pub offset_s: i64,
}

/// How the clock became trusted again (the details of `clock.trusted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The wall clock, lab offset included (ns since the epoch).
    pub wall: i64,
    /// `"agrees"`: the wall clock came back; `"forward_correction"`: a jump
    /// ahead was accepted (see the module docs).
    pub accepted: &'static str,
    /// The lab offset in force, in seconds.
    pub offset_s: i64,
}

/// The state machine's view, for the gateway's event task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// True while the wall clock is not followed.
    pub suspect: bool,
    /// Suspect episodes since start (one `clock.suspect` each).
    pub episodes: u64,
    /// What the latest episode saw at its start.
    pub detection: Option<Detection>,
    /// How the latest episode ended (`None` while it lasts).
    pub recovery: Option<Recovery>,
}

#[derive(Debug, Default)]
struct Machine {
    status: Status,
    /// The newest suspect stamp already counted in an episode.
    seen_to: i64,
    /// A forward jump being watched: (monotonic ns when seen, its size).
    ahead_since: Option<(i64, i64)>,
    last_tick: i64,
}

/// A guarded clock. The process has one ([`Timestamp::now`]); tests drive
/// their own with explicit monotonic and wall readings.
#[derive(Debug)]
pub struct Guard {
    /// clock = monotonic + d.
    d: AtomicI64,
    /// True once a wall reading was trusted since start (not the floor alone).
    anchored: AtomicBool,
    /// The lab offset added to the wall clock (ns).
    offset: AtomicI64,
    /// First and latest stamp of the current (or latest) suspect episode.
    suspect_from: AtomicI64,
    suspect_to: AtomicI64,
    suspect_now: AtomicBool,
    next_tick: AtomicI64,
    episodes: AtomicU64,
    machine: Mutex<Machine>,
}

impl Guard {
    /// A guard whose first readings are `mono` (ns) and `wall` (ns since the
    /// epoch): trusted when the wall is at or after `floor`, else standing on
    /// the floor (unanchored, suspect).
    pub fn new(mono: i64, wall: i64, floor: i64) -> Guard {
        let trusted = wall >= floor;
        Guard {
            d: AtomicI64::new(if trusted { wall - mono } else { floor - mono }),
            anchored: AtomicBool::new(trusted),
            offset: AtomicI64::new(0),
            suspect_from: AtomicI64::new(i64::MAX),
            suspect_to: AtomicI64::new(i64::MIN),
            suspect_now: AtomicBool::new(false),
            next_tick: AtomicI64::new(mono),
            episodes: AtomicU64::new(0),
            machine: Mutex::new(Machine { seen_to: i64::MIN, ..Default::default() }),
        }
    }

    /// The stamp at monotonic `mono` for a wall reading `wall` (lab offset
    /// not yet added). Runs the state machine when it is due.
    pub fn stamp_at(&self, mono: i64, wall: i64) -> i64 {
        let wall = wall.saturating_add(self.offset.load(Ordering::Relaxed));
        let clock = mono.saturating_add(self.d.load(Ordering::Relaxed));
        let delta = wall.saturating_sub(clock);
        let stamp = if (-TOLERANCE..=MAX_STEP).contains(&delta) || (delta > MAX_STEP && !self.anchored.load(Ordering::Relaxed)) {
            wall.max(clock)
        } else {
            if !self.suspect_now.swap(true, Ordering::AcqRel) {
                self.suspect_from.store(clock, Ordering::Release);
            }
            self.suspect_to.fetch_max(clock, Ordering::AcqRel);
            clock
        };
        let due = self.next_tick.load(Ordering::Relaxed);
        if mono >= due && self.next_tick.compare_exchange(due, mono + TICK_NS, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.tick_at(mono, wall);
        }
        stamp
    }

    /// The state machine (see the module docs): follows small steps, opens
    /// and closes suspect episodes, accepts forward corrections. `wall`
    /// includes the lab offset.
    pub fn tick_at(&self, mono: i64, wall: i64) {
        let Ok(mut m) = self.machine.lock() else { return };
        let elapsed = if m.last_tick == 0 { 0 } else { (mono - m.last_tick).max(0) };
        m.last_tick = mono;
        let d = self.d.load(Ordering::Relaxed);
        let clock = mono.saturating_add(d);
        let delta = wall.saturating_sub(clock);
        let offset_s = self.offset.load(Ordering::Relaxed) / 1_000_000_000;
        let anchored = self.anchored.load(Ordering::Relaxed);
        let to = self.suspect_to.load(Ordering::Acquire);
        let agrees = (-TOLERANCE..=MAX_STEP).contains(&delta);
        let unanchored_ahead = delta > MAX_STEP && !anchored;
        let flagged = to > m.seen_to;
        m.seen_to = m.seen_to.max(to);
        if !m.status.suspect && (flagged || !(agrees || unanchored_ahead)) {
            m.status.suspect = true;
            m.status.episodes += 1;
            m.status.detection = Some(Detection { wall, trusted: clock, offset_s });
            m.status.recovery = None;
            m.ahead_since = None;
            self.episodes.store(m.status.episodes, Ordering::Release);
        }
        let accepted = if agrees {
            // Follow a small step ahead at once, one behind at 90 % speed.
            let target = wall - mono;
            self.d.store(if target >= d { target } else { (d - elapsed / 10).max(target) }, Ordering::Relaxed);
            Some("agrees")
        } else if unanchored_ahead {
            self.d.store(wall - mono, Ordering::Relaxed);
            Some("forward_correction")
        } else if delta > MAX_STEP {
            match m.ahead_since {
                Some((since, size)) if (delta - size).abs() <= TOLERANCE => (mono - since >= ACCEPT_AFTER).then(|| {
                    self.d.store(wall - mono, Ordering::Relaxed);
                    "forward_correction"
                }),
                _ => {
                    m.ahead_since = Some((mono, delta));
                    None
                }
            }
        } else {
            m.ahead_since = None;
            if delta >= -MAX_SLEW_BACK {
                // A modest step back (NTP correcting a fast RTC): run at 90 %
                // speed towards the wall clock, never going back.
                self.d.store((d - elapsed / 10).max(wall - mono), Ordering::Relaxed);
            }
            None
        };
        if let Some(how) = accepted {
            self.anchored.store(true, Ordering::Relaxed);
            m.ahead_since = None;
            if m.status.suspect {
                m.status.suspect = false;
                m.status.recovery = Some(Recovery { wall, accepted: how, offset_s });
                self.suspect_now.store(false, Ordering::Release);
            }
        }
    }

    /// Raises the floor to `floor` (ns): the clock never reads below it from
    /// now on. A floor above the clock leaves it standing on the floor
    /// (unanchored: a later wall clock ahead of it is accepted).
    pub fn raise_floor_at(&self, mono: i64, floor: i64) {
        let d = floor - mono;
        if self.d.fetch_max(d, Ordering::AcqRel) < d {
            self.anchored.store(false, Ordering::Relaxed);
        }
    }

    /// The first and latest stamp of the latest suspect episode, `None`
    /// before any: samples whose `recv_ts` falls inside were stamped while
    /// the clock was suspect (the window's end keeps moving while it is).
    pub fn suspect_window(&self) -> Option<(i64, i64)> {
        let to = self.suspect_to.load(Ordering::Acquire);
        (to != i64::MIN).then(|| (self.suspect_from.load(Ordering::Acquire).min(to), to))
    }

    /// The state machine's view.
    pub fn status(&self) -> Status {
        self.machine.lock().map(|m| m.status).unwrap_or_default()
    }

    /// Suspect episodes since start (cheap: no lock).
    pub fn episodes(&self) -> u64 {
        self.episodes.load(Ordering::Acquire)
    }

    /// Sets the lab offset (seconds; 0 clears it).
    pub fn set_offset_s(&self, s: i64) {
        self.offset.store(s.saturating_mul(1_000_000_000), Ordering::Relaxed);
    }

    /// The lab offset in seconds.
    pub fn offset_s(&self) -> i64 {
        self.offset.load(Ordering::Relaxed) / 1_000_000_000
    }
}

static BASE: OnceLock<Instant> = OnceLock::new();

fn mono_ns() -> i64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as i64
}

fn wall_ns() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.as_nanos() as i64
}

static GLOBAL: LazyLock<Guard> = LazyLock::new(|| Guard::new(mono_ns(), wall_ns(), BUILD_FLOOR_NS));

/// The process's guarded stamp now (what [`Timestamp::now`] returns).
pub fn now() -> Timestamp {
    let g = &*GLOBAL;
    Timestamp(g.stamp_at(mono_ns(), wall_ns()))
}

/// Raises the process clock's floor (the buffer's persisted floor, at open).
pub fn raise_floor(floor: Timestamp) {
    GLOBAL.raise_floor_at(mono_ns(), floor.0);
}

/// The process clock's latest suspect window (see [`Guard::suspect_window`]).
pub fn suspect_window() -> Option<(i64, i64)> {
    GLOBAL.suspect_window()
}

/// The process clock's state machine (see [`Status`]).
pub fn status() -> Status {
    GLOBAL.status()
}

/// Suspect episodes of the process clock since start.
pub fn episodes() -> u64 {
    GLOBAL.episodes()
}

/// Sets the lab offset of the process clock in seconds (`[lab] faults`; 0 clears).
pub fn set_offset_s(s: i64) {
    GLOBAL.set_offset_s(s);
}

/// The lab offset of the process clock in seconds.
pub fn offset_s() -> i64 {
    GLOBAL.offset_s()
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod tests;
