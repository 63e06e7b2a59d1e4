use std::time::Duration;

use super::*;
use crate::model::Quality;

const S: i64 = 1_000_000_000;

fn run(l: &Limits, xs: &[(f64, i64)]) -> Vec<Findings> {
    let mut st = TagState::default();
    xs.iter().map(|&(x, t)| evaluate(l, &mut st, x, t)).collect()
}

#[test]
fn gross_range_fails_and_suspects_on_the_same_sample() {
    let l = Limits { min: Some(0.0), max: Some(150.0), suspect_min: Some(10.0), suspect_max: Some(120.0), ..Default::default() };
    let f = run(&l, &[(50.0, 0), (181.0, S), (130.0, 2 * S), (5.0, 3 * S), (-1.0, 4 * S), (150.0, 5 * S)]);
    assert!(f[0].worst().is_none());
    let g = f[1].get(Detector::GrossRange).unwrap();
    assert_eq!((g.quality, g.reason(181.0)), (Quality::Bad, "gross_range: 181.0 above max 150.0".to_string()));
    assert_eq!(f[2].get(Detector::GrossRange).unwrap().quality, Quality::Uncertain);
    assert_eq!(f[2].worst().unwrap().reason(130.0), "gross_range: 130.0 above suspect_max 120.0");
    assert_eq!(f[3].worst().unwrap().reason(5.0), "gross_range: 5.0 below suspect_min 10.0");
    assert_eq!(f[4].worst().unwrap().quality, Quality::Bad);
    // The limit itself is inside the fail span (QARTOD: x > max fails).
    assert_eq!(f[5].worst().unwrap().quality, Quality::Uncertain);
}

#[test]
fn envelope_is_response_injection_and_bad() {
    let l = Limits { envelope: Some((0.0, 200.0)), max: Some(150.0), ..Default::default() };
    let f = run(&l, &[(250.0, 0)]);
    let w = f[0].worst().unwrap();
    assert_eq!(w.detector, Detector::ResponseInjection);
    assert_eq!(w.reason(250.0), "response_injection: 250.0 outside the physical envelope [0.0, 200.0]");
    assert_eq!(f[0].bits(), Detector::ResponseInjection.bit() | Detector::GrossRange.bit());
}

#[test]
fn flat_line_flags_the_first_sample_past_the_window() {
    let l = Limits { flat_line: Some(Duration::from_secs(5)), flat_tolerance: Some(0.01), ..Default::default() };
    let xs: Vec<(f64, i64)> = (0..8).map(|i| (12.5 + if i % 2 == 0 { 0.0 } else { 0.005 }, i * S)).collect();
    let f = run(&l, &xs);
    let first = f.iter().position(|f| f.get(Detector::FlatLine).is_some()).unwrap();
    assert_eq!(first, 5, "flagged at t = 5 s, the first sample with 5 s of flat run");
    assert_eq!(f[5].worst().unwrap().reason(12.5), "flat_line: 12.5 unchanged (±0.01) for 5.0s");
    // A change beyond the tolerance restarts the run.
    let mut st = TagState::default();
    for (x, t) in &xs {
        evaluate(&l, &mut st, *x, *t);
    }
    assert!(evaluate(&l, &mut st, 13.0, 8 * S).worst().is_none());
    assert!(evaluate(&l, &mut st, 13.0, 9 * S).worst().is_none());
}

#[test]
fn spike_flags_the_excursion_at_once_and_a_step_once() {
    let l = Limits { spike: Some(5.0), ..Default::default() };
    let xs = [(10.0, 0), (11.0, S), (40.0, 2 * S), (11.5, 3 * S), (12.0, 4 * S)];
    let f = run(&l, &xs);
    let flagged: Vec<bool> = f.iter().map(|f| f.get(Detector::Spike).is_some()).collect();
    assert_eq!(flagged, [false, false, true, false, false]);
    assert_eq!(f[2].worst().unwrap().reason(40.0), "spike: 40.0 jumps 29.0 from 11.0 (spike 5.0)");
    // A step: the first sample of the new level is flagged, the rest are accepted.
    let step = [(10.0, 0), (30.0, S), (30.5, 2 * S), (31.0, 3 * S)];
    let flagged: Vec<bool> = run(&l, &step).iter().map(|f| f.get(Detector::Spike).is_some()).collect();
    assert_eq!(flagged, [false, true, false, false]);
}

#[test]
fn rate_of_change_uses_the_samples_time() {
    let l = Limits { rate_of_change: Some(2.0), ..Default::default() };
    let f = run(&l, &[(0.0, 0), (1.5, S), (10.0, 2 * S), (12.0, 4 * S), (12.0, 4 * S)]);
    let flagged: Vec<bool> = f.iter().map(|f| f.get(Detector::RateOfChange).is_some()).collect();
    assert_eq!(flagged, [false, false, true, false, false], "same timestamp: no rate");
    assert_eq!(f[2].worst().unwrap().reason(10.0), "rate_of_change: 10.0 changes at 8.5/s (max 2.0/s)");
}

#[test]
fn counter_reset_is_a_decrease() {
    let l = Limits { counter: Some(true), ..Default::default() };
    let f = run(&l, &[(100.0, 0), (120.0, S), (3.0, 2 * S), (4.0, 3 * S)]);
    let flagged: Vec<bool> = f.iter().map(|f| f.get(Detector::CounterReset).is_some()).collect();
    assert_eq!(flagged, [false, false, true, false]);
    assert_eq!(f[2].worst().unwrap().reason(3.0), "counter_reset: 3.0 after 120.0");
}

#[test]
fn a_failed_value_is_not_a_reference() {
    // A value outside [min, max] does not start a flat run nor become the spike reference.
    let l = Limits { max: Some(100.0), spike: Some(5.0), rate_of_change: Some(1.0), ..Default::default() };
    let f = run(&l, &[(10.0, 0), (500.0, S), (10.5, 2 * S)]);
    assert_eq!(f[1].bits(), Detector::GrossRange.bit());
    assert!(f[2].worst().is_none(), "{:?}", f[2]);
}

#[test]
fn no_limits_no_findings() {
    let f = run(&Limits::default(), &[(1.0, 0), (1e300, S), (-1e300, 2 * S)]);
    assert!(f.iter().all(|f| f.worst().is_none()));
}
