//! The TCP fault proxy (`src/proxy`, issue 13 "Network" and "Uplink"): each
//! toxic against a real echo server, the real simulator with the real Modbus
//! poller, or a rumqttc client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use relais::model::{Quality, Sample, Value};
use relais::proxy::{Direction, Protocol, Proxy, Toxic};

use crate::common::{Mosquitto, free_port};
use crate::modbus::{Chain, bare_station, devices, sim};

/// An echo server on a free port: every connection gets its bytes back, and
/// its close when the client closes.
pub async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn proxy_to(upstream: SocketAddr, protocol: Protocol) -> Proxy {
    Proxy::start("127.0.0.1:0".parse().unwrap(), upstream.to_string(), protocol, 7).await.unwrap()
}

async fn connect(p: &Proxy) -> TcpStream {
    let s = TcpStream::connect(p.local_addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `msg` and reads as many bytes back; the round trip time.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let t0 = Instant::now();
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.expect("echo within 5 s").unwrap();
    assert_eq!(got, msg);
    t0.elapsed()
}

/// What a read gives within `t`: `None` when nothing came (the connection
/// still open), else the read's result.
async fn read_within(s: &mut TcpStream, t: Duration) -> Option<std::io::Result<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(t, s.read(&mut buf)).await {
        Err(_) => None,
        Ok(r) => Some(r.map(|n| buf[..n].to_vec())),
    }
}

#[tokio::test]
async fn no_toxic_is_a_plain_copy_with_half_close() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    let mut s = connect(&p).await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let recv = r.read_to_end(&mut got);
    let (_, n) = tokio::join!(send, recv);
    assert_eq!(n.unwrap(), data.len(), "the echo's close arrives after all bytes");
    assert!(got == data, "bytes unchanged");
}

#[tokio::test]
async fn latency_with_jitter_within_bounds_per_direction_and_cleared_on_the_same_connection() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    let mut s = connect(&p).await;
    assert!(round_trip(&mut s, b"warm").await < Duration::from_millis(80));
    let id = p.set(Toxic::Latency { latency: Duration::from_millis(100), jitter: Duration::from_millis(20), direction: Direction::Both });
    let mut rtts = Vec::new();
    for _ in 0..10 {
        rtts.push(round_trip(&mut s, b"ping").await);
    }
    // Two directions, each 80…120 ms.
    for r in &rtts {
        assert!(*r >= Duration::from_millis(160) && *r < Duration::from_millis(300), "round trip {r:?} outside 160…300 ms: {rtts:?}");
    }
    assert!(rtts.iter().any(|r| *r != rtts[0]), "jitter varies the delay");
    p.clear(id);
    p.set(Toxic::Latency { latency: Duration::from_millis(100), jitter: Duration::ZERO, direction: Direction::Downstream });
    let r = round_trip(&mut s, b"one-way").await;
    assert!(r >= Duration::from_millis(100) && r < Duration::from_millis(180), "downstream only: {r:?}");
    p.clear_all();
    let r = round_trip(&mut s, b"fast").await;
    assert!(r < Duration::from_millis(80), "cleared on the same connection: {r:?}");
}

#[tokio::test]
async fn bandwidth_within_20_percent() {
    // A server that sends 100,000 bytes to each client, then closes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(&vec![0x55u8; 100_000]).await;
            });
        }
    });
    let p = proxy_to(addr, Protocol::Tcp).await;
    p.set(Toxic::Bandwidth { bytes_per_s: 50_000 });
    let mut s = connect(&p).await;
    let t0 = Instant::now();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    let rate = got.len() as f64 / t0.elapsed().as_secs_f64();
    assert_eq!(got.len(), 100_000);
    assert!((40_000.0..=60_000.0).contains(&rate), "rate {rate:.0} B/s, cap 50,000 B/s");
}

#[tokio::test]
async fn black_hole_forwards_nothing_closes_nothing_then_flows_again() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    let mut s = connect(&p).await;
    round_trip(&mut s, b"before").await;
    let id = p.set(Toxic::BlackHole);
    s.write_all(b"lost").await.unwrap();
    assert!(read_within(&mut s, Duration::from_millis(400)).await.is_none(), "nothing back, connection open");
    let mut fresh = connect(&p).await;
    fresh.write_all(b"new").await.unwrap();
    assert!(read_within(&mut fresh, Duration::from_millis(300)).await.is_none(), "a new connection is accepted and silent");
    p.clear(id);
    round_trip(&mut s, b"after").await;
    round_trip(&mut fresh, b"fresh").await;
}

#[tokio::test]
async fn reset_sends_rst_on_open_and_new_connections() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    let mut s = connect(&p).await;
    round_trip(&mut s, b"hello").await;
    let id = p.set(Toxic::Reset);
    let r = read_within(&mut s, Duration::from_secs(2)).await.expect("the connection ends");
    assert_eq!(r.err().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionReset), "RST, not FIN");
    let mut fresh = connect(&p).await;
    let r = read_within(&mut fresh, Duration::from_secs(2)).await.expect("a new connection ends at once");
    assert_eq!(r.err().map(|e| e.kind()), Some(std::io::ErrorKind::ConnectionReset));
    p.clear(id);
    let mut again = connect(&p).await;
    round_trip(&mut again, b"back").await;
}

#[tokio::test]
async fn slow_close_delays_the_close_of_the_far_end() {
    // A server that says "bye" and closes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"bye").await;
        }
    });
    let p = proxy_to(addr, Protocol::Tcp).await;
    let time_to_eof = |p: &Proxy| {
        let a = p.local_addr();
        async move {
            let mut s = TcpStream::connect(a).await.unwrap();
            let t0 = Instant::now();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"bye");
            t0.elapsed()
        }
    };
    let plain = time_to_eof(&p).await;
    assert!(plain < Duration::from_millis(100), "{plain:?}");
    p.set(Toxic::SlowClose { delay: Duration::from_millis(400) });
    let slow = time_to_eof(&p).await;
    assert!(slow >= Duration::from_millis(400) && slow < Duration::from_millis(700), "{slow:?}");
}

#[tokio::test]
async fn slicer_writes_tiny_segments_with_pauses() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    let mut s = connect(&p).await;
    p.set(Toxic::Slicer { bytes: 2, delay: Duration::from_millis(30) });
    let t0 = Instant::now();
    s.write_all(b"0123456789").await.unwrap();
    let mut reads = Vec::new();
    let mut got = Vec::new();
    while got.len() < 10 {
        let r = read_within(&mut s, Duration::from_secs(2)).await.expect("data").unwrap();
        assert!(!r.is_empty());
        reads.push(r.len());
        got.extend(r);
    }
    assert_eq!(got, b"0123456789");
    assert!(t0.elapsed() >= Duration::from_millis(120), "4 pauses of 30 ms at least: {:?}", t0.elapsed());
    assert!(reads.len() >= 4 && reads.iter().all(|n| *n <= 4), "segments of 2 bytes arrive apart: {reads:?}");
}

#[tokio::test]
async fn limit_data_closes_after_n_bytes() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    p.set(Toxic::LimitData { bytes: 100 });
    let mut s = connect(&p).await;
    round_trip(&mut s, &[1u8; 40]).await; // 80 bytes used
    s.write_all(&[2u8; 40]).await.unwrap(); // 20 of them fit
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await.expect("closed");
    assert!(r.is_ok(), "a close (FIN), not a reset: {r:?}");
    assert!(got.len() <= 20, "at most the bytes within the budget come back: {}", got.len());
    let mut fresh = connect(&p).await;
    round_trip(&mut fresh, &[3u8; 40]).await;
}

#[tokio::test]
async fn half_open_delivers_requests_and_loses_answers() {
    // An echo that also reports what it received.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    let _ = tx.send(buf[..n].to_vec());
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let p = proxy_to(addr, Protocol::Tcp).await;
    let mut s = connect(&p).await;
    round_trip(&mut s, b"a").await;
    assert_eq!(rx.recv().await.unwrap(), b"a");
    let id = p.set(Toxic::HalfOpen);
    s.write_all(b"request").await.unwrap();
    let arrived = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.expect("the request reaches the server").unwrap();
    assert_eq!(arrived, b"request");
    assert!(read_within(&mut s, Duration::from_millis(400)).await.is_none(), "no answer, no close");
    p.clear(id);
    round_trip(&mut s, b"b").await;
}

#[tokio::test]
async fn down_refuses_new_connections_and_cuts_open_ones() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    let mut s = connect(&p).await;
    round_trip(&mut s, b"up").await;
    let id = p.set(Toxic::Down);
    let r = read_within(&mut s, Duration::from_secs(2)).await.expect("the open connection is cut");
    assert!(matches!(r, Ok(ref b) if b.is_empty()), "closed: {r:?}");
    let mut refused = false;
    for _ in 0..50 {
        match TcpStream::connect(p.local_addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "new connections refused");
    p.clear(id);
    let mut back = None;
    for _ in 0..50 {
        if let Ok(c) = TcpStream::connect(p.local_addr()).await {
            back = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    round_trip(&mut back.expect("listening again on the same address"), b"again").await;
}

/// A Modbus TCP read of one holding register at `addr`, unit 1.
fn read_req(tid: u16, addr: u16) -> Vec<u8> {
    let t = tid.to_be_bytes();
    let a = addr.to_be_bytes();
    vec![t[0], t[1], 0, 0, 0, 6, 1, 3, a[0], a[1], 0, 1]
}

/// Reads one 11-byte response (one register); (transaction id, value).
async fn read_resp(s: &mut TcpStream) -> (u16, u16) {
    let mut r = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut r)).await.expect("a response").unwrap();
    assert_eq!(&r[2..9], &[0, 0, 0, 5, 1, 3, 2], "an FC3 response of one register: {r:?}");
    (u16::from_be_bytes([r[0], r[1]]), u16::from_be_bytes([r[9], r[10]]))
}

/// The simulator with a bare station (registers 0 = 1234, 100 = 5678) and a
/// Modbus-aware proxy in front of it.
async fn modbus_line() -> (relais::sim::Sim, Proxy) {
    let port = free_port();
    let s = sim(&bare_station("meter", port, 1)).await;
    let st = s.station("meter").unwrap();
    st.write_registers(0, &[1234]).unwrap();
    st.write_registers(100, &[5678]).unwrap();
    let p = proxy_to(SocketAddr::from(([127, 0, 0, 1], port)), Protocol::Modbus).await;
    (s, p)
}

#[tokio::test]
async fn modbus_late_response_wrong_tid_and_duplicate_on_the_wire() {
    let (_sim, p) = modbus_line().await;
    let mut s = connect(&p).await;
    s.write_all(&read_req(1, 0)).await.unwrap();
    assert_eq!(read_resp(&mut s).await, (1, 1234));

    let late = p.set(Toxic::LateResponse);
    s.write_all(&read_req(2, 0)).await.unwrap();
    assert!(read_within(&mut s, Duration::from_millis(300)).await.is_none(), "the response is held");
    s.write_all(&read_req(3, 100)).await.unwrap();
    assert_eq!(read_resp(&mut s).await, (2, 1234), "delivered after the next request");
    assert!(read_within(&mut s, Duration::from_millis(300)).await.is_none(), "the answer to 3 is held in turn");
    p.clear(late);
    assert_eq!(read_resp(&mut s).await, (3, 5678), "the held answer is delivered when the toxic is cleared");

    let wrong = p.set(Toxic::WrongTid);
    s.write_all(&read_req(0x0104, 0)).await.unwrap();
    assert_eq!(read_resp(&mut s).await, (0x8104, 1234));
    p.clear(wrong);

    p.set(Toxic::DuplicateResponse);
    s.write_all(&read_req(5, 100)).await.unwrap();
    assert_eq!(read_resp(&mut s).await, (5, 5678));
    assert_eq!(read_resp(&mut s).await, (5, 5678), "sent twice");
    p.clear_all();
    s.write_all(&read_req(6, 0)).await.unwrap();
    assert_eq!(read_resp(&mut s).await, (6, 1234));
    assert!(read_within(&mut s, Duration::from_millis(200)).await.is_none(), "once again");
}

/// The real poller through the proxy: tags `a` (register 0 = 1234) and `b`
/// (register 100 = 5678), read by separate requests, so an answer given to
/// the wrong request would be a plausible wrong value.
async fn poller(p: &Proxy) -> Chain {
    let devs = devices(&format!(
        "[[device]]\nname = \"meter\"\nprotocol = \"modbus-tcp\"\nendpoint = \"{}\"\npoll_interval = \"100ms\"\ntimeout = \"200ms\"\nreconnect_max = \"1s\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n[[device.tag]]\nname = \"b\"\ntable = \"holding\"\naddress = 100\n",
        p.local_addr()
    ));
    Chain::start(&devs)
}

/// Good samples carry exactly their register's value.
fn no_wrong_value(got: &[Sample]) {
    for s in got.iter().filter(|s| s.quality == Quality::Good) {
        let want = if &*s.meta.tag == "a" { 1234 } else { 5678 };
        assert_eq!(s.value, Value::U64(want), "a wrong value marked good: {s:?}");
    }
}

/// Runs the poller through `toxic`: before, good; during (after a settling
/// half second), every sample bad with a reason starting with one of
/// `reasons`; after clearing, good again; never a wrong value.
async fn poller_through(toxic: Toxic, reasons: &[&str]) {
    let (_sim, p) = modbus_line().await;
    let mut chain = poller(&p).await;
    let before = chain.wait_for("meter", 6, Duration::from_secs(5)).await;
    assert!(before.iter().filter(|s| s.quality == Quality::Good).count() >= 4, "good before: {before:?}");
    no_wrong_value(&before);
    let id = p.set(toxic.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settling = chain.take().await;
    no_wrong_value(&settling);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let during = chain.take().await;
    no_wrong_value(&during);
    assert!(during.len() >= 4, "{} keeps reading: {during:?}", toxic.kind());
    for s in &during {
        let r = s.reason.as_deref().unwrap_or("");
        assert!(
            s.quality == Quality::Bad && reasons.iter().any(|w| r.starts_with(w)),
            "{}: bad with {reasons:?} expected: {s:?}",
            toxic.kind()
        );
    }
    p.clear(id);
    let after = chain.wait_for("meter", 30, Duration::from_secs(8)).await;
    no_wrong_value(&after);
    assert!(after.iter().rev().take(4).all(|s| s.quality == Quality::Good), "good again: {after:?}");
}

#[tokio::test]
async fn wrong_tid_makes_the_pollers_reads_invalid_frame_never_a_wrong_value() {
    poller_through(Toxic::WrongTid, &["invalid_frame"]).await;
}

#[tokio::test]
async fn late_response_never_gives_the_poller_a_wrong_value() {
    // Held answers are dropped as late: reads time out, the device is demoted.
    poller_through(Toxic::LateResponse, &["invalid_frame", "timeout", "comm_failure"]).await;
}

#[tokio::test]
async fn duplicate_response_is_dropped_by_the_poller() {
    let (_sim, p) = modbus_line().await;
    let mut chain = poller(&p).await;
    chain.wait_for("meter", 4, Duration::from_secs(5)).await;
    p.set(Toxic::DuplicateResponse);
    tokio::time::sleep(Duration::from_millis(300)).await;
    chain.take().await;
    let during = chain.wait_for("meter", 20, Duration::from_secs(5)).await;
    no_wrong_value(&during);
    let good = during.iter().filter(|s| s.quality == Quality::Good).count();
    assert!(good * 10 >= during.len() * 9, "duplicates are dropped, the reads stay good: {good} of {}", during.len());
    let stats = &chain.telemetry.devices()[0];
    let late = stats.late_responses.load(std::sync::atomic::Ordering::Relaxed);
    let mismatched = stats.mismatched_responses.load(std::sync::atomic::Ordering::Relaxed);
    // A copy answers a request already answered: the poller drops it as mismatched.
    assert!(late + mismatched >= 10, "the copies are dropped and counted: late {late}, mismatched {mismatched}");
}

#[tokio::test]
async fn mqtt_refuse_connect_is_seen_by_rumqttc() {
    use rumqttc::{ConnectReturnCode, ConnectionError, Event, Incoming, MqttOptions};
    let broker = Mosquitto::start();
    let upstream = match &broker {
        Some(b) => SocketAddr::from(([127, 0, 0, 1], b.port)),
        None => SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    let p = proxy_to(upstream, Protocol::Mqtt).await;
    let connack = |p: &Proxy| {
        let mut opts = MqttOptions::new("refused-client", "127.0.0.1", p.local_addr().port());
        opts.set_keep_alive(Duration::from_secs(5));
        let (_c, mut ev) = rumqttc::AsyncClient::new(opts, 10);
        async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await.expect("an answer within 5 s") {
                    Ok(Event::Incoming(Incoming::ConnAck(a))) => return Ok(a.code),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    };
    if broker.is_some() {
        assert_eq!(connack(&p).await.expect("connected through the proxy"), ConnectReturnCode::Success);
    }
    let id = p.set(Toxic::RefuseConnect);
    match connack(&p).await {
        Err(ConnectionError::ConnectionRefused(code)) => assert_eq!(code, ConnectReturnCode::NotAuthorized),
        other => panic!("expected a refusal, got {other:?}"),
    }
    p.clear(id);
    if broker.is_some() {
        assert_eq!(connack(&p).await.expect("accepted again"), ConnectReturnCode::Success);
    }
}

#[tokio::test]
async fn relais_proxy_command_applies_its_toxics_and_stops_on_ctrl_c() {
    use std::io::{BufRead, Read};
    let upstream = echo().await;
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args([
            "proxy",
            "--listen",
            &port.to_string(),
            "--upstream",
            &upstream.to_string(),
            "--toxic",
            "latency,latency=100ms,direction=upstream",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with(&format!("proxy listening on 127.0.0.1:{port} → {upstream}")), "{first}");
    let mut second = String::new();
    out.read_line(&mut second).unwrap();
    assert!(second.starts_with("toxic latency:"), "{second}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    let r = round_trip(&mut s, b"cli").await;
    assert!(r >= Duration::from_millis(100) && r < Duration::from_millis(1000), "{r:?}");
    crate::common::kill(child.id(), 2);
    assert_eq!(crate::common::wait_exit(&mut child, Duration::from_secs(5)), Some(0), "Ctrl-C: exit 0");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("proxy stopped"), "{rest}");
    let r = read_within(&mut s, Duration::from_secs(2)).await.expect("the connection is closed");
    assert!(r.map(|b| b.is_empty()).unwrap_or(true));
}

#[tokio::test]
async fn latency_delays_a_stream_without_slowing_it_down() {
    let p = proxy_to(echo().await, Protocol::Tcp).await;
    p.set(Toxic::Latency { latency: Duration::from_millis(200), jitter: Duration::from_millis(20), direction: Direction::Upstream });
    let s = connect(&p).await;
    let (mut r, mut w) = s.into_split();
    let t0 = Instant::now();
    let send = tokio::spawn(async move {
        for i in 0..10u8 {
            w.write_all(&[i; 100]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w
    });
    let mut got = vec![0u8; 1000];
    r.read_exact(&mut got).await.unwrap();
    let took = t0.elapsed();
    let _w = send.await.unwrap();
    assert!(got.chunks(100).enumerate().all(|(i, c)| c.iter().all(|b| usize::from(*b) == i)), "in order");
    // Sent over 450 ms, each chunk 180…220 ms late: about 650 ms, not 10 × 200.
    assert!(took >= Duration::from_millis(630) && took < Duration::from_millis(900), "{took:?}");
}
