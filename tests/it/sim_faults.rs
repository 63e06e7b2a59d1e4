//! Faults injected into the simulator at run time (`Sim::inject`/`clear`),
//! each observed by a real client: tokio-modbus for Modbus, the gateway's
//! OPC UA source for OPC UA; and the intrusion pack against the
//! simulator's own intrusion detection.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_modbus::client::{Context, Reader, tcp};
use tokio_modbus::{ExceptionCode, Slave};

use relais::sim::{Sim, SimConfig, SimFault};

/// Unit 1 (`line`, ticking every 100 ms) and unit 2 (`step`, lock-step:
/// one tick per read) on one free port.
const LINE: &str = r#"
[[station]]
name = "line"
listen = "127.0.0.1:0"
unit_id = 1
tick = "100ms"
[[station.tag]]
name = "temp"
table = "holding"
address = 0
type = "f32"
signal = { kind = "constant", value = 20.0 }
[[station.tag]]
name = "count"
table = "holding"
address = 2
type = "u32"
signal = { kind = "counter", start = 1000, step = 1 }
[[station.tag]]
name = "big"
table = "holding"
address = 4
type = "u32"
signal = { kind = "constant", value = 65538 }
[[station.tag]]
name = "other"
table = "holding"
address = 10
type = "u16"
signal = { kind = "constant", value = 7 }

[[station]]
name = "step"
listen = "127.0.0.1:0"
unit_id = 2
lockstep = true
[[station.tag]]
name = "level"
table = "input"
address = 0
type = "f32"
signal = { kind = "constant", value = 50.0 }
"#;

async fn line() -> (Sim, SocketAddr) {
    crate::common::logs();
    let cfg = SimConfig::parse(LINE, "sim.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let sim = Sim::start(cfg).await.unwrap();
    let addr = sim.local_addr("127.0.0.1:0".parse().unwrap()).unwrap();
    (sim, addr)
}

async fn client(addr: SocketAddr, unit: u8) -> Context {
    tcp::connect_slave(addr, Slave(unit)).await.unwrap()
}

/// Holding (or input with `input`) registers, `None` without an answer within 500 ms.
async fn regs(ctx: &mut Context, input: bool, a: u16, n: u16) -> Option<Result<Vec<u16>, ExceptionCode>> {
    let r = if input {
        tokio::time::timeout(Duration::from_millis(500), ctx.read_input_registers(a, n)).await
    } else {
        tokio::time::timeout(Duration::from_millis(500), ctx.read_holding_registers(a, n)).await
    };
    r.ok().map(|r| r.expect("transport"))
}

async fn f32_at(ctx: &mut Context, input: bool, a: u16) -> f32 {
    let w = regs(ctx, input, a, 2).await.expect("an answer").expect("no exception");
    f32::from_bits((u32::from(w[0]) << 16) | u32::from(w[1]))
}

async fn u32_at(ctx: &mut Context, a: u16) -> u32 {
    let w = regs(ctx, false, a, 2).await.expect("an answer").expect("no exception");
    (u32::from(w[0]) << 16) | u32::from(w[1])
}

#[tokio::test]
async fn value_faults_change_what_modbus_serves_until_cleared() {
    let (sim, addr) = line().await;
    let mut c = client(addr, 1).await;
    assert_eq!(f32_at(&mut c, false, 0).await, 20.0);

    let id = sim.inject("line", Some("temp"), SimFault::OutOfRange { value: 999.0 }, 1).unwrap();
    assert_eq!(f32_at(&mut c, false, 0).await, 999.0, "out_of_range served at once");
    assert_eq!(u32_at(&mut c, 10).await >> 16, 7, "a tag fault leaves the other tags alone");
    sim.clear(id);
    assert_eq!(f32_at(&mut c, false, 0).await, 20.0, "cleared");

    // false_value: the response carries it, the station's own state does not.
    let id = sim.inject("line", Some("temp"), SimFault::FalseValue { value: 42.5 }, 1).unwrap();
    assert_eq!(f32_at(&mut c, false, 0).await, 42.5);
    assert_eq!(sim.station("line").unwrap().values()[0], relais::model::Value::F64(20.0), "the station's state is unchanged");
    sim.clear(id);
    assert_eq!(f32_at(&mut c, false, 0).await, 20.0);

    // drift: 10 units per second.
    let id = sim.inject("line", Some("temp"), SimFault::Drift { per_second: 10.0 }, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = f32_at(&mut c, false, 0).await;
    assert!((23.0..=27.5).contains(&v), "20 + 10/s × 0.5 s ≈ 25, got {v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f32_at(&mut c, false, 0).await > v, "keeps drifting");
    sim.clear(id);
    assert_eq!(f32_at(&mut c, false, 0).await, 20.0);

    // stuck: the counter stops moving, then moves on from its live value.
    let before = u32_at(&mut c, 2).await;
    let id = sim.inject("line", Some("count"), SimFault::Stuck, 1).unwrap();
    let frozen = u32_at(&mut c, 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(u32_at(&mut c, 2).await, frozen, "stuck");
    sim.clear(id);
    let live = u32_at(&mut c, 2).await;
    assert!(live >= frozen + 3 && frozen >= before, "{before} {frozen} {live}");

    // counter_reset: starts again from 0 and keeps counting.
    let id = sim.inject("line", Some("count"), SimFault::CounterReset, 1).unwrap();
    let first = u32_at(&mut c, 2).await;
    assert!(first <= 1, "restarted from 0: {first}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let later = u32_at(&mut c, 2).await;
    assert!((3..=6).contains(&later), "keeps counting: {later}");
    sim.clear(id);
    assert!(u32_at(&mut c, 2).await > 1000, "the live counter again");

    // byte_order on the whole station: 32-bit words swapped, 16-bit untouched.
    assert_eq!(regs(&mut c, false, 4, 2).await.unwrap().unwrap(), vec![1, 2]);
    let id = sim.inject("line", None, SimFault::ByteOrder, 1).unwrap();
    assert_eq!(regs(&mut c, false, 4, 2).await.unwrap().unwrap(), vec![2, 1], "word order swapped");
    assert_eq!(regs(&mut c, false, 10, 1).await.unwrap().unwrap(), vec![7]);
    sim.clear(id);
    assert_eq!(regs(&mut c, false, 4, 2).await.unwrap().unwrap(), vec![1, 2]);
}

#[tokio::test]
async fn spike_lasts_one_tick_and_noise_repeats_with_its_seed() {
    let (sim, addr) = line().await;
    let mut c = client(addr, 2).await;
    assert_eq!(f32_at(&mut c, true, 0).await, 50.0);
    let id = sim.inject("step", Some("level"), SimFault::Spike { value: -40.0 }, 1).unwrap();
    assert_eq!(f32_at(&mut c, true, 0).await, -40.0, "the spike's tick");
    assert_eq!(f32_at(&mut c, true, 0).await, 50.0, "one tick only (lock-step: one read)");
    sim.clear(id);

    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let id = sim.inject("step", Some("level"), SimFault::Noise { amplitude: 2.0 }, seed).unwrap();
        let mut got = Vec::new();
        for _ in 0..20 {
            got.push(f32_at(&mut c, true, 0).await);
        }
        sim.clear(id);
        runs.push(got);
    }
    assert_eq!(runs[0], runs[1], "same seed, same values");
    assert_ne!(runs[0], runs[2], "another seed, other values");
    assert!(runs[0].iter().all(|v| (48.0..=52.0).contains(v)), "{:?}", runs[0]);
    assert!(runs[0].windows(2).any(|w| w[0] != w[1]), "{:?}", runs[0]);
    assert_eq!(f32_at(&mut c, true, 0).await, 50.0, "cleared");
}

#[tokio::test]
async fn request_faults_dropout_slow_and_exception_until_cleared() {
    let (sim, addr) = line().await;
    // dropout of the station: no answer; after clear, answers again.
    let id = sim.inject("line", None, SimFault::Dropout, 1).unwrap();
    assert_eq!(regs(&mut client(addr, 1).await, false, 10, 1).await, None, "no answer");
    sim.clear(id);
    assert_eq!(regs(&mut client(addr, 1).await, false, 10, 1).await, Some(Ok(vec![7])));
    // dropout of one tag: its registers unanswered, the others served.
    let id = sim.inject("line", Some("temp"), SimFault::Dropout, 1).unwrap();
    assert_eq!(regs(&mut client(addr, 1).await, false, 0, 2).await, None);
    assert_eq!(regs(&mut client(addr, 1).await, false, 10, 1).await, Some(Ok(vec![7])));
    sim.clear(id);

    // slow: 300 ms + up to 100 ms of jitter.
    let mut c = client(addr, 1).await;
    let slow = SimFault::Slow { latency: Duration::from_millis(300), jitter: Duration::from_millis(100) };
    let id = sim.inject("line", None, slow, 3).unwrap();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), c.read_holding_registers(10, 1)).await.unwrap().unwrap();
    let took = t.elapsed();
    assert_eq!(r, Ok(vec![7]));
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(700), "{took:?}");
    sim.clear(id);
    let t = Instant::now();
    assert_eq!(regs(&mut c, false, 10, 1).await, Some(Ok(vec![7])));
    assert!(t.elapsed() < Duration::from_millis(200), "fast again: {:?}", t.elapsed());

    // exception: code 4 to every request of the station, or the tag's registers only.
    let id = sim.inject("line", None, SimFault::Exception { code: 4 }, 1).unwrap();
    assert_eq!(regs(&mut c, false, 10, 1).await, Some(Err(ExceptionCode::ServerDeviceFailure)));
    sim.clear(id);
    let id = sim.inject("line", Some("big"), SimFault::Exception { code: 2 }, 1).unwrap();
    assert_eq!(regs(&mut c, false, 4, 2).await, Some(Err(ExceptionCode::IllegalDataAddress)));
    assert_eq!(regs(&mut c, false, 5, 6).await, Some(Err(ExceptionCode::IllegalDataAddress)), "a range that touches it");
    assert_eq!(regs(&mut c, false, 10, 1).await, Some(Ok(vec![7])));
    sim.clear(id);
    assert_eq!(regs(&mut c, false, 4, 2).await, Some(Ok(vec![1, 2])));

    // Errors: unknown station, unknown tag, bad parameters, OPC UA faults without [opcua].
    assert!(sim.inject("nope", None, SimFault::Stuck, 1).unwrap_err().contains("no station"));
    assert!(sim.inject("line", Some("nope"), SimFault::Stuck, 1).unwrap_err().contains("no tag"));
    assert!(sim.inject("line", None, SimFault::Exception { code: 0 }, 1).is_err());
    assert!(sim.inject("line", None, SimFault::BadStatus, 1).unwrap_err().contains("OPC UA"));
    assert!(sim.station("line").unwrap().injected().is_empty(), "nothing left active");
}

/// Detections received within `wait`.
async fn detections(rx: &mut tokio::sync::broadcast::Receiver<relais::sim::SimDetection>, wait: Duration) -> Vec<(&'static str, String)> {
    tokio::time::sleep(wait).await;
    std::iter::from_fn(|| rx.try_recv().ok()).map(|d| (d.detector, d.station)).collect()
}

#[tokio::test]
async fn each_attack_raises_its_detection_once_and_a_single_client_none() {
    use relais::sim::{Attack, attack};
    use tokio_util::sync::CancellationToken;
    let (sim, addr) = line().await;
    let mut rx = sim.detections();
    // The gateway's viewpoint: one client polling both units.
    let mut gw = client(addr, 1).await;
    for _ in 0..40 {
        regs(&mut gw, false, 0, 2).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(detections(&mut rx, Duration::from_millis(50)).await, vec![], "a fault-free single client raises nothing");

    let stop = CancellationToken::new();
    let r = attack(addr, Attack::RogueWrite { unit: 1, address: 10, value: 99 }, 1, stop.clone()).await.unwrap();
    assert_eq!((r.requests, r.answers, r.exceptions), (1, 1, 0));
    assert_eq!(regs(&mut gw, false, 10, 1).await, Some(Ok(vec![99])), "written behind the gateway's back");
    let line = || "line".to_string();
    assert_eq!(
        detections(&mut rx, Duration::from_millis(100)).await,
        vec![("unexpected_client", line())],
        "confirmed by the gateway's read"
    );

    // The gateway's next poll confirms that two clients talk at once.
    let mut poll = async || assert!(regs(&mut gw, false, 0, 2).await.unwrap().is_ok());
    let r = attack(addr, Attack::FunctionCodeScan { unit: 1 }, 5, stop.clone()).await.unwrap();
    poll().await;
    assert_eq!(r.requests, 121, "{r:?}");
    // FC17 (Report Server ID) is known but malformed with data: exception 03, not 01.
    assert_eq!(r.served_codes, vec![1, 2, 3, 4, 17], "{r:?}");
    assert_eq!(detections(&mut rx, Duration::from_millis(100)).await, vec![("function_code_scan", line()), ("unexpected_client", line())]);

    let r = attack(addr, Attack::UnitSweep { from: 1, to: 20 }, 5, stop.clone()).await.unwrap();
    poll().await;
    assert_eq!((r.requests, r.exceptions), (20, 18), "units 3..=20 answer 0x0B: {r:?}");
    assert_eq!(detections(&mut rx, Duration::from_millis(100)).await, vec![("unit_sweep", line()), ("unexpected_client", line())]);

    let flood = tokio::spawn(attack(addr, Attack::RequestFlood { unit: 1, rate_per_s: 400 }, 5, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let r = flood.await.unwrap().unwrap();
    poll().await;
    assert!(r.requests > 300 && r.answers == r.requests, "{r:?}");
    assert_eq!(detections(&mut rx, Duration::from_millis(100)).await, vec![("request_flood", line()), ("unexpected_client", line())]);

    // The gateway polls on: still nothing.
    for _ in 0..20 {
        regs(&mut gw, false, 0, 2).await.unwrap().unwrap();
    }
    assert_eq!(detections(&mut rx, Duration::from_millis(50)).await, vec![]);
}

const UA_STATION: &str = r#"
[[station]]
name = "s"
tick = "100ms"
[[station.tag]]
name = "temp"
table = "holding"
address = 0
type = "f32"
signal = { kind = "constant", value = 20.0 }
[[station.tag]]
name = "n"
table = "holding"
address = 4
type = "i32"
signal = { kind = "constant", value = 7 }
"#;

#[tokio::test]
async fn opcua_serves_value_faults_bad_status_and_restarts_with_its_namespaces_reordered() {
    use crate::opcua::{Chain, all_good, ua_devices, ua_sim};
    use relais::model::{Quality, Value};
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(UA_STATION, "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&format!(
        "[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"{}\"\npublishing_interval = \"100ms\"\npoll_interval = \"200ms\"\nkeep_alive = \"500ms\"\nrequest_timeout = \"1s\"\nreconnect_max = \"1s\"\n\
         [[device.tag]]\nname = \"temp\"\nnode_id = \"nsu=urn:relais:sim;s=s.temp\"\n\
         [[device.tag]]\nname = \"n\"\nnode_id = \"nsu=urn:relais:sim;s=s.n\"\nmode = \"poll\"\n",
        ua.endpoint()
    ));
    let mut chain = Chain::start(&devs);
    let last = |s: &[relais::model::Sample], tag: &str| crate::common::of(s, tag).last().map(|s| (s.quality, s.value.clone()));
    let up = chain.until(Duration::from_secs(15), |s| all_good(s, &["temp", "n"])).await;
    assert_eq!(last(&up, "temp"), Some((Quality::Good, Value::F64(20.0))));

    let id = sim.inject("s", Some("temp"), SimFault::OutOfRange { value: 999.0 }, 1).unwrap();
    let got = chain.until(Duration::from_secs(5), |s| last(s, "temp") == Some((Quality::Good, Value::F64(999.0)))).await;
    assert_eq!(last(&got, "temp"), Some((Quality::Good, Value::F64(999.0))), "the fault reaches the OPC UA value");
    sim.clear(id);
    let got = chain.until(Duration::from_secs(5), |s| last(s, "temp") == Some((Quality::Good, Value::F64(20.0)))).await;
    assert_eq!(last(&got, "temp"), Some((Quality::Good, Value::F64(20.0))), "cleared");

    let id = sim.inject("s", None, SimFault::BadStatus, 1).unwrap();
    let bad = |s: &[relais::model::Sample], t: &str| crate::common::of(s, t).last().is_some_and(|s| s.quality == Quality::Bad);
    let got = chain.until(Duration::from_secs(5), |s| bad(s, "temp") && bad(s, "n")).await;
    assert!(bad(&got, "temp") && bad(&got, "n"), "bad status on every node of the station: {got:?}");
    let reason = crate::common::of(&got, "temp").last().and_then(|s| s.reason.clone()).unwrap_or_default();
    assert!(reason.contains("BadSensorFailure") || reason.contains("808B"), "{reason}");
    sim.clear(id);
    let got = chain.until(Duration::from_secs(5), |s| all_good(s, &["temp", "n"])).await;
    assert!(all_good(&got, &["temp", "n"]), "good again");

    let ns_before = ua.namespace_index().unwrap();
    let id = sim.inject("s", None, SimFault::OpcuaRestart { reorder_namespaces: true, down: Duration::from_secs(1) }, 1).unwrap();
    assert!(!ua.is_running(), "stopped at injection");
    let t = Instant::now();
    while !ua.is_running() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ua.is_running() && t.elapsed() >= Duration::from_millis(900), "back after `down`: {:?}", t.elapsed());
    assert_ne!(ua.namespace_index(), Some(ns_before), "the NamespaceArray order changed");
    chain.take().await;
    let after = chain.until(Duration::from_secs(15), |s| all_good(s, &["temp", "n"])).await;
    assert_eq!(last(&after, "n"), Some((Quality::Good, Value::I64(7))), "the nsu= node reads the same value: {after:?}");
    assert_eq!(last(&after, "temp"), Some((Quality::Good, Value::F64(20.0))));
    sim.clear(id);

    // Without reordering the index stays.
    let ns = ua.namespace_index();
    let id = sim.inject("s", None, SimFault::OpcuaRestart { reorder_namespaces: false, down: Duration::from_millis(300) }, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(ua.is_running());
    assert_eq!(ua.namespace_index(), ns);
    sim.clear(id);
}

/// The gateway's own Modbus poller against the faults: it reads the
/// injected value, rides out a dropout (timeouts, reconnects) without the
/// simulator's IDS taking it for an intruder, and a second client writing
/// meanwhile is one `unexpected_client` within a poll period.
#[tokio::test]
async fn the_gateway_poller_sees_the_faults_and_the_ids_only_the_intruder() {
    use crate::modbus::{Chain, devices};
    use relais::model::{Quality, Value};
    use relais::sim::{Attack, attack};
    let (sim, addr) = line().await;
    let mut rx = sim.detections();
    let devs = devices(&format!(
        "[[device]]\nname = \"line\"\nprotocol = \"modbus-tcp\"\nendpoint = \"{addr}\"\nunit_id = 1\npoll_interval = \"100ms\"\ntimeout = \"150ms\"\n\
         [[device.tag]]\nname = \"other\"\ntable = \"holding\"\naddress = 10\n"
    ));
    let mut chain = Chain::start(&devs);
    chain.wait_for("line", 3, Duration::from_secs(5)).await;
    let id = sim.inject("line", Some("other"), SimFault::OutOfRange { value: 4242.0 }, 1).unwrap();
    let got = chain.wait_for("line", 3, Duration::from_secs(3)).await;
    assert_eq!(got.last().map(|s| (s.quality, s.value.clone())), Some((Quality::Good, Value::U64(4242))));
    sim.clear(id);

    let id = sim.inject("line", None, SimFault::Dropout, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let during = chain.take().await;
    assert!(during.iter().any(|s| s.quality == Quality::Bad), "the dropout shows as bad samples: {during:?}");
    sim.clear(id);
    let t = Instant::now();
    let mut back: Vec<relais::model::Sample> = Vec::new();
    while t.elapsed() < Duration::from_secs(8) && !(back.len() >= 3 && back.iter().rev().take(3).all(|s| s.quality == Quality::Good)) {
        back.extend(chain.take().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back.last().map(|s| (s.quality, s.value.clone())), Some((Quality::Good, Value::U64(7))), "recovered after the dropout");
    eprintln!("connections accepted so far: {}", sim.station("line").unwrap().connections());
    assert_eq!(detections(&mut rx, Duration::from_millis(300)).await, vec![], "the gateway's reconnects are no intrusion");

    let r =
        attack(addr, Attack::RogueWrite { unit: 1, address: 10, value: 99 }, 1, tokio_util::sync::CancellationToken::new()).await.unwrap();
    assert_eq!(r.answers, 1);
    assert_eq!(detections(&mut rx, Duration::from_millis(400)).await, vec![("unexpected_client", "line".to_string())]);
    let got = chain.wait_for("line", 2, Duration::from_secs(3)).await;
    assert_eq!(got.last().map(|s| s.value.clone()), Some(Value::U64(99)), "the gateway reads the rogue value");
}
