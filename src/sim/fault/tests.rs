use std::time::{Duration, Instant};

use super::values::{apply, sim_value};
use super::*;
use crate::sim::signal::SimValue;

fn active(fault: SimFault, captured: Vec<Value>, seed: u64) -> Active {
    Active {
        id: FaultId(1),
        tag: None,
        fault,
        started: Instant::now(),
        start_tick: 5,
        rng: fastrand::Rng::with_seed(seed),
        captured,
        noise: Vec::new(),
        noise_tick: None,
    }
}

#[test]
fn faults_parse_from_scenario_tables() {
    let f: SimFault = toml::from_str("kind = \"slow\"\nlatency = \"250ms\"\njitter = \"50ms\"").expect("slow");
    assert_eq!(f, SimFault::Slow { latency: Duration::from_millis(250), jitter: Duration::from_millis(50) });
    let f: SimFault = toml::from_str("kind = \"stuck\"").expect("stuck");
    assert_eq!(f, SimFault::Stuck);
    let f: SimFault = toml::from_str("kind = \"opcua_restart\"\nreorder_namespaces = true").expect("restart");
    assert_eq!(f, SimFault::OpcuaRestart { reorder_namespaces: true, down: Duration::from_secs(2) });
    assert!(toml::from_str::<SimFault>("kind = \"drift\"\nper_second = 1.0\nfoo = 1").is_err());
    assert!(toml::from_str::<SimFault>("kind = \"slow\"\nlatency = \"soon\"").is_err());
    assert!(toml::from_str::<SimFault>("kind = \"melt\"").is_err());
    assert!(SimFault::Exception { code: 0 }.validate().is_err());
    assert!(SimFault::Drift { per_second: f64::NAN }.validate().is_err());
    assert!(SimFault::Noise { amplitude: 0.5 }.validate().is_ok());
}

#[test]
fn value_faults_change_what_is_served() {
    let now = Instant::now();
    let stuck = active(SimFault::Stuck, vec![Value::F64(7.5)], 0);
    assert_eq!(apply(&stuck, 0, SimValue::Num(9.0), 6, now), SimValue::Num(7.5));
    let spike = active(SimFault::Spike { value: 500.0 }, vec![], 0);
    assert_eq!(apply(&spike, 0, SimValue::Num(9.0), 5, now), SimValue::Num(500.0));
    assert_eq!(apply(&spike, 0, SimValue::Num(9.0), 6, now), SimValue::Num(9.0), "a spike lasts one tick");
    let reset = active(SimFault::CounterReset, vec![Value::U64(9_007_199_254_740_990)], 0);
    assert_eq!(apply(&reset, 0, SimValue::Int(9_007_199_254_740_995), 6, now), SimValue::Int(5));
    let mut drift = active(SimFault::Drift { per_second: 2.0 }, vec![], 0);
    drift.started = now - Duration::from_secs(3);
    assert_eq!(apply(&drift, 0, SimValue::Num(1.0), 6, now), SimValue::Num(7.0));
    assert_eq!(apply(&drift, 0, SimValue::Text("x".into()), 6, now), SimValue::Text("x".into()));
    assert_eq!(sim_value(&Value::Bool(true)), SimValue::Int(1));
}

#[test]
fn noise_is_the_same_for_the_same_seed() {
    let draw = |seed| {
        let mut a = active(SimFault::Noise { amplitude: 0.5 }, vec![], seed);
        (0..20u64)
            .flat_map(|tick| {
                a.draw_noise(tick, 2);
                a.draw_noise(tick, 2); // once per tick
                a.noise.clone()
            })
            .collect::<Vec<f64>>()
    };
    let (a, b, c) = (draw(42), draw(42), draw(43));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|x| x.abs() <= 0.5), "{a:?}");
    assert!(a.iter().any(|x| x.abs() > 0.1), "{a:?}");
}
