//! Scenario parsing: a good file, and errors that name the file, the fault and the key.

use std::path::Path;

use super::*;

const GOOD: &str = r#"
name = "device-faults"
description = "a station stops answering"
seed = 7
duration = "60s"
sim = "line.sim.toml"
gateway = "line.gateway.toml"

[[fault]]
at = "10s"
duration = "15s"
kind = "dropout"
target = "sim:conveyor"
expect = { detector = "device_down", detect_within = "5s", recover_within = "10s" }

[[fault]]
at = "30s"
kind = "slow"
latency = "200ms"
target = "sim:press"
expect = { detected = false }

[[fault]]
at = "40s"
duration = "3s"
kind = "kill"
target = "gateway"
"#;

fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::parse(text, "s.toml", Path::new("/lab"))
}

#[test]
fn a_good_scenario() {
    let s = parse(GOOD).unwrap();
    assert_eq!((s.name.as_str(), s.seed, s.duration), ("device-faults", 7, Duration::from_secs(60)));
    assert_eq!(s.gateway, Path::new("/lab/line.gateway.toml"));
    assert_eq!(s.faults.len(), 3);
    let f = &s.faults[0];
    assert_eq!((f.index, f.at, f.duration), (1, Duration::from_secs(10), Some(Duration::from_secs(15))));
    assert_eq!(f.target, Target::Sim { station: "conveyor".into(), tag: None });
    let x = f.expect.as_ref().unwrap();
    assert_eq!(
        (x.detector.as_deref(), x.detect_within_ms, x.recover_within_ms, x.samples_lost),
        (Some("device_down"), Some(5000), Some(10_000), 0)
    );
    assert_eq!(x.wants_detection(), Some(true));
    assert!(matches!(s.faults[1].action, Action::Sim(crate::sim::SimFault::Slow { latency, .. }) if latency == Duration::from_millis(200)));
    assert_eq!(s.faults[1].params, serde_json::json!({ "latency": "200ms" }));
    assert_eq!(s.faults[1].expect.as_ref().unwrap().wants_detection(), Some(false));
    assert_eq!(Expect::default().wants_detection(), None);
    assert!(matches!(s.faults[2].action, Action::Gateway(crate::lab::action::GatewayFault::Kill)));
}

#[test]
fn targets() {
    assert_eq!(Target::parse("sim:press/force").unwrap(), Target::Sim { station: "press".into(), tag: Some("force".into()) });
    assert_eq!(Target::parse("proxy:uplink").unwrap(), Target::Proxy("uplink".into()));
    assert_eq!(Target::parse("attack:press").unwrap(), Target::Attack("press".into()));
    assert_eq!(Target::parse("gateway").unwrap(), Target::Gateway);
    for bad in ["sim:", "sim:/x", "sim:a/", "plc:x", "press"] {
        assert!(Target::parse(bad).unwrap_err().contains("expected `sim:<station>[/<tag>]`"), "{bad}");
    }
    assert_eq!(Target::parse("sim:press/force").unwrap().to_string(), "sim:press/force");
}

fn err(replace: &str, with: &str) -> String {
    assert!(GOOD.contains(replace), "{replace}");
    parse(&GOOD.replacen(replace, with, 1)).unwrap_err()
}

#[test]
fn errors_name_the_file_the_fault_and_the_key() {
    // An unknown parameter of the kind: the kind's own type refuses it.
    let e = err("latency = \"200ms\"", "latency = \"200ms\"\nlatncy = 3");
    assert!(e.starts_with("s.toml: fault #2 (slow)") && e.contains("latncy"), "{e}");
    // A bad duration names the key.
    let e = err("at = \"30s\"", "at = \"30 parsecs\"");
    assert!(e.starts_with("s.toml: fault #2 (slow) / at = \"30 parsecs\""), "{e}");
    // An unknown key in expect.
    let e = err("detected = false", "detected = false, within = \"3s\"");
    assert!(e.starts_with("s.toml: fault #2 (slow) / expect: unknown field") && e.contains("within"), "{e}");
    let e = err("detect_within = \"5s\"", "detect_within = \"5\"");
    assert!(e.contains("fault #1 (dropout) / expect.detect_within = \"5\""), "{e}");
    // Contradiction.
    let e = err("detected = false", "detected = false, detector = \"spike\"");
    assert!(e.contains("contradicts"), "{e}");
    // A missing key, a bad target, an unknown kind.
    let e = err("target = \"sim:conveyor\"\n", "");
    assert!(e.contains("fault #1 (dropout): `target` is missing"), "{e}");
    let e = err("target = \"gateway\"", "target = \"gw\"");
    assert!(e.contains("fault #3 (kill) / target \"gw\""), "{e}");
    let e = err("kind = \"kill\"", "kind = \"explode\"");
    assert!(e.contains("fault #3 (explode) on gateway") && e.contains("explode"), "{e}");
    let e = err("target = \"gateway\"", "target = \"proxy:nope\"");
    assert!(e.contains("no [[proxy]] named \"nope\""), "{e}");
    // Top-level: unknown key, after the end.
    let e = err("seed = 7", "seed = 7\nsed = 8");
    assert!(e.starts_with("s.toml: ") && e.contains("sed"), "{e}");
    let e = err("at = \"40s\"", "at = \"90s\"");
    assert!(e.contains("fault #3 (kill) / at"), "{e}");
}

/// Mistakes a bad-input pass found graded as failed faults after a whole run, or accepted
/// silently: refused before anything runs, naming the fault and the key.
#[test]
fn typos_zero_and_overlong_durations_overlaps_and_stray_keys_are_refused_before_the_run() {
    let e = err("detector = \"device_down\"", "detector = \"device_dwon\"");
    assert!(e.contains("fault #1 (dropout) / expect.detector: unknown detector \"device_dwon\" (did you mean \"device_down\"?)"), "{e}");
    let e = err("kind = \"dropout\"", "kind = \"dropuot\"");
    assert!(e.contains("kind: unknown kind \"dropuot\"") && e.contains("did you mean \"dropout\""), "{e}");
    let e = err("duration = \"15s\"", "duration = \"0s\"");
    assert!(e.contains("fault #1 (dropout) / duration: 0s"), "{e}");
    let e = err("duration = \"15s\"", "duration = \"100s\"");
    assert!(e.contains("fault #1 (dropout) / duration: ends at"), "{e}");
    let e = err("kind = \"dropout\"", "kind = \"dropout\"\nbogus = 3");
    assert!(e.contains("bogus: `dropout` takes no parameter"), "{e}");
    let e = err("latency = \"200ms\"", "latency = \"200ms\"\njitter = \"1ms\"\nkind2 = nan");
    assert!(e.contains("not a finite number"), "{e}");
    // Two faults on the gateway at once: the second one's clearing would end the first.
    let two = GOOD.to_string() + "\n[[fault]]\nat = \"41s\"\nduration = \"2s\"\nkind = \"disk_full\"\ntarget = \"gateway\"\n";
    let e = parse(&two).unwrap_err();
    assert!(e.contains("fault #4 / at: overlaps fault #3 on the gateway"), "{e}");
    let e = parse(
        &(GOOD.to_string() + "\n[[fault]]\nat = \"50s\"\nkind = \"clock_jump\"\noffset_s = -9223372036854775808\ntarget = \"gateway\"\n"),
    )
    .unwrap_err();
    assert!(e.contains("offset_s") && e.contains("100 years"), "{e}");
}
