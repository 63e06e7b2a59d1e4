//! The Modbus source against real TCP servers: the simulator (tokio-modbus
//! server) and, for byte-exact framing, a raw socket. Field cases B01–B03, B05,
//! B06, B07, B09, B11, B12.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use relais::buffer::Buffer;
use relais::config::{BufferConfig, Config, DeviceConfig};
use relais::ingest::Ingest;
use relais::model::{Quality, Sample, Value};
use relais::sim::config::{ExceptionRange, Faults};
use relais::sim::{Sim, SimConfig};
use relais::sources::modbus::config::ModbusDevice;
use relais::sources::modbus::types::Table;
use relais::telemetry::Telemetry;

use crate::common::{free_port, of};

/// A simulator with the given stations (TOML), all on 127.0.0.1.
pub async fn sim(toml: &str) -> Sim {
    let cfg = SimConfig::parse(toml, "sim.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    Sim::start(cfg).await.unwrap()
}

/// A bare station (no tags, any address answers) on `port` with `unit`.
pub fn bare_station(name: &str, port: u16, unit: u8) -> String {
    format!("[[station]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nunit_id = {unit}\nlockstep = true\n")
}

/// Parses `[[device]]` TOML (with a `[gateway]` header added).
pub fn devices(toml: &str) -> Vec<ModbusDevice> {
    let text = format!("[gateway]\nid = \"test\"\n{toml}");
    let cfg = Config::parse(&text, "devices.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    cfg.devices
        .into_iter()
        .filter_map(|d| match d {
            DeviceConfig::Modbus(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Pollers → ring → buffer, without sinks.
pub struct Chain {
    pub ingest: Arc<Ingest>,
    pub buffer: Buffer,
    pub telemetry: Arc<Telemetry>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
    read_to: u64,
}

impl Chain {
    pub fn start(devs: &[ModbusDevice]) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Arc::new(Ingest::new(65536));
        let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &[]).unwrap();
        let telemetry = Arc::new(Telemetry::default());
        let stop = CancellationToken::new();
        relais::sources::modbus::poller::spawn_all(devs.to_vec(), ingest.clone(), &telemetry, stop.clone()).unwrap();
        Chain { ingest, buffer, telemetry, stop, _dir: dir, read_to: 0 }
    }

    /// Samples committed since the last call.
    pub async fn take(&mut self) -> Vec<Sample> {
        self.ingest.barrier().await;
        let rows = self.buffer.reader().unwrap().read_blocking(self.read_to, u64::MAX, 1_000_000).unwrap();
        if let Some(l) = rows.last() {
            self.read_to = l.seq;
        }
        rows
    }

    /// Waits until at least `n` samples of `device` arrived; returns all taken.
    pub async fn wait_for(&mut self, device: &str, n: usize, t: Duration) -> Vec<Sample> {
        let deadline = tokio::time::Instant::now() + t;
        let mut all = Vec::new();
        loop {
            all.extend(self.take().await);
            if all.iter().filter(|s| &*s.meta.device == device).count() >= n || tokio::time::Instant::now() > deadline {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test]
async fn decodes_field_case_vectors_from_a_real_server() {
    let port = free_port();
    let s = sim(&bare_station("meter", port, 1)).await;
    let st = s.station("meter").unwrap();
    st.write_registers(2, &[0x9BD4, 0x436E]).unwrap(); // B01
    st.write_registers(4, &[0x0009, 0x6A29, 0xC395, 0xCA43]).unwrap(); // B02
    st.write_registers(20, &[0x0020, 0x0000, 0x0000, 0x0001]).unwrap(); // B03 2^53+1
    st.write_registers(24, &[0x0000, 0x0000, 0x075B, 0xCD15]).unwrap(); // B03
    st.write_registers(30, &[0xFF9C, 0xFFEC]).unwrap(); // B05
    st.write_registers(228, &[0x6481]).unwrap(); // B06
    let mut bits = String::new();
    for b in 0..16 {
        bits += &format!("[[device.tag]]\nname = \"b{b}\"\ntable = \"holding\"\naddress = 228\nbit = {b}\n");
    }
    let devs = devices(&format!(
        r#"
[[device]]
name = "meter"
protocol = "modbus-tcp"
endpoint = "127.0.0.1:{port}"
poll_interval = "100ms"
max_gap = 0
[[device.tag]]
name = "voltage"
table = "holding"
address = 2
type = "f32"
byte_order = "CDAB"
[[device.tag]]
name = "legacy_float"
table = "holding"
address = 2
type = "u32"
byte_order = "CDAB"
scale = 0.01
[[device.tag]]
name = "count"
table = "holding"
address = 4
type = "u32"
[[device.tag]]
name = "level"
table = "holding"
address = 6
type = "f32"
byte_order = "DCBA"
[[device.tag]]
name = "energy"
table = "holding"
address = 20
type = "u64"
[[device.tag]]
name = "counter"
table = "holding"
address = 24
type = "i64"
[[device.tag]]
name = "temp"
table = "holding"
address = 30
type = "i16"
scale = 0.01
unit = "Cel"
[[device.tag]]
name = "minus20"
table = "holding"
address = 31
type = "i16"
{bits}
"#
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("meter", 8 + 16, Duration::from_secs(5)).await;
    let v = |t: &str| of(&got, t)[0].value.clone();
    assert_eq!(v("voltage"), Value::F64(238.60870361328125));
    match v("legacy_float") {
        Value::F64(x) => assert!((x - 11313223.24).abs() < 1e-6),
        x => panic!("{x:?}"),
    }
    assert_eq!(v("count"), Value::U64(617001));
    assert_eq!(v("level"), Value::F64(405.1700134277344));
    assert_eq!(v("energy"), Value::U64(9007199254740993));
    assert_eq!(v("counter"), Value::I64(123456789));
    assert_eq!(v("temp"), Value::F64(-1.0));
    assert_eq!(v("minus20"), Value::I64(-20));
    let set: Vec<u8> = (0..16).filter(|b| v(&format!("b{b}")) == Value::Bool(true)).collect();
    assert_eq!(set, vec![0, 7, 10, 13, 14]);
    // B06: one register change flips only b14.
    st.take_reads();
    st.write_registers(228, &[0x2481]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = chain.take().await;
    let last = |t: &str| of(&got, t).last().unwrap().value.clone();
    assert_eq!(last("b14"), Value::Bool(false));
    assert_eq!(last("b13"), Value::Bool(true));
    assert_eq!(last("b8"), Value::Bool(false));
    // All 16 bit tags are served by one read of quantity 1.
    let reads = st.take_reads();
    assert!(reads.contains(&(Table::Holding, 228, 1)), "{reads:?}");
    assert!(!reads.iter().any(|r| r.1 <= 228 && r.1 as u32 + r.2 as u32 > 229), "228 read as part of a larger block: {reads:?}");
}

#[tokio::test]
async fn b07_347_registers_are_three_requests_on_the_wire() {
    let port = free_port();
    let s = sim(&bare_station("big", port, 1)).await;
    let st = s.station("big").unwrap();
    let words: Vec<u16> = (0..347).collect();
    st.write_registers(0, &words).unwrap();
    let mut tags = String::new();
    for a in 0..347 {
        tags += &format!("[[device.tag]]\nname = \"r{a}\"\ntable = \"holding\"\naddress = {a}\n");
    }
    let devs = devices(&format!(
        "[[device]]\nname = \"big\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"10s\"\n{tags}"
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("big", 347, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 347, "all 347 samples in one cycle");
    for s in &got {
        let a: u64 = s.meta.tag[1..].parse().unwrap();
        assert_eq!(s.value, Value::U64(a));
    }
    assert_eq!(st.take_reads(), vec![(Table::Holding, 0, 125), (Table::Holding, 125, 125), (Table::Holding, 250, 97)]);
}

#[tokio::test]
async fn b09_a_failing_block_only_fails_its_own_tags_and_recovers() {
    let port = free_port();
    let s = sim(&bare_station("rack", port, 1)).await;
    let st = s.station("rack").unwrap();
    st.write_registers(1455, &[100, 101, 102, 103, 104, 105, 106]).unwrap();
    st.write_registers(1500, &[7, 8, 9, 10]).unwrap();
    st.set_faults(Faults {
        exceptions: vec![ExceptionRange { table: Table::Holding, start: 1466, count: 4, code: 2 }],
        ..Default::default()
    });
    let mut tags = String::new();
    for a in (1455..=1461).chain(1466..=1469).chain(1500..=1503) {
        let extra = if a <= 1461 { "type = \"i16\"\nscale = 0.1\n" } else { "" };
        tags += &format!("[[device.tag]]\nname = \"r{a}\"\ntable = \"holding\"\naddress = {a}\n{extra}");
    }
    let devs = devices(&format!(
        "[[device]]\nname = \"rack\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"200ms\"\n{tags}"
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("rack", 15 * 2, Duration::from_secs(5)).await;
    for s in &got {
        let a: u16 = s.meta.tag[1..].parse().unwrap();
        if (1466..=1469).contains(&a) {
            assert_eq!(s.quality, Quality::Bad);
            assert_eq!(s.value, Value::Null);
            let r = s.reason.as_deref().unwrap();
            assert!(r.starts_with("device_exception(2)") && r.contains("modbus exception 0x02 illegal data address"), "{r}");
        } else {
            assert_eq!(s.quality, Quality::Good, "{} must stay good", s.meta.tag);
        }
    }
    assert_eq!(of(&got, "r1455")[0].value, Value::F64(10.0));
    assert_eq!(of(&got, "r1503")[0].value, Value::U64(10));
    // The split is remembered: later cycles send A and C and B once, not the merged block.
    st.take_reads();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let reads = st.take_reads();
    assert!(!reads.is_empty());
    assert!(!reads.contains(&(Table::Holding, 1455, 15)), "merged request sent again: {reads:?}");
    let per_cycle: Vec<_> = reads.iter().take(3).copied().collect();
    assert_eq!(per_cycle, vec![(Table::Holding, 1455, 7), (Table::Holding, 1466, 4), (Table::Holding, 1500, 4)]);
    // Exception 03 gives its own reason.
    st.set_faults(Faults {
        exceptions: vec![ExceptionRange { table: Table::Holding, start: 1466, count: 4, code: 3 }],
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(450)).await;
    chain.take().await;
    let got = chain.wait_for("rack", 15, Duration::from_secs(2)).await;
    assert!(of(&got, "r1466").last().unwrap().reason.as_deref().unwrap().contains("illegal data value"));
    // The device answers again: B recovers by itself.
    st.set_faults(Faults::default());
    st.write_registers(1466, &[1, 2, 3, 4]).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    chain.take().await;
    let got = chain.wait_for("rack", 15, Duration::from_secs(2)).await;
    let b = of(&got, "r1468");
    assert_eq!(b.last().unwrap().quality, Quality::Good);
    assert_eq!(b.last().unwrap().value, Value::U64(3));
}

#[tokio::test]
async fn b11_reconnect_after_the_device_drops_and_the_other_device_never_misses_a_cycle() {
    let (pa, pb) = (free_port(), free_port());
    let station = |name: &str, port: u16| {
        format!(
            "{}[[station.tag]]\nname = \"v\"\ntable = \"holding\"\naddress = 0\nsignal = {{ kind = \"constant\", value = 42 }}\n",
            bare_station(name, port, 1)
        )
    };
    let sim_a = sim(&station("a", pa)).await;
    let _sim_b = sim(&station("b", pb)).await;
    let dev = |name: &str, port: u16| {
        format!(
            "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\nreconnect_max = \"1s\"\n[[device.tag]]\nname = \"v\"\ntable = \"holding\"\naddress = 0\n"
        )
    };
    let devs = devices(&(dev("a", pa) + &dev("b", pb)));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("a", 5, Duration::from_secs(3)).await;
    assert!(of(&got, "v").iter().all(|s| s.quality == Quality::Good));
    // The server dies (connections reset).
    drop(sim_a);
    let b_cycles_before = chain.telemetry.devices()[1].cycles.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let down = chain.take().await;
    let a_down: Vec<&Sample> = down.iter().filter(|s| &*s.meta.device == "a").collect();
    let first_bad = a_down.iter().position(|s| s.quality == Quality::Bad).expect("a goes bad");
    assert!(first_bad <= 1, "bad from the first failed request");
    assert!(
        a_down[first_bad..].iter().all(|s| s.quality == Quality::Bad && s.value == Value::Null),
        "no stale value repeated as good: {:?}",
        a_down.iter().map(|s| (s.recv_ts, s.quality, s.value.clone(), s.reason.clone())).collect::<Vec<_>>()
    );
    assert!(a_down.len() >= 15, "a bad sample every cycle while down ({} samples)", a_down.len());
    assert!(a_down.iter().any(|s| s.reason.as_deref().unwrap_or("").starts_with("comm_failure")));
    let b_down: Vec<&Sample> = down.iter().filter(|s| &*s.meta.device == "b").collect();
    assert!(b_down.iter().all(|s| s.quality == Quality::Good));
    let b_cycles = chain.telemetry.devices()[1].cycles.load(Ordering::Relaxed) - b_cycles_before;
    assert!(b_cycles >= 17, "the other device kept its 100 ms rate: {b_cycles} cycles in 2 s");
    // The server returns on the same port.
    let _sim_a = sim(&station("a", pa)).await;
    let back = tokio::time::Instant::now();
    let mut good_at = None;
    while back.elapsed() < Duration::from_secs(3) {
        let got = chain.take().await;
        if got.iter().any(|s| &*s.meta.device == "a" && s.quality == Quality::Good) {
            good_at = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = good_at.expect("device a good again without restart");
    assert!(t <= Duration::from_millis(1000 + 100 + 300), "good again within backoff cap + one interval: {t:?}");
}

#[tokio::test]
async fn b11_silent_device_times_out_degrades_and_never_takes_late_answers() {
    let port = free_port();
    let s = sim(&bare_station("slow", port, 1)).await;
    let st = s.station("slow").unwrap();
    st.write_registers(0, &[1111]).unwrap();
    st.write_registers(100, &[2222]).unwrap();
    let devs = devices(&format!(
        "[[device]]\nname = \"slow\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\ntimeout = \"150ms\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n[[device.tag]]\nname = \"b\"\ntable = \"holding\"\naddress = 100\n"
    ));
    let mut chain = Chain::start(&devs);
    chain.wait_for("slow", 4, Duration::from_secs(3)).await;
    // Answers arrive, but later than the timeout.
    st.set_faults(Faults { delay: Duration::from_millis(250), ..Default::default() });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slow = chain.take().await;
    assert!(slow.iter().any(|s| s.reason.as_deref().unwrap_or("").starts_with("timeout")), "timeouts reported");
    // Back to normal: every good value is the right one (no late answer taken
    // for a later request), and the device recovers from degraded mode.
    st.set_faults(Faults::default());
    let got = chain.wait_for("slow", 20, Duration::from_secs(5)).await;
    let all: Vec<&Sample> = slow.iter().chain(got.iter()).collect();
    for s in &all {
        if s.quality == Quality::Good {
            let want = if &*s.meta.tag == "a" { 1111 } else { 2222 };
            assert_eq!(s.value, Value::U64(want), "tag {} got another request's answer", s.meta.tag);
        }
    }
    assert!(got.iter().rev().take(4).all(|s| s.quality == Quality::Good), "recovered");
}

#[tokio::test]
async fn b12_unit_ids_0_and_255_are_sent_unchanged() {
    // Byte-exact: a raw TCP device that answers only unit 0.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        loop {
            let mut req = [0u8; 12];
            if sock.read_exact(&mut req).await.is_err() {
                return;
            }
            seen2.lock().unwrap().push(req.to_vec());
            if req[6] != 0 {
                continue; // only unit 0 answers
            }
            let reply = [req[0], req[1], 0x00, 0x00, 0x00, 0x05, 0x00, 0x03, 0x02, 0x12, 0x34];
            sock.write_all(&reply).await.unwrap();
        }
    });
    let devs = devices(&format!(
        "[[device]]\nname = \"inverter\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\nunit_id = 0\npoll_interval = \"1s\"\n\
         [[device.tag]]\nname = \"w\"\ntable = \"holding\"\naddress = 0\n"
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("inverter", 1, Duration::from_secs(3)).await;
    assert_eq!(got[0].value, Value::U64(4660));
    assert_eq!(got[0].quality, Quality::Good);
    let req = seen.lock().unwrap()[0].clone();
    assert_eq!(&req[2..], &[0x00, 0x00, 0x00, 0x06, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01], "unit 0 sent as 0");
    // Unit 255 through the simulator (a TCP device that only answers 255).
    let port = free_port();
    let s = sim(&bare_station("u255", port, 255)).await;
    s.station("u255").unwrap().write_registers(0, &[0x1234]).unwrap();
    let devs = devices(&format!(
        "[[device]]\nname = \"d255\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\nunit_id = 255\npoll_interval = \"1s\"\n\
         [[device.tag]]\nname = \"w\"\ntable = \"holding\"\naddress = 0\n"
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("d255", 1, Duration::from_secs(3)).await;
    assert_eq!((got[0].value.clone(), got[0].quality), (Value::U64(4660), Quality::Good));
}

#[tokio::test]
async fn units_behind_one_gateway_share_a_connection_and_a_dead_unit_is_degraded() {
    let port = free_port();
    let s = sim(&(bare_station("u1", port, 1) + &bare_station("u2", port, 2))).await;
    s.station("u1").unwrap().write_registers(0, &[11]).unwrap();
    s.station("u2").unwrap().write_registers(0, &[22]).unwrap();
    let dev = |name: &str, unit: u8| {
        format!(
            "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\nunit_id = {unit}\npoll_interval = \"100ms\"\ntimeout = \"100ms\"\n[[device.tag]]\nname = \"v\"\ntable = \"holding\"\naddress = 0\n"
        )
    };
    let devs = devices(&(dev("one", 1) + &dev("two", 2) + &dev("ghost", 3)));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("two", 3, Duration::from_secs(3)).await;
    assert!(of(&got, "v").iter().filter(|s| &*s.meta.device == "one").all(|s| s.value == Value::U64(11)));
    assert!(of(&got, "v").iter().filter(|s| &*s.meta.device == "two").all(|s| s.value == Value::U64(22)));
    // Unit 3 does not exist: the simulated gateway answers exception 0x0B.
    let ghost: Vec<&Sample> = got.iter().filter(|s| &*s.meta.device == "ghost").collect();
    assert!(ghost.iter().all(|s| s.quality == Quality::Bad && s.reason.as_deref().unwrap().starts_with("device_exception(11)")));
    // Unit 2 stops answering (silent): it is degraded, the others keep their rate.
    s.station("u2").unwrap().set_faults(Faults { silent: true, ..Default::default() });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let c0 = chain.telemetry.devices()[0].cycles.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c1 = chain.telemetry.devices()[0].cycles.load(Ordering::Relaxed);
    assert!(c1 - c0 >= 15, "unit 1 kept its rate beside a dead unit: {} cycles in 2 s", c1 - c0);
    let got = chain.take().await;
    let two: Vec<&Sample> = got.iter().filter(|s| &*s.meta.device == "two").collect();
    assert!(two.len() >= 15, "the dead unit still reports bad samples every cycle");
    assert!(two.iter().all(|s| s.quality == Quality::Bad));
    assert!(two.iter().any(|s| s.reason.as_deref().unwrap().contains("not answering")), "degraded mode visible");
}

/// A raw Modbus TCP device whose answers a test controls byte by byte.
/// `answer(request) -> Option<reply>`; `None` closes the connection.
pub async fn raw_device(answer: impl Fn(&[u8; 12]) -> Option<Vec<u8>> + Send + Sync + 'static) -> (u16, Arc<std::sync::atomic::AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let a2 = accepts.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            a2.fetch_add(1, Ordering::Relaxed);
            let answer = answer.clone();
            tokio::spawn(async move {
                loop {
                    let mut req = [0u8; 12];
                    if sock.read_exact(&mut req).await.is_err() {
                        return;
                    }
                    match answer(&req) {
                        Some(r) => {
                            if sock.write_all(&r).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        }
    });
    (port, accepts)
}

/// A read reply with `words` registers (function code from the request).
fn reply(req: &[u8; 12], words: &[u16]) -> Vec<u8> {
    let n = words.len() * 2;
    let mut r = vec![req[0], req[1], 0, 0, 0, (n + 3) as u8, req[6], req[7], n as u8];
    for w in words {
        r.extend_from_slice(&w.to_be_bytes());
    }
    r
}

#[tokio::test]
async fn a_wrong_register_count_is_a_bad_sample_not_a_crash() {
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c2 = calls.clone();
    // Answers 2 registers to a request for 3, twice; then 4; then correctly.
    let (port, _) = raw_device(move |req| {
        let n = c2.fetch_add(1, Ordering::Relaxed);
        Some(match n {
            0 | 1 => reply(req, &[1000, 1001]),
            2 => reply(req, &[1000, 1001, 1002, 1003]),
            _ => reply(req, &[1000, 1001, 1002]),
        })
    })
    .await;
    let devs = devices(&format!(
        "[[device]]\nname = \"odd\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"50ms\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n[[device.tag]]\nname = \"b\"\ntable = \"holding\"\naddress = 1\n[[device.tag]]\nname = \"c\"\ntable = \"holding\"\naddress = 2\n"
    ));
    let mut chain = Chain::start(&devs);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline && !got.iter().any(|s: &Sample| s.quality == Quality::Good) {
        got.extend(chain.take().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c: Vec<&Sample> = of(&got, "c");
    assert_eq!(c[0].quality, Quality::Bad);
    assert_eq!(c[0].reason.as_deref(), Some("comm_failure: protocol error: 2 registers in the response, 3 asked for"));
    assert!(c.iter().any(|s| s.reason.as_deref() == Some("comm_failure: protocol error: 4 registers in the response, 3 asked for")));
    let last = c.last().unwrap();
    assert_eq!((last.quality, last.value.clone()), (Quality::Good, Value::U64(1002)), "the poller survived and recovered");
}

#[tokio::test]
async fn a_device_that_closes_every_connection_is_not_hammered() {
    // Accepts, then closes without answering: every connection is useless.
    let (port, accepts) = raw_device(|_| None).await;
    let devs = devices(&format!(
        "[[device]]\nname = \"rude\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"20ms\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n"
    ));
    let mut chain = Chain::start(&devs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = chain.take().await;
    let n = accepts.load(Ordering::Relaxed);
    assert!(n <= 4, "{n} connections in 3 s at a 20 ms poll: the reconnects must back off (1, 2 s…)");
    assert!(got.len() >= 100, "a bad sample every cycle meanwhile ({})", got.len());
    let r = got[0].reason.as_deref().unwrap();
    assert!(r.starts_with("comm_failure: connection closed by the device"), "{r}");
}

#[tokio::test]
async fn splitting_a_dead_block_costs_a_bounded_number_of_requests_per_cycle() {
    let port = free_port();
    let s = sim(&bare_station("dead", port, 1)).await;
    let st = s.station("dead").unwrap();
    st.set_faults(Faults {
        exceptions: vec![ExceptionRange { table: Table::Holding, start: 0, count: 200, code: 2 }],
        ..Default::default()
    });
    let mut tags = String::new();
    for a in 0..200 {
        tags += &format!("[[device.tag]]\nname = \"r{a}\"\ntable = \"holding\"\naddress = {a}\n");
    }
    let devs = devices(&format!(
        "[[device]]\nname = \"dead\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"10s\"\n{tags}"
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("dead", 200, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 200, "one bad sample per tag");
    assert!(got.iter().all(|s| s.quality == Quality::Bad));
    let reads = st.take_reads().len();
    assert!(reads <= 2 + 2 * 16, "{reads} requests in the first cycle (2 merged + a bounded split)");
}

/// Modbus RTU on a pseudo-terminal: three unit ids on one line, one of them
/// dead; the other two keep their poll rate; values and byte orders as for TCP.
#[tokio::test]
async fn rtu_line_with_a_dead_unit() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let station = |name: &str, unit: u8| {
        format!("[[station]]\nname = \"{name}\"\nserial = \"{}\"\nunit_id = {unit}\nlockstep = true\n", link.display())
    };
    let s = sim(&(station("meter", 1) + &station("drive", 2))).await;
    s.station("meter").unwrap().write_registers(2, &[0x9BD4, 0x436E]).unwrap();
    s.station("drive").unwrap().write_registers(0, &[0x1234, 0xFFEC]).unwrap();
    let dev = |name: &str, unit: u8, tags: &str| {
        format!(
            "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-rtu\"\nport = \"{}\"\nbaud_rate = 115200\nunit_id = {unit}\npoll_interval = \"100ms\"\ntimeout = \"100ms\"\n{tags}",
            link.display()
        )
    };
    let devs = devices(
        &(dev("meter", 1, "[[device.tag]]\nname = \"voltage\"\ntable = \"holding\"\naddress = 2\ntype = \"f32\"\nbyte_order = \"CDAB\"\n")
            + &dev(
                "drive",
                2,
                "[[device.tag]]\nname = \"status\"\ntable = \"holding\"\naddress = 0\n[[device.tag]]\nname = \"temp\"\ntable = \"holding\"\naddress = 1\ntype = \"i16\"\n",
            )
            + &dev("ghost", 3, "[[device.tag]]\nname = \"x\"\ntable = \"holding\"\naddress = 0\n")),
    );
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("drive", 4, Duration::from_secs(5)).await;
    assert_eq!(of(&got, "voltage")[0].value, Value::F64(238.60870361328125));
    assert_eq!(of(&got, "status")[0].value, Value::U64(4660));
    assert_eq!(of(&got, "temp")[0].value, Value::I64(-20));
    let ghost: Vec<&Sample> = got.iter().filter(|s| &*s.meta.device == "ghost").collect();
    assert!(ghost.iter().all(|s| s.quality == Quality::Bad && s.reason.as_deref().unwrap().starts_with("timeout")), "{ghost:?}");
    // Once the dead unit is degraded, the others keep their 100 ms rate.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let c0: Vec<u64> = chain.telemetry.devices().iter().map(|d| d.cycles.load(Ordering::Relaxed)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c1: Vec<u64> = chain.telemetry.devices().iter().map(|d| d.cycles.load(Ordering::Relaxed)).collect();
    assert!(c1[0] - c0[0] >= 14 && c1[1] - c0[1] >= 14, "units 1 and 2 kept their rate beside a dead unit: {c0:?} -> {c1:?}");
    let later = chain.take().await;
    let bad: Vec<&Sample> = later.iter().filter(|s| &*s.meta.device != "ghost" && s.quality != Quality::Good).collect();
    assert!(bad.is_empty(), "units 1 and 2 stay good beside a dead unit: {bad:?}");
}
