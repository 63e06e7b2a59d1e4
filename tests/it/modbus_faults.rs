//! Wrong answers on the wire (issue 9 items 1–4): late answers delivered on a
//! new TCP connection, a late RTU frame between polls, a device answering
//! random bytes. Peers are raw sockets and pseudo-terminals written byte by
//! byte, so the framing relais sees is exactly the one under test.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use relais::model::{Quality, Sample, Value};
use relais::sources::modbus::frame::push_crc;

use crate::modbus::{Chain, devices};

/// A Modbus TCP read reply to `req` (12 bytes) with one register.
fn tcp_reply(req: &[u8], tid: [u8; 2], word: u16) -> Vec<u8> {
    let w = word.to_be_bytes();
    vec![tid[0], tid[1], 0, 0, 0, 5, req[6], req[7], 2, w[0], w[1]]
}

/// An RTU read reply (FC3, one register) with its CRC.
fn rtu_reply(unit: u8, word: u16) -> Vec<u8> {
    let w = word.to_be_bytes();
    let mut f = vec![unit, 3, 2, w[0], w[1]];
    push_crc(&mut f);
    f
}

/// Deterministic noise: no valid MBAP header (protocol id ≠ 0) and no valid
/// RTU frame.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v[2] = 0x5A;
    v
}

fn of<'a>(got: &'a [Sample], device: &str, tag: &str) -> Vec<&'a Sample> {
    got.iter().filter(|s| &*s.meta.device == device && &*s.meta.tag == tag).collect()
}

/// Item 1: a serial-to-TCP converter holds the answers of the first
/// connection (its serial side is slow) and closes it after two requests; on
/// the next connection it first delivers the held answers with their original
/// transaction ids, in reverse order, and a frame with a foreign transaction
/// id, then the answer. With ids that restart at 0 on a new connection, the
/// held answer to register 0 was taken for register 100.
#[tokio::test]
async fn tcp_late_answers_on_a_new_connection_are_dropped_and_counted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tids: Arc<Mutex<Vec<(u32, u16)>>> = Arc::default();
    let t2 = tids.clone();
    tokio::spawn(async move {
        let held: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        for conn in 1u32.. {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (held, tids) = (held.clone(), t2.clone());
            tokio::spawn(async move {
                let mut req = [0u8; 12];
                while sock.read_exact(&mut req).await.is_ok() {
                    let tid = [req[0], req[1]];
                    tids.lock().unwrap().push((conn, u16::from_be_bytes(tid)));
                    let addr = u16::from_be_bytes([req[8], req[9]]);
                    let answer = tcp_reply(&req, tid, 1000 + addr);
                    if conn == 1 {
                        let mut h = held.lock().unwrap();
                        h.push(answer);
                        if h.len() == 2 {
                            return; // the converter resets the connection
                        }
                        continue;
                    }
                    let mut out = Vec::new();
                    for h in held.lock().unwrap().drain(..).rev() {
                        out.extend(h);
                    }
                    if !out.is_empty() {
                        out.extend(tcp_reply(&req, [tid[0] ^ 0x80, tid[1]], 4242));
                    }
                    out.extend(answer);
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let devs = devices(&format!(
        "[[device]]\nname = \"conv\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\ntimeout = \"150ms\"\nreconnect_max = \"1s\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n[[device.tag]]\nname = \"b\"\ntable = \"holding\"\naddress = 100\n"
    ));
    let mut chain = Chain::start(&devs);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline && of(&got, "conv", "b").iter().filter(|s| s.quality == Quality::Good).count() < 5 {
        got.extend(chain.take().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (tag, want) in [("a", 1000), ("b", 1100)] {
        let all = of(&got, "conv", tag);
        let good: Vec<&&Sample> = all.iter().filter(|s| s.quality == Quality::Good).collect();
        assert!(good.len() >= 3, "tag {tag} answers again: {all:?}");
        for s in good {
            assert_eq!(s.value, Value::U64(want), "tag {tag} got the late answer of another request");
        }
    }
    let tids = tids.lock().unwrap().clone();
    let last1 = tids.iter().filter(|t| t.0 == 1).map(|t| t.1).next_back().expect("requests on connection 1");
    let first2 = tids.iter().find(|t| t.0 == 2).map(|t| t.1).expect("requests on connection 2");
    assert_eq!(first2, last1.wrapping_add(1), "transaction ids go on across connections: {tids:?}");
    let stats = &chain.telemetry.devices()[0];
    assert_eq!(stats.late_responses.load(Ordering::Relaxed), 2, "the two held answers");
    assert_eq!(stats.mismatched_responses.load(Ordering::Relaxed), 1, "the foreign transaction id");
    let line = chain.telemetry.dropped_answers().unwrap_or_default();
    assert_eq!(line, "answers dropped: late 2 (conv 2), mismatched 1 (conv 1)");
}

/// A pseudo-terminal pair: the master end for the test's peer, the path of
/// the serial end for relais (kept open, unlocked, not exclusive, as the
/// simulator does).
pub fn pty() -> (tokio_serial::SerialStream, tokio_serial::SerialStream, String) {
    use tokio_serial::SerialPort;
    let (master, mut slave) = tokio_serial::SerialStream::pair().unwrap();
    let _ = slave.set_exclusive(false);
    unlock(std::os::fd::AsRawFd::as_raw_fd(&slave));
    let name = slave.name().unwrap();
    (master, slave, name)
}

#[allow(unsafe_code)]
fn unlock(fd: i32) {
    unsafe extern "C" {
        fn flock(fd: i32, operation: i32) -> i32;
    }
    // SAFETY: flock only changes the advisory lock of a descriptor we own.
    unsafe {
        flock(fd, 8);
    }
}

/// Reads RTU read requests (8 bytes) from `master` and hands each to
/// `answer(n, unit)`, `n` counting from 0, which returns the bytes to write
/// and a delay.
async fn rtu_peer(
    master: tokio_serial::SerialStream,
    answer: impl Fn(usize, u8) -> Option<(Vec<u8>, Duration)> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut rd, wr) = tokio::io::split(master);
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        let mut buf = Vec::new();
        let mut n = 0;
        let mut chunk = [0u8; 256];
        loop {
            let Ok(k) = rd.read(&mut chunk).await else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            buf.extend_from_slice(&chunk[..k]);
            while buf.len() >= 8 {
                let req: Vec<u8> = buf.drain(..8).collect();
                if let Some((bytes, delay)) = answer(n, req[0]) {
                    let wr = wr.clone();
                    let write = async move {
                        tokio::time::sleep(delay).await;
                        let _ = wr.lock().await.write_all(&bytes).await;
                    };
                    if delay.is_zero() {
                        write.await;
                    } else {
                        tokio::spawn(write);
                    }
                }
                n += 1;
            }
        }
    })
}

fn rtu_devices(path: &str, units: &[(&str, u8)], timeout: &str) -> Vec<relais::sources::modbus::config::ModbusDevice> {
    let mut t = String::new();
    for (name, unit) in units {
        t += &format!(
            "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-rtu\"\nport = \"{path}\"\nbaud_rate = 115200\nunit_id = {unit}\npoll_interval = \"100ms\"\ntimeout = \"{timeout}\"\n\
             [[device.tag]]\nname = \"v\"\ntable = \"holding\"\naddress = 0\n"
        );
    }
    devices(&t)
}

/// Item 2: one answer of unit 1 comes 450 ms late (timeout 300 ms) and
/// lands between polls. It must be dropped and counted, never taken for a
/// later answer, and both units must keep answering (the line used to stay
/// one answer behind for good).
#[tokio::test]
async fn rtu_late_frame_between_polls_is_dropped_and_the_line_recovers() {
    let (master, _slave, path) = pty();
    let late_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ls = late_sent.clone();
    let _peer = rtu_peer(master, move |_, unit| {
        let word = if unit == 1 { 111 } else { 222 };
        let late = unit == 1 && !ls.swap(true, Ordering::Relaxed);
        Some((rtu_reply(unit, word), if late { Duration::from_millis(450) } else { Duration::ZERO }))
    })
    .await;
    let devs = rtu_devices(&path, &[("one", 1), ("two", 2)], "300ms");
    let mut chain = Chain::start(&devs);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let first = chain.take().await;
    assert!(late_sent.load(Ordering::Relaxed), "the late answer was sent");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = chain.take().await;
    for (dev, want) in [("one", 111), ("two", 222)] {
        for s in first.iter().chain(later.iter()).filter(|s| &*s.meta.device == dev && s.quality == Quality::Good) {
            assert_eq!(s.value, Value::U64(want), "{dev} took another unit's or an earlier request's answer");
        }
        let l = of(&later, dev, "v");
        let good = l.iter().filter(|s| s.quality == Quality::Good).count();
        assert!(l.len() >= 30 && good * 100 >= l.len() * 95, "{dev}: {good} good of {} in 4 s after the late answer", l.len());
    }
    let stats = chain.telemetry.devices();
    assert_eq!(stats[0].late_responses.load(Ordering::Relaxed), 1, "the late answer of unit 1 is counted");
    assert_eq!(stats[0].mismatched_responses.load(Ordering::Relaxed) + stats[1].mismatched_responses.load(Ordering::Relaxed), 0);
}

/// Item 3, Modbus TCP: a device that answers random bytes is
/// `invalid_frame`, not `timeout`.
#[tokio::test]
async fn tcp_device_answering_random_bytes_is_an_invalid_frame() {
    let (port, _) = crate::modbus::raw_device(|req| Some(noise(23, u16::from_be_bytes([req[0], req[1]]) as u64 + 7))).await;
    let devs = devices(&format!(
        "[[device]]\nname = \"noisy\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n"
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("noisy", 10, Duration::from_secs(5)).await;
    assert!(got.len() >= 10, "a bad sample every cycle: {}", got.len());
    for s in &got {
        assert_eq!(s.quality, Quality::Bad);
        let r = s.reason.as_deref().unwrap();
        assert!(r.starts_with("invalid_frame: ") && r.contains("not a Modbus TCP answer: header"), "{r}");
    }
}

/// Item 3, RTU: random bytes instead of an answer are `invalid_frame`, and
/// counted as mismatched; the port is kept.
#[tokio::test]
async fn rtu_device_answering_random_bytes_is_an_invalid_frame() {
    let (master, _slave, path) = pty();
    let _peer = rtu_peer(master, |n, _| Some((noise(20, n as u64 + 3), Duration::ZERO))).await;
    let devs = rtu_devices(&path, &[("noisy", 1)], "200ms");
    let mut chain = Chain::start(&devs);
    let got = chain.wait_for("noisy", 5, Duration::from_secs(5)).await;
    assert!(got.len() >= 5);
    for s in &got {
        let r = s.reason.as_deref().unwrap();
        assert!(s.quality == Quality::Bad && r.starts_with("invalid_frame: "), "{r}");
    }
    assert!(got[0].reason.as_deref().unwrap().starts_with("invalid_frame: no valid response within 200ms; 1 frame(s) dropped"), "{got:?}");
    // Three answered requests before the unit is degraded, each dropped.
    assert!(chain.telemetry.devices()[0].mismatched_responses.load(Ordering::Relaxed) >= 3);
}

/// A device's state changes are events beside the samples (and log lines):
/// up at the first answer, down with the cause, degraded after three silent
/// cycles, recovered when a probe is answered, then up again.
#[tokio::test]
async fn device_up_down_degraded_recovered_are_events() {
    use relais::model::{EventSource, Severity};
    let port = crate::common::free_port();
    let s = crate::modbus::sim(&crate::modbus::bare_station("pump", port, 4)).await;
    let devs = devices(&format!(
        "[[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\nunit_id = 4\npoll_interval = \"50ms\"\ntimeout = \"100ms\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n"
    ));
    let chain = Chain::start(&devs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.station("pump").unwrap().set_faults(relais::sim::config::Faults { silent: true, ..Default::default() });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.station("pump").unwrap().set_faults(Default::default());
    let events = || {
        let rows = chain.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
        rows.into_iter().filter_map(|r| r.as_event().cloned()).collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline && events().iter().filter(|e| &*e.kind == "device.up").count() < 2 {
        chain.ingest.barrier().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = events();
    let kinds: Vec<&str> = got.iter().map(|e| &*e.kind).collect();
    assert_eq!(kinds, ["device.up", "device.down", "device.degraded", "device.recovered", "device.up"], "{got:#?}");
    assert!(got.iter().all(|e| e.source == EventSource::Device("pump".into())));
    let down = &got[1];
    assert_eq!(down.severity, Severity::Warning);
    assert_eq!(down.details["reason"], "timeout");
    assert_eq!(down.details["error"], "timeout: no response within 100ms");
    assert_eq!(down.details["unit_id"], 4);
    assert!(down.message.contains("pump (unit 4 on 127.0.0.1:") && down.message.contains("does not answer: timeout"), "{}", down.message);
    assert_eq!(got[2].details["silent_cycles"], 3);
    assert_eq!(got[2].details["probe_every_ms"], 500);
    assert_eq!(got[3].severity, Severity::Info);
    assert!(got[3].details["degraded_for_ms"].as_u64().unwrap() > 0);
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "events take their place in seq order");
}
