use super::*;

const S: i64 = 1_000_000_000;
const YEAR: i64 = 365 * 86_400 * S;
/// 2026-12-06T12:00:00Z.
const T0: i64 = 1_796_558_400 * S;

/// Drives `g` from monotonic `from` to `to` (ns) in 50 ms steps with the
/// wall clock `wall(mono)`; returns the stamps.
fn run(g: &Guard, from: i64, to: i64, wall: impl Fn(i64) -> i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut m = from;
    while m < to {
        out.push(g.stamp_at(m, wall(m)));
        m += 50_000_000;
    }
    out
}

fn monotone(v: &[i64]) -> bool {
    v.windows(2).all(|w| w[0] <= w[1])
}

#[test]
fn a_good_wall_clock_is_followed() {
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    let v = run(&g, 0, 10 * S, |m| T0 + m);
    assert_eq!(v[0], T0);
    assert_eq!(*v.last().unwrap(), T0 + 10 * S - 50_000_000);
    assert_eq!(g.status().episodes, 0);
    assert!(g.suspect_window().is_none());
}

/// The case: the wall clock jumps back two years for a minute and comes back.
#[test]
fn a_jump_back_is_not_followed_and_flagged_once() {
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    let before = run(&g, 0, 10 * S, |m| T0 + m);
    let during = run(&g, 10 * S, 70 * S, |m| T0 + m - 2 * YEAR);
    let st = g.status();
    assert!(st.suspect);
    assert_eq!(st.episodes, 1);
    let det = st.detection.unwrap();
    assert_eq!(det.wall, T0 + 10 * S - 2 * YEAR);
    assert_eq!(det.trusted, T0 + 10 * S);
    let after = run(&g, 70 * S, 80 * S, |m| T0 + m);
    let st = g.status();
    assert!(!st.suspect, "trusted again when the wall clock agrees");
    assert_eq!(st.episodes, 1, "one episode");
    assert_eq!(st.recovery.unwrap().accepted, "agrees");
    let all: Vec<i64> = before.iter().chain(&during).chain(&after).copied().collect();
    assert!(monotone(&all), "the clock never goes back");
    assert!(during.iter().all(|&t| t >= T0 + 10 * S - 50_000_000), "nothing before the floor");
    // Stamped from monotonic time: exactly the real time here.
    assert_eq!(during[100], T0 + 15 * S);
    let (from, to) = g.suspect_window().unwrap();
    assert_eq!(from, during[0]);
    assert_eq!(to, *during.last().unwrap());
    assert!(after.iter().all(|&t| t > to), "samples after the episode are outside the window");
}

#[test]
fn a_jump_forward_is_not_followed_and_flagged_once() {
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    run(&g, 0, 10 * S, |m| T0 + m);
    let during = run(&g, 10 * S, 70 * S, |m| T0 + m + YEAR);
    assert!(during.iter().all(|&t| t < T0 + 71 * S), "not a year ahead");
    assert!(g.status().suspect);
    let after = run(&g, 70 * S, 80 * S, |m| T0 + m);
    let st = g.status();
    assert!(!st.suspect);
    assert_eq!(st.episodes, 1);
    assert!(monotone(&[during.clone(), after].concat()));
}

/// A restart with the wall clock below the persisted floor stamps at or after
/// the floor; the NTP correction that follows (ahead, the gateway has no
/// trusted reading yet) is accepted at once.
#[test]
fn a_restart_below_the_floor_stamps_after_it_and_accepts_the_correction() {
    let floor = T0;
    // Booted at 1970 (no RTC), 3 hours after the previous run stopped.
    let g = Guard::new(0, 100 * S, BUILD_FLOOR_NS);
    g.raise_floor_at(0, floor);
    let early = run(&g, 0, 30 * S, |m| 100 * S + m);
    assert!(early.iter().all(|&t| t >= floor), "at or after the floor: {}", early[0]);
    assert!(monotone(&early));
    assert!(g.status().suspect);
    let ntp = T0 + 3 * 3600 * S;
    let later = run(&g, 30 * S, 40 * S, |m| ntp + m);
    assert_eq!(*later.last().unwrap(), ntp + 40 * S - 50_000_000, "the correction is followed");
    let st = g.status();
    assert!(!st.suspect);
    assert_eq!(st.recovery.unwrap().accepted, "forward_correction");
}

/// A fresh gateway (no floor persisted) at 1970 never stamps 1970.
#[test]
fn no_stamp_before_the_build_floor() {
    let g = Guard::new(0, 5 * S, BUILD_FLOOR_NS);
    let v = run(&g, 0, 5 * S, |m| 5 * S + m);
    assert!(v.iter().all(|&t| t >= BUILD_FLOOR_NS));
    assert!(g.suspect_window().is_some(), "flagged");
}

/// A genuine forward correction of a clock already trusted: accepted once it
/// held steady for ACCEPT_AFTER.
#[test]
fn a_steady_forward_step_is_accepted_after_a_while() {
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    let hour = 3600 * S;
    let v = run(&g, 0, ACCEPT_AFTER + 2 * S, |m| T0 + m + hour);
    assert!(v[10] < T0 + hour, "not followed at first");
    assert_eq!(*v.last().unwrap(), T0 + ACCEPT_AFTER + 2 * S - 50_000_000 + hour, "followed once accepted");
    let st = g.status();
    assert!(!st.suspect);
    assert_eq!(st.episodes, 1);
    assert_eq!(st.recovery.unwrap().accepted, "forward_correction");
}

/// A small step back (within the tolerance) is absorbed without a flag and
/// without a stamp going back.
#[test]
fn a_small_step_back_is_absorbed() {
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    let a = run(&g, 0, 10 * S, |m| T0 + m);
    let b = run(&g, 10 * S, 30 * S, |m| T0 + m - S);
    assert!(monotone(&[a, b.clone()].concat()));
    assert_eq!(g.status().episodes, 0);
    assert!(g.suspect_window().is_none());
    assert_eq!(*b.last().unwrap(), T0 + 30 * S - 50_000_000 - S, "caught up with the wall clock");
}

#[test]
fn the_lab_offset_moves_the_wall_clock() {
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    g.set_offset_s(-2 * 365 * 86_400);
    assert_eq!(g.offset_s(), -2 * 365 * 86_400);
    let v = run(&g, 0, S, |m| T0 + m);
    assert!(v.iter().all(|&t| t >= T0));
    assert!(g.status().suspect);
    let d = g.status().detection.unwrap();
    assert_eq!(d.offset_s, -2 * 365 * 86_400);
    g.set_offset_s(0);
    run(&g, S, 2 * S, |m| T0 + m);
    assert!(!g.status().suspect);
}

/// NTP steps a fast RTC back by 30 s: suspect, slewed to at 90 % speed
/// (never back), trusted again once met (about 300 s), not suspect forever.
#[test]
fn an_ntp_step_back_within_a_minute_is_slewed_to_then_trusted() {
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    let before = run(&g, 0, 10 * S, |m| T0 + m);
    let during = run(&g, 10 * S, 200 * S, |m| T0 + m - 30 * S);
    assert!(g.status().suspect, "a 30 s step back is suspect while it is slewed to");
    let later = run(&g, 200 * S, 400 * S, |m| T0 + m - 30 * S);
    let st = g.status();
    assert!(!st.suspect, "trusted again once the clock met the wall clock");
    assert_eq!(st.episodes, 1);
    assert_eq!(st.recovery.unwrap().accepted, "agrees");
    let all: Vec<i64> = before.iter().chain(&during).chain(&later).copied().collect();
    assert!(monotone(&all), "the clock never goes back");
    let last = *later.last().unwrap();
    assert!((last - (T0 + 400 * S - 30 * S)).abs() <= TOLERANCE, "it follows the corrected wall clock: {}", last - T0);
    // A step back beyond MAX_SLEW_BACK is not slewed to.
    let g = Guard::new(0, T0, BUILD_FLOOR_NS);
    run(&g, 0, 10 * S, |m| T0 + m);
    let v = run(&g, 10 * S, 400 * S, |m| T0 + m - 2 * MAX_SLEW_BACK);
    assert!(g.status().suspect);
    assert_eq!(*v.last().unwrap(), T0 + 400 * S - 50_000_000, "stamped from monotonic time, not slewed");
}
