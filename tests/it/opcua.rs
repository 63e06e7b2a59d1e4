//! The OPC UA source against real OPC UA servers: the simulator's
//! (async-opcua server) and, when Python's `asyncua` is installed, a
//! third-party one. Field cases B14, B15, B16, B18, B19.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use relais::buffer::Buffer;
use relais::config::{BufferConfig, Config, DeviceConfig};
use relais::ingest::Ingest;
use relais::model::{Quality, Sample, Value};
use relais::sim::{Sim, SimConfig};
use relais::sources::opcua::config::OpcUaDevice;
use relais::telemetry::Telemetry;

use crate::common::of;

const NS: &str = "urn:relais:sim";

/// A simulator serving `stations` over OPC UA only, on a free port.
pub(crate) async fn ua_sim(stations: &str, opcua: &str, pki: &Path) -> Sim {
    let toml = format!("[opcua]\nlisten = \"127.0.0.1:0\"\npki_dir = {:?}\n{opcua}\n{stations}", pki.display().to_string());
    let cfg = SimConfig::parse(&toml, "sim.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    Sim::start(cfg).await.unwrap()
}

/// One OPC UA-only station with constant tags: `(name, type, value)`.
fn station(name: &str, tags: &[(&str, &str, &str)], extra: &[(&str, &str)]) -> String {
    let mut s = format!("[[station]]\nname = \"{name}\"\ntick = \"200ms\"\n");
    for (i, (tag, ty, v)) in tags.iter().enumerate() {
        s += &format!(
            "[[station.tag]]\nname = \"{tag}\"\ntable = \"holding\"\naddress = {}\ntype = \"{ty}\"\nsignal = {{ kind = \"constant\", value = {v} }}\n",
            i * 4
        );
        if let Some((_, x)) = extra.iter().find(|(t, _)| t == tag) {
            s += x;
            s += "\n";
        }
    }
    s
}

pub(crate) fn ua_devices(toml: &str) -> Vec<OpcUaDevice> {
    let text = format!("[gateway]\nid = \"test\"\n{toml}");
    let cfg = Config::parse(&text, "devices.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    cfg.devices
        .into_iter()
        .filter_map(|d| match d {
            DeviceConfig::OpcUa(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// Supervisors → ring → buffer, without sinks.
pub(crate) struct Chain {
    ingest: Arc<Ingest>,
    buffer: Buffer,
    stop: CancellationToken,
    dir: tempfile::TempDir,
    read_to: u64,
    pub(crate) all: Vec<Sample>,
}

impl Chain {
    pub(crate) fn start(devs: &[OpcUaDevice]) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(devs, dir)
    }

    fn start_in(devs: &[OpcUaDevice], dir: tempfile::TempDir) -> Chain {
        crate::common::logs();
        let ingest = Arc::new(Ingest::new(65536));
        let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &[]).unwrap();
        let telemetry = Arc::new(Telemetry::default());
        let stop = CancellationToken::new();
        relais::sources::opcua::session::spawn_all(devs.to_vec(), ingest.clone(), &telemetry, stop.clone(), dir.path(), "test").unwrap();
        Chain { ingest, buffer, stop, dir, read_to: 0, all: Vec::new() }
    }

    /// Samples committed since the last call (also kept in `all`).
    pub(crate) async fn take(&mut self) -> Vec<Sample> {
        self.ingest.barrier().await;
        let rows = self.buffer.reader().unwrap().read_blocking(self.read_to, u64::MAX, 1_000_000).unwrap();
        if let Some(l) = rows.last() {
            self.read_to = l.seq;
        }
        self.all.extend(rows.iter().cloned());
        rows
    }

    /// Takes samples until `done(new samples so far)` or the timeout; returns
    /// the samples taken during the wait.
    pub(crate) async fn until(&mut self, t: Duration, mut done: impl FnMut(&[Sample]) -> bool) -> Vec<Sample> {
        let deadline = tokio::time::Instant::now() + t;
        let mut got = Vec::new();
        loop {
            got.extend(self.take().await);
            if done(&got) || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The latest sample of every tag in `tags` is good.
pub(crate) fn all_good(samples: &[Sample], tags: &[&str]) -> bool {
    tags.iter().all(|t| of(samples, t).last().is_some_and(|s| s.quality == Quality::Good))
}

fn device(endpoint: &str, extra: &str, tags: &[(&str, &str, &str)]) -> String {
    let mut s = format!("[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"{endpoint}\"\n{extra}\n");
    for (name, node, more) in tags {
        s += &format!("[[device.tag]]\nname = \"{name}\"\nnode_id = \"{node}\"\n{more}\n");
    }
    s
}

/// Field case B14 (Read): one node denied, its neighbour good; the cycle
/// does not fail as a whole.
#[tokio::test]
async fn b14_read_keeps_the_good_node_beside_a_denied_one() {
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(
        &station("s", &[("denied", "i32", "1337"), ("answer", "i32", "42")], &[("denied", "opcua_status = 0x801F0000")]),
        "",
        pki.path(),
    )
    .await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "mode = \"poll\"\npoll_interval = \"200ms\"",
        &[("denied", &format!("nsu={NS};s=s.denied"), ""), ("answer", &format!("nsu={NS};s=s.answer"), "")],
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.until(Duration::from_secs(15), |s| of(s, "answer").len() >= 2 && of(s, "denied").len() >= 2).await;
    let answer = of(&got, "answer");
    assert!(answer.len() >= 2, "no reads: {got:?}");
    for a in &answer {
        assert_eq!((a.quality, &a.value), (Quality::Good, &Value::I64(42)));
        assert_eq!(a.status, Some(0));
    }
    for d in of(&got, "denied") {
        assert_eq!(d.quality, Quality::Bad);
        assert_eq!(d.value, Value::Null);
        assert_eq!(d.status, Some(0x801F_0000));
        assert_eq!(d.reason.as_deref(), Some("opcua_status(0x801F0000): BadUserAccessDenied"));
    }
}

/// Field case B14 (subscription): a value that turns bad arrives as null
/// with its status; the last good value is never re-sent as bad.
#[tokio::test]
async fn b14_subscription_bad_value_is_null_never_the_last_good_one() {
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(&station("s", &[("temp", "f32", "10.0")], &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&device(&ua.endpoint(), "publishing_interval = \"100ms\"", &[("temp", &format!("nsu={NS};s=s.temp"), "")]));
    let mut chain = Chain::start(&devs);
    let first = chain.until(Duration::from_secs(15), |s| !of(s, "temp").is_empty()).await;
    let t1 = of(&first, "temp")[0].clone();
    assert_eq!((t1.quality, &t1.value), (Quality::Good, &Value::F64(10.0)));
    ua.set_status("s", "temp", Some(0x8000_0000)).unwrap();
    let bad = chain.until(Duration::from_secs(10), |s| of(s, "temp").iter().any(|x| x.quality == Quality::Bad)).await;
    let b = of(&bad, "temp").into_iter().find(|x| x.quality == Quality::Bad).expect("a bad sample").clone();
    assert_eq!(b.value, Value::Null);
    assert_eq!(b.status, Some(0x8000_0000));
    assert!(b.ts > t1.ts, "t2 sample has its own timestamp");
    ua.set_status("s", "temp", None).unwrap();
    let back = chain.until(Duration::from_secs(10), |s| of(s, "temp").last().is_some_and(|x| x.quality == Quality::Good)).await;
    assert_eq!(of(&back, "temp").last().unwrap().value, Value::F64(10.0));
    // Never a bad sample with a number, never a good one while it was bad.
    for s in &chain.all {
        if s.quality == Quality::Bad {
            assert_eq!(s.value, Value::Null, "{s:?}");
        }
    }
}

/// Field case B15 end to end: the server's StatusCodes, by severity bits.
#[tokio::test]
async fn b15_status_codes_classified_by_severity_bits() {
    let pki = tempfile::tempdir().unwrap();
    let codes = [
        ("c0", 0x0000_0000u32, Quality::Good),
        ("c1", 0x0000_00C0, Quality::Good),
        ("c2", 0x4000_0000, Quality::Uncertain),
        ("c3", 0x4090_0000, Quality::Uncertain),
        ("c4", 0x8000_0000, Quality::Bad),
        ("c5", 0x8034_0000, Quality::Bad),
        ("c6", 0x801F_0000, Quality::Bad),
    ];
    let tags: Vec<(&str, &str, &str)> = codes.iter().map(|(n, _, _)| (*n, "f64", "1.0")).collect();
    let extras: Vec<(String, String)> = codes.iter().map(|(n, c, _)| (n.to_string(), format!("opcua_status = {c}"))).collect();
    let extras_ref: Vec<(&str, &str)> = extras.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let sim = ua_sim(&station("s", &tags, &extras_ref), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let dtags: Vec<(String, String)> = codes.iter().map(|(n, _, _)| (n.to_string(), format!("nsu={NS};s=s.{n}"))).collect();
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b)| (a.as_str(), b.as_str(), "mode = \"poll\"")).collect();
    let mut chain = Chain::start(&ua_devices(&device(&ua.endpoint(), "poll_interval = \"300ms\"", &dref)));
    let got = chain.until(Duration::from_secs(15), |s| codes.iter().all(|(n, _, _)| !of(s, n).is_empty())).await;
    for (n, code, q) in codes {
        let s = of(&got, n)[0];
        assert_eq!(s.quality, q, "{n} 0x{code:08X}");
        assert_eq!(s.status, Some(code), "{n}: the full code is kept");
        if q == Quality::Bad {
            assert_eq!(s.value, Value::Null);
        } else {
            assert_eq!(s.value, Value::F64(1.0), "{n} 0x{code:08X} keeps its value");
        }
    }
}

/// Field case B16 and the restart test: the server restarts with
/// its namespace table reordered; every tag is good again within 10 s of
/// the server coming back, the outage shows as one comm_failure sample per
/// tag, and the server never sees two sessions of ours.
#[tokio::test]
async fn b16_server_restart_with_renumbered_namespace_recovers_with_one_session() {
    let pki = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let tags: Vec<(&str, &str, &str)> = names.iter().map(|n| (n.as_str(), "i32", "7")).collect();
    let sim = ua_sim(&station("s", &tags, &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let ns_before = ua.namespace_index().unwrap();
    let mut dtags: Vec<(String, String, &str)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        // Half subscribed, half polled: both paths must recover.
        dtags.push((n.clone(), format!("nsu={NS};s=s.{n}"), if i % 2 == 0 { "" } else { "mode = \"poll\"" }));
    }
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
    let names_ref: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "publishing_interval = \"200ms\"\npoll_interval = \"200ms\"\nkeep_alive = \"500ms\"\nrequest_timeout = \"1s\"\nreconnect_max = \"2s\"",
        &dref,
    ));
    let mut chain = Chain::start(&devs);
    let up = chain.until(Duration::from_secs(15), |s| all_good(s, &names_ref)).await;
    assert!(all_good(&up, &names_ref), "not all good before the restart");

    ua.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    ua.restart().await.unwrap();
    let back_at = tokio::time::Instant::now();
    assert_ne!(ua.namespace_index(), Some(ns_before), "the simulator renumbered the namespace");
    let after = chain.until(Duration::from_secs(10), |s| all_good(s, &names_ref)).await;
    assert!(
        all_good(&after, &names_ref),
        "not all tags good within 10 s of the server's return: {:?}",
        after.iter().map(|s| (&*s.meta.tag, s.quality, s.reason.clone())).collect::<Vec<_>>()
    );
    eprintln!("all tags good {:?} after the server came back", back_at.elapsed());
    for n in &names {
        let bad: Vec<&Sample> = chain.all.iter().filter(|s| &*s.meta.tag == n && s.quality == Quality::Bad).collect();
        assert_eq!(bad.len(), 1, "{n}: one comm_failure sample for the outage, got {bad:?}");
        assert!(bad[0].reason.as_deref().unwrap().starts_with("comm_failure"), "{:?}", bad[0].reason);
        let v: Vec<&Sample> = chain.all.iter().filter(|s| &*s.meta.tag == n && s.quality == Quality::Good).collect();
        assert!(v.iter().all(|s| s.value == Value::I64(7)), "{n}: wrong node after renumbering: {v:?}");
    }
    assert!(ua.max_sessions_seen() <= 1, "the server saw {} sessions at once", ua.max_sessions_seen());
}

/// Bugs: a polled tag got two or more bad samples per outage when its Read
/// failed (BadServerHalted, a timeout) before the session noticed the
/// outage: one per failed Read, then the session's comm_failure. A
/// blackhole makes every Read time out (1 s) for a few poll cycles before
/// the keep-alive notices: exactly one bad sample per tag and outage, over
/// two outages.
#[tokio::test]
async fn polled_tags_get_one_bad_sample_per_outage_when_a_read_fails_first() {
    let pki = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    let tags: Vec<(&str, &str, &str)> = names.iter().map(|n| (n.as_str(), "i32", "7")).collect();
    let sim = ua_sim(&station("s", &tags, &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let proxy = crate::common::Proxy::start(ua.local_addr().port()).await;
    let dtags: Vec<(String, String)> = names.iter().map(|n| (n.clone(), format!("nsu={NS};s=s.{n}"))).collect();
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b)| (a.as_str(), b.as_str(), "mode = \"poll\"")).collect();
    let names_ref: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let devs = ua_devices(&device(
        &format!("opc.tcp://127.0.0.1:{}/", proxy.port),
        "poll_interval = \"100ms\"\nkeep_alive = \"2s\"\nrequest_timeout = \"1s\"\nreconnect_max = \"1s\"",
        &dref,
    ));
    let mut chain = Chain::start(&devs);
    for outage in 1..=2 {
        let up = chain.until(Duration::from_secs(15), |s| all_good(s, &names_ref)).await;
        assert!(all_good(&up, &names_ref), "outage {outage}: not all good before it");
        proxy.blackhole(true);
        tokio::time::sleep(Duration::from_secs(6)).await;
        proxy.cut();
        proxy.blackhole(false);
    }
    let back = chain.until(Duration::from_secs(15), |s| all_good(s, &names_ref)).await;
    assert!(all_good(&back, &names_ref), "not back after the second outage");
    for n in &names {
        let bad: Vec<Option<&str>> =
            chain.all.iter().filter(|s| &*s.meta.tag == n && s.quality == Quality::Bad).map(|s| s.reason.as_deref()).collect();
        assert_eq!(bad.len(), 2, "{n}: exactly one bad sample per outage (two outages), got {bad:?}");
    }
}

/// Field case B18: a network blackhole longer than the session timeout; the
/// session cannot be re-activated and subscriptions cannot be transferred,
/// so they are created again; the outage is one bad sample per tag.
#[tokio::test]
async fn b18_blackhole_longer_than_the_session_timeout_resubscribes() {
    let pki = tempfile::tempdir().unwrap();
    let names = ["a", "b", "c", "d", "e"];
    let tags: Vec<(&str, &str, &str)> = names.iter().map(|n| (*n, "f32", "2.5")).collect();
    let sim = ua_sim(&station("s", &tags, &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let proxy = crate::common::Proxy::start(ua.local_addr().port()).await;
    let dtags: Vec<(String, String)> = names.iter().map(|n| (n.to_string(), format!("nsu={NS};s=s.{n}"))).collect();
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b)| (a.as_str(), b.as_str(), "")).collect();
    // The endpoint goes through the proxy; the server advertises its own
    // port, which the client replaces with ours only for the host, so the
    // discovery URL must be the proxy's.
    let devs = ua_devices(&device(
        &format!("opc.tcp://127.0.0.1:{}/", proxy.port),
        "publishing_interval = \"1s\"\nsession_timeout = \"2s\"\nkeep_alive = \"500ms\"\nrequest_timeout = \"1s\"\nreconnect_max = \"2s\"",
        &dref,
    ));
    let mut chain = Chain::start(&devs);
    let up = chain.until(Duration::from_secs(15), |s| all_good(s, &names)).await;
    assert!(all_good(&up, &names), "not up: {up:?}");
    let created_before = ua.sessions_created();

    proxy.blackhole(true);
    let down = chain.until(Duration::from_secs(10), |s| names.iter().all(|n| of(s, n).iter().any(|x| x.quality == Quality::Bad))).await;
    assert!(names.iter().all(|n| of(&down, n).iter().any(|x| x.quality == Quality::Bad)), "the outage was not reported");
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.cut();
    proxy.blackhole(false);
    let back = chain.until(Duration::from_secs(15), |s| all_good(s, &names)).await;
    assert!(all_good(&back, &names), "not back after the blackhole: {back:?}");
    for n in names {
        let bad = chain.all.iter().filter(|s| &*s.meta.tag == n && s.quality == Quality::Bad).count();
        assert_eq!(bad, 1, "{n}: one bad sample for the outage, not a flood");
    }
    assert!(ua.sessions_created() > created_before, "a new session was needed (the old one timed out)");
    assert!(ua.max_sessions_seen() <= 1, "two sessions at once");
}

/// Field case B19: a stable client certificate; a clear error while the
/// server does not trust it; connected once trusted, without a restart.
#[tokio::test]
async fn b19_client_certificate_is_stable_and_trust_is_picked_up_without_restart() {
    let sim_pki = tempfile::tempdir().unwrap();
    let sim =
        ua_sim(&station("s", &[("v", "i32", "5")], &[]), "security = [\"Basic256Sha256\"]\ntrust_client_certs = false", sim_pki.path())
            .await;
    let ua = sim.opcua().unwrap();
    let server_cert = ua.certificate_path();
    let dev = device(
        &ua.endpoint(),
        &format!(
            "security_policy = \"Basic256Sha256\"\nsecurity_mode = \"SignAndEncrypt\"\ntrust_server_certificate = {:?}\nreconnect_max = \"1s\"\nkeep_alive = \"500ms\"",
            server_cert.display().to_string()
        ),
        &[("v", &format!("nsu={NS};s=s.v"), "")],
    );
    let devs = ua_devices(&dev);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();

    // First start: the certificate is made; the server rejects it.
    let mut chain = Chain::start_in(&devs, dir);
    let got = chain.until(Duration::from_secs(20), |s| !of(s, "v").is_empty()).await;
    let first = of(&got, "v")[0].clone();
    assert_eq!(first.quality, Quality::Bad);
    let reason = first.reason.as_deref().unwrap();
    let cert = std::fs::read(chain.pki().join("own/cert.der")).unwrap();
    let key_mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(chain.pki().join("private/private.pem")).unwrap().permissions());
    assert_eq!(key_mode & 0o077, 0, "the private key is readable by the owner only");
    assert!(reason.contains("does not trust the gateway's client certificate"), "{reason}");
    let thumb = relais::sources::opcua::client::Pki::open(&chain.pki(), "test").unwrap().thumbprint;
    assert!(reason.contains(&thumb), "the error names the thumbprint: {reason}");
    let dir = std::mem::replace(&mut chain.dir, tempfile::tempdir().unwrap());
    drop(chain);

    // Second start: the same certificate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut chain = Chain::start_in(&devs, dir);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(std::fs::read(data.join("pki/own/cert.der")).unwrap(), cert, "same certificate on the second start");
    // Trust it on the server while the gateway runs.
    let rejected = sim_pki.path().join("rejected");
    let found =
        crate::common::eventually(Duration::from_secs(15), || std::fs::read_dir(&rejected).map(|d| d.count() > 0).unwrap_or(false)).await;
    assert!(found, "the server kept our certificate in its rejected folder");
    for e in std::fs::read_dir(&rejected).unwrap() {
        let e = e.unwrap();
        std::fs::rename(e.path(), sim_pki.path().join("trusted").join(e.file_name())).unwrap();
    }
    let ok = chain.until(Duration::from_secs(20), |s| of(s, "v").last().is_some_and(|x| x.quality == Quality::Good)).await;
    assert_eq!(of(&ok, "v").last().map(|s| &s.value), Some(&Value::I64(5)), "connected once trusted, without restart");
    assert_eq!(std::fs::read(data.join("pki/own/cert.der")).unwrap(), cert, "no new certificate");
}

/// Field case B19, server side: without the server's certificate in the
/// trust list the connection is refused (no fallback to None), and the
/// error says where the certificate was put and how to trust it.
#[tokio::test]
async fn b19_untrusted_server_certificate_is_refused_with_instructions() {
    let sim_pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(&station("s", &[("v", "i32", "5")], &[]), "security = [\"None\", \"Basic256Sha256\"]", sim_pki.path()).await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "security_policy = \"Basic256Sha256\"\nreconnect_max = \"1s\"",
        &[("v", &format!("nsu={NS};s=s.v"), "")],
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.until(Duration::from_secs(20), |s| !of(s, "v").is_empty()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = chain.take().await;
    let first = of(&got, "v")[0];
    assert_eq!(first.quality, Quality::Bad);
    let reason = first.reason.as_deref().unwrap();
    assert!(reason.contains("does not trust the server's certificate"), "{reason}");
    assert!(reason.contains("rejected"), "{reason}");
    assert!(of(&all, "v").iter().chain(of(&got, "v").iter()).all(|s| s.quality == Quality::Bad), "no silent fallback to None");
    // Trusting the rejected file (as the message says) connects without restart.
    let rejected = chain.pki().join("rejected");
    for e in std::fs::read_dir(&rejected).unwrap() {
        let e = e.unwrap();
        std::fs::rename(e.path(), chain.pki().join("trusted").join(e.file_name())).unwrap();
    }
    let ok = chain.until(Duration::from_secs(20), |s| of(s, "v").last().is_some_and(|x| x.quality == Quality::Good)).await;
    assert_eq!(of(&ok, "v").last().map(|s| &s.value), Some(&Value::I64(5)));
}

/// Username/password identity, and a clear error for a wrong password.
#[tokio::test]
async fn user_identity_and_a_wrong_password() {
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(
        &station("s", &[("v", "i32", "9")], &[]),
        "anonymous = false\nusers = [{ username = \"operator\", password = \"s3cret\" }]",
        pki.path(),
    )
    .await;
    let ua = sim.opcua().unwrap();
    let tag = [("v", format!("nsu={NS};s=s.v"), "")];
    let tref: Vec<(&str, &str, &str)> = tag.iter().map(|(a, b, c)| (*a, b.as_str(), *c)).collect();
    let good = ua_devices(&device(&ua.endpoint(), "username = \"operator\"\npassword = \"s3cret\"", &tref));
    let mut chain = Chain::start(&good);
    let got = chain.until(Duration::from_secs(15), |s| of(s, "v").iter().any(|x| x.quality == Quality::Good)).await;
    assert!(of(&got, "v").iter().any(|x| x.value == Value::I64(9)), "{got:?}");
    drop(chain);
    let wrong = ua_devices(&device(
        &ua.endpoint(),
        "username = \"operator\"\npassword = \"nope\"\nreconnect_max = \"500ms\"\nsession_timeout = \"3s\"\nkeep_alive = \"1s\"",
        &tref,
    ));
    let mut chain = Chain::start(&wrong);
    let got = chain.until(Duration::from_secs(15), |s| !of(s, "v").is_empty()).await;
    let s = of(&got, "v")[0];
    assert_eq!(s.quality, Quality::Bad);
    assert!(s.reason.as_deref().unwrap().contains("rejected the user identity"), "{:?}", s.reason);
    assert!(!s.reason.as_deref().unwrap().contains("nope"), "the password never appears");
    // Each refused ActivateSession leaves a session on the server until its
    // timeout: retried every 500 ms they piled up (BadTooManySessions, the
    // operators locked out). Retries now wait for the session timeout.
    let created = ua.sessions_created();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let more = ua.sessions_created() - created;
    assert!(more <= 3, "{more} sessions created in 8 s with a wrong password");
    assert!(ua.max_sessions_seen() <= 3, "{} sessions open at once", ua.max_sessions_seen());
}

/// Unknown nodes and namespaces are bad samples with the reason; their
/// neighbours are unaffected.
#[tokio::test]
async fn unknown_nodes_and_namespaces_do_not_touch_their_neighbours() {
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(&station("s", &[("v", "i32", "3")], &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "publishing_interval = \"200ms\"",
        &[
            ("v", &format!("nsu={NS};s=s.v"), ""),
            ("no_node", &format!("nsu={NS};s=s.nothing"), ""),
            ("no_ns", "nsu=urn:not:here;s=x", ""),
            ("polled_no_node", &format!("nsu={NS};s=s.nothing"), "mode = \"poll\""),
        ],
    ));
    let mut chain = Chain::start(&devs);
    let got =
        chain.until(Duration::from_secs(15), |s| ["v", "no_node", "no_ns", "polled_no_node"].iter().all(|t| !of(s, t).is_empty())).await;
    assert_eq!(of(&got, "v")[0].value, Value::I64(3));
    assert!(of(&got, "no_node")[0].reason.as_deref().unwrap().contains("BadNodeIdUnknown"), "{:?}", of(&got, "no_node")[0]);
    assert!(of(&got, "no_ns")[0].reason.as_deref().unwrap().starts_with("config_error"), "{:?}", of(&got, "no_ns")[0]);
    assert!(of(&got, "no_ns")[0].reason.as_deref().unwrap().contains("urn:not:here"));
    assert!(of(&got, "polled_no_node")[0].reason.as_deref().unwrap().contains("BadNodeIdUnknown"));
}

/// A server that is down at start: one bad sample per tag, then data once
/// it is up, without a flood of samples meanwhile.
#[tokio::test]
async fn a_server_down_at_start_is_waited_for() {
    let port = crate::common::free_port();
    let devs =
        ua_devices(&device(&format!("opc.tcp://127.0.0.1:{port}/"), "reconnect_max = \"1s\"", &[("v", &format!("nsu={NS};s=s.v"), "")]));
    let mut chain = Chain::start(&devs);
    let got = chain.until(Duration::from_secs(5), |s| !of(s, "v").is_empty()).await;
    assert!(of(&got, "v")[0].reason.as_deref().unwrap().starts_with("comm_failure"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(of(&chain.take().await, "v").len(), 0, "no repeated samples while down");
    let pki = tempfile::tempdir().unwrap();
    let toml = format!(
        "[opcua]\nlisten = \"127.0.0.1:{port}\"\npki_dir = {:?}\n{}",
        pki.path().display().to_string(),
        station("s", &[("v", "i32", "11")], &[])
    );
    let _sim = Sim::start(SimConfig::parse(&toml, "sim.toml", Path::new(".")).unwrap()).await.unwrap();
    let ok = chain.until(Duration::from_secs(10), |s| of(s, "v").iter().any(|x| x.quality == Quality::Good)).await;
    assert_eq!(of(&ok, "v").iter().find(|x| x.quality == Quality::Good).map(|s| &s.value), Some(&Value::I64(11)));
}

/// `relais browse`'s walk finds the simulator's stations with nsu= NodeIds,
/// and its snippet is a valid config.
#[tokio::test]
async fn browse_lists_the_stations_and_the_snippet_loads() {
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(&station("press", &[("force", "f32", "1.5"), ("count", "u32", "3")], &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let dev = ua_devices(&device(&ua.endpoint(), "", &[])).remove(0);
    let cpki = tempfile::tempdir().unwrap();
    let p = relais::sources::opcua::client::Pki::open(cpki.path(), "test").unwrap();
    let found = relais::sources::opcua::browse::browse(&dev, &p, "test", "i=85", 3, false).await.unwrap();
    let tree = relais::sources::opcua::browse::render_tree(&found);
    assert!(tree.contains(&format!("force  nsu={NS};s=press.force  Variable  Double  read")), "{tree}");
    assert!(tree.contains(&format!("setpoint  nsu={NS};s=press.setpoint  Variable  Double  read/write")), "{tree}");
    assert!(!tree.contains("ServerCapabilities"), "standard objects are not expanded: {tree}");
    assert!(tree.starts_with("Objects  i=85  Object\n"), "the start node heads the tree: {tree}");
    let missing = relais::sources::opcua::browse::browse(&dev, &p, "test", &format!("nsu={NS};s=nosuch"), 3, false).await;
    assert!(missing.unwrap_err().to_string().contains("no such node"), "a start node that does not exist is an error");
    let snippet = relais::sources::opcua::browse::render_snippet(&found, "press", &ua.endpoint());
    let cfg =
        Config::parse(&format!("[gateway]\nid = \"g\"\n{snippet}"), "snippet", Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{snippet}"));
    let DeviceConfig::OpcUa(d) = &cfg.devices[0] else { panic!() };
    assert_eq!(d.tags.len(), 3, "{snippet}");
}

/// A third-party server: Python's asyncua (pip install asyncua). Skipped
/// when it is not installed, unless RELAIS_REQUIRE_ASYNCUA=1 (CI installs it).
#[cfg_attr(relais_no_asyncua, ignore = "Python asyncua absent: pip install asyncua or set RELAIS_PYTHON (decided at build time, build.rs)")]
#[tokio::test]
async fn third_party_asyncua_server_read_and_subscribe() {
    let python = std::env::var("RELAIS_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python).args(["-c", "import asyncua"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !has {
        if std::env::var("RELAIS_REQUIRE_ASYNCUA").as_deref() == Ok("1") {
            panic!("Python asyncua is required (RELAIS_REQUIRE_ASYNCUA=1) but `{python} -c 'import asyncua'` fails");
        }
        eprintln!("SKIPPED: Python asyncua not installed (pip install asyncua, or set RELAIS_PYTHON)");
        return;
    }
    let port = crate::common::free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opcua/asyncua_server.py");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(
        std::process::Command::new(&python)
            .arg(&script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = crate::common::eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    assert!(up, "the asyncua server did not start");
    let ns = "urn:relais:test:asyncua";
    let devs = ua_devices(&device(
        &format!("opc.tcp://127.0.0.1:{port}/"),
        "publishing_interval = \"200ms\"\nreconnect_max = \"1s\"",
        &[
            ("counter", &format!("nsu={ns};s=line.counter"), ""),
            ("temperature", &format!("nsu={ns};s=line.temperature"), "mode = \"poll\"\npoll_interval = \"300ms\""),
            ("running", &format!("nsu={ns};s=line.running"), ""),
        ],
    ));
    let mut chain = Chain::start(&devs);
    let got = chain
        .until(Duration::from_secs(20), |s| of(s, "counter").len() >= 3 && !of(s, "temperature").is_empty() && !of(s, "running").is_empty())
        .await;
    let counters: Vec<i64> = of(&got, "counter").iter().filter_map(|s| if let Value::I64(v) = s.value { Some(v) } else { None }).collect();
    assert!(counters.len() >= 3, "{got:?}");
    assert!(counters.windows(2).all(|w| w[1] > w[0]), "a counter that increases: {counters:?}");
    assert_eq!(of(&got, "temperature")[0].value, Value::F64(21.5));
    assert_eq!(of(&got, "running")[0].value, Value::Bool(true));
}

/// The whole chain: the simulator's OPC UA server → relais (a secure
/// Basic256Sha256/SignAndEncrypt device and a security None one) → SQLite →
/// a real Mosquitto; values, status codes and server timestamps arrive on MQTT.
#[tokio::test]
async fn values_from_secure_and_plain_endpoints_arrive_on_mqtt() {
    let Some(broker) = crate::common::Mosquitto::start() else { return };
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(
        &station("press", &[("force", "f64", "12.5"), ("strokes", "u32", "77")], &[]),
        "security = [\"None\", \"Basic256Sha256\"]",
        pki.path(),
    )
    .await;
    let ua = sim.opcua().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopic = \"lab/{{device}}/{{tag}}\"\n",
        device(
            &ua.endpoint(),
            &format!(
                "security_policy = \"Basic256Sha256\"\nsecurity_mode = \"SignAndEncrypt\"\ntrust_server_certificate = {:?}",
                ua.certificate_path().display().to_string()
            ),
            &[("force", &format!("nsu={NS};s=press.force"), ""), ("strokes", &format!("nsu={NS};s=press.strokes"), "mode = \"poll\"")],
        ),
        device(&ua.endpoint(), "", &[("force", &format!("nsu={NS};s=press.force"), "")]).replace("name = \"plc\"", "name = \"plain\""),
        broker.port
    );
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n{body}",
        dir.path().join("data").display()
    );
    let cfg = Config::parse(&text, "ua.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut sub = crate::common::Sub::new(broker.port, "lab/#").await;
    let gw = relais::app::Gateway::start(cfg, relais::app::RunOptions::default()).await.unwrap();
    let msgs = sub
        .collect(Duration::from_secs(30), |m| {
            ["lab/plc/force", "lab/plc/strokes", "lab/plain/force"].iter().all(|t| m.iter().any(|x| x.topic == *t))
        })
        .await;
    gw.shutdown().await.unwrap();
    for (topic, value) in [
        ("lab/plc/force", serde_json::json!(12.5)),
        ("lab/plc/strokes", serde_json::json!(77)),
        ("lab/plain/force", serde_json::json!(12.5)),
    ] {
        let m = msgs.iter().find(|m| m.topic == topic).unwrap_or_else(|| panic!("nothing on {topic}: {msgs:?}"));
        let j = m.json();
        assert_eq!(j["value"], value, "{topic}: {j}");
        assert_eq!(j["quality"], "good");
        assert_eq!(j["status_code"], 0);
        assert!(j["server_ts"].is_string(), "server timestamp kept: {j}");
    }
}

/// A short network cut: the session survives on the server, so relais
/// re-activates it (no second session, subscriptions kept) and the tags
/// marked bad during the cut are good again at once (their current values
/// are read, since an unchanged value is never re-published).
#[tokio::test]
async fn a_short_cut_reactivates_the_same_session() {
    let pki = tempfile::tempdir().unwrap();
    let mut st = station("s", &[("a", "i32", "1"), ("b", "i32", "2")], &[]);
    st += "[[station.tag]]\nname = \"c\"\ntable = \"holding\"\naddress = 40\ntype = \"u32\"\nsignal = { kind = \"counter\", start = 0, step = 1 }\n";
    let sim = ua_sim(&st, "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let proxy = crate::common::Proxy::start(ua.local_addr().port()).await;
    let devs = ua_devices(&device(
        &format!("opc.tcp://127.0.0.1:{}/", proxy.port),
        "publishing_interval = \"200ms\"\nsession_timeout = \"60s\"\nkeep_alive = \"500ms\"\nreconnect_max = \"1s\"",
        &[("a", &format!("nsu={NS};s=s.a"), ""), ("b", &format!("nsu={NS};s=s.b"), ""), ("c", &format!("nsu={NS};s=s.c"), "")],
    ));
    let mut chain = Chain::start(&devs);
    assert!(all_good(&chain.until(Duration::from_secs(15), |s| all_good(s, &["a", "b", "c"])).await, &["a", "b"]));
    let created = ua.sessions_created();
    proxy.cut();
    let down = chain.until(Duration::from_secs(10), |s| of(s, "a").iter().any(|x| x.quality == Quality::Bad)).await;
    assert!(of(&down, "a").iter().any(|x| x.quality == Quality::Bad), "the cut was not reported");
    // The good samples may already have come with the bad ones: look at
    // the latest of everything taken.
    let mut since_down = down;
    if !all_good(&since_down, &["a", "b"]) {
        since_down.extend(chain.until(Duration::from_secs(15), |s| all_good(s, &["a", "b"])).await);
    }
    assert!(all_good(&since_down, &["a", "b"]), "constant values are good again after the cut: {since_down:?}");
    assert_eq!(of(&since_down, "a").last().unwrap().value, Value::I64(1));
    assert_eq!(ua.sessions_created(), created, "the same session was re-activated, no new one");
    assert!(ua.max_sessions_seen() <= 1);
    // The subscription keeps publishing after the re-activation: the counter
    // goes on changing (it stopped for good: the library's new publish loop
    // waited for a trigger that only creating a subscription gives).
    let later = chain.until(Duration::from_secs(5), |s| of(s, "c").iter().filter(|x| x.quality == Quality::Good).count() >= 10).await;
    let counts: Vec<&Value> = of(&later, "c").iter().filter(|x| x.quality == Quality::Good).map(|x| &x.value).collect();
    assert!(counts.len() >= 10, "the subscription went on publishing after the re-activation: {counts:?}");
}

/// More tags than the server allows in one subscription (the simulator, like
/// many PLCs, takes 1000 MonitoredItems per subscription): relais splits
/// them over several subscriptions, and every tag delivers.
#[tokio::test]
async fn more_items_than_the_servers_limit_per_subscription() {
    let pki = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..2500).map(|i| format!("t{i}")).collect();
    let tags: Vec<(&str, &str, &str)> = names.iter().map(|n| (n.as_str(), "u16", "3")).collect();
    let sim = ua_sim(&station("big", &tags, &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let dtags: Vec<(String, String)> = names.iter().map(|n| (n.clone(), format!("nsu={NS};s=big.{n}"))).collect();
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b)| (a.as_str(), b.as_str(), "")).collect();
    let mut chain = Chain::start(&ua_devices(&device(&ua.endpoint(), "publishing_interval = \"200ms\"", &dref)));
    let got = chain.until(Duration::from_secs(30), |s| s.iter().filter(|x| x.quality == Quality::Good).count() >= 2500).await;
    let good: std::collections::HashSet<&str> = got.iter().filter(|x| x.quality == Quality::Good).map(|x| &*x.meta.tag).collect();
    assert_eq!(
        good.len(),
        2500,
        "every tag delivered; bad ones: {:?}",
        got.iter().filter(|x| x.quality == Quality::Bad).take(3).collect::<Vec<_>>()
    );
}

/// Field case B19, first contact: neither side trusts the other yet. The
/// server refuses first, so that is what relais says, and it adds that the
/// server's certificate is not trusted on our side either; it never names a
/// rejected file that does not exist.
#[tokio::test]
async fn b19_first_contact_blames_the_side_that_refused() {
    let sim_pki = tempfile::tempdir().unwrap();
    let sim =
        ua_sim(&station("s", &[("v", "i32", "5")], &[]), "security = [\"Basic256Sha256\"]\ntrust_client_certs = false", sim_pki.path())
            .await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "security_policy = \"Basic256Sha256\"\nreconnect_max = \"1s\"",
        &[("v", &format!("nsu={NS};s=s.v"), "")],
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.until(Duration::from_secs(20), |s| !of(s, "v").is_empty()).await;
    let reason = of(&got, "v")[0].reason.clone().unwrap();
    assert!(reason.contains("the server does not trust the gateway's client certificate"), "{reason}");
    assert!(reason.contains("does not trust the server's certificate yet either"), "{reason}");
    assert!(!reason.contains("it is in"), "no claim about a file that is not there: {reason}");
}

/// A connect failure is blamed on the network when the network is the
/// problem, also for a secure device: a refused port or an unknown host is
/// said in plain words, never "certificate".
#[tokio::test]
async fn connect_failures_name_the_network_cause() {
    use relais::sources::opcua::client::{Pki, explain};
    let port = crate::common::free_port();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::open(pki_dir.path(), "test").unwrap();
    let dev = ua_devices(&device(&format!("opc.tcp://127.0.0.1:{port}/"), "security_policy = \"Basic256Sha256\"", &[])).remove(0);
    let why = explain(opcua::types::StatusCode::BadCommunicationError, &dev, &pki, &opcua::types::EndpointDescription::default()).await;
    assert!(why.contains("refused"), "{why}");
    assert!(!why.contains("certificate"), "{why}");
    let dev = ua_devices(&device("opc.tcp://no-such-host.invalid:4840/", "security_policy = \"Basic256Sha256\"", &[])).remove(0);
    let why = explain(opcua::types::StatusCode::BadTcpEndpointUrlInvalid, &dev, &pki, &opcua::types::EndpointDescription::default()).await;
    assert!(why.contains("cannot resolve no-such-host.invalid"), "{why}");
}

/// A security policy the server does not offer is a configuration error:
/// logged and reported once, not a new bad sample every retry.
#[tokio::test]
async fn a_policy_the_server_lacks_is_reported_once() {
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(&station("s", &[("v", "i32", "5")], &[]), "security = [\"None\"]", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "security_policy = \"Basic256Sha256\"\nreconnect_max = \"200ms\"",
        &[("v", &format!("nsu={NS};s=s.v"), "")],
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.until(Duration::from_secs(10), |s| !of(s, "v").is_empty()).await;
    let reason = of(&got, "v")[0].reason.clone().unwrap();
    assert!(reason.starts_with("config_error") && reason.contains("it offers: None/None"), "{reason}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(of(&chain.take().await, "v").len(), 0, "no new sample while nothing changes");
}

/// A port that accepts TCP and never speaks OPC UA held the connect for ever:
/// no sample, no log line, `relais browse` hung. The opening handshake has a
/// deadline now: the tags get a bad sample that says what was found there.
#[tokio::test]
async fn a_port_that_never_speaks_opc_ua_is_reported() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c); // accepted, never answered
        }
    });
    let devs = ua_devices(&device(
        &format!("opc.tcp://127.0.0.1:{port}/"),
        "request_timeout = \"1s\"\nreconnect_max = \"1s\"",
        &[("v", "ns=2;s=v", "")],
    ));
    let mut chain = Chain::start(&devs);
    let got = chain.until(Duration::from_secs(15), |s| !of(s, "v").is_empty()).await;
    let s = of(&got, "v").first().copied().cloned().expect("a bad sample within 15 s");
    assert_eq!(s.quality, Quality::Bad);
    assert!(s.reason.as_deref().unwrap().contains("gave no OPC UA answer within"), "{:?}", s.reason);
    held.abort();
}

/// Station "s" with `n` constant u16 tags `t0`…: (their names, the station).
fn many_tags(n: usize) -> (Vec<String>, String) {
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let tags: Vec<(&str, &str, &str)> = names.iter().map(|n| (n.as_str(), "u16", "3")).collect();
    let st = station("s", &tags, &[]);
    (names, st)
}

/// A device at `endpoint` subscribing each of `names` (tags of station "s")
/// at its own publishing interval: one subscription per tag.
fn one_subscription_each(endpoint: &str, extra: &str, names: &[String]) -> Vec<OpcUaDevice> {
    let dtags: Vec<(String, String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), format!("nsu={NS};s=s.{n}"), format!("publishing_interval = \"{}ms\"", 200 + i * 10)))
        .collect();
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    ua_devices(&device(endpoint, extra, &dref))
}

/// More subscriptions than the server allows a session (the simulator, like
/// many servers, takes 10): the refused ones' tags got nothing at all, for
/// ever, while the device showed up. Now they are bad with the server's
/// reason and retried; the others deliver.
#[tokio::test]
async fn refused_subscriptions_make_their_tags_bad_and_leave_the_others() {
    let pki = tempfile::tempdir().unwrap();
    let (names, st) = many_tags(12);
    let sim = ua_sim(&st, "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let mut chain = Chain::start(&one_subscription_each(&ua.endpoint(), "", &names));
    let got = chain.until(Duration::from_secs(20), |s| names.iter().all(|n| !of(s, n).is_empty())).await;
    let good = names.iter().filter(|n| of(&got, n).iter().any(|x| x.quality == Quality::Good)).count();
    let bad: Vec<&Sample> = names.iter().filter_map(|n| of(&got, n).into_iter().find(|x| x.quality == Quality::Bad)).collect();
    assert_eq!(good, 10, "ten subscriptions deliver");
    assert_eq!(bad.len(), 2, "the two refused ones are bad: {got:?}");
    assert!(bad.iter().all(|b| b.reason.as_deref().unwrap().contains("BadTooManySubscriptions")), "{bad:?}");
}

/// The server's full allowance of subscriptions (10 on the simulator) and a
/// restart with the namespace renumbered: the lost subscriptions were
/// forgotten in one DeleteSubscriptions call over the server's operation
/// limit, which left a helper subscription on the server; one recreated
/// subscription was then refused (BadTooManySubscriptions) and its tags
/// stayed bad for 30 s. Every tag must be good within 10 s.
#[tokio::test]
async fn a_restart_with_all_subscriptions_in_use_recovers_every_tag() {
    let pki = tempfile::tempdir().unwrap();
    let (names, st) = many_tags(10);
    let sim = ua_sim(&st, "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let names_ref: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let mut chain = Chain::start(&one_subscription_each(
        &ua.endpoint(),
        "keep_alive = \"500ms\"\nrequest_timeout = \"1s\"\nreconnect_max = \"1s\"",
        &names,
    ));
    assert!(all_good(&chain.until(Duration::from_secs(15), |s| all_good(s, &names_ref)).await, &names_ref), "ten subscriptions up");
    ua.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    ua.restart().await.unwrap();
    let after = chain.until(Duration::from_secs(10), |s| all_good(s, &names_ref)).await;
    assert!(
        all_good(&after, &names_ref),
        "not all tags good within 10 s: {:?}",
        after.iter().filter(|s| s.quality != Quality::Good).map(|s| (&*s.meta.tag, s.reason.clone())).collect::<Vec<_>>()
    );
}

/// Refused subscriptions and a short cut: after the re-activation, the
/// refused subscriptions' tags were read once, looked good, and never
/// changed again. They must stay bad (their latest sample says why).
#[tokio::test]
async fn refused_subscriptions_stay_bad_across_a_reactivation() {
    let pki = tempfile::tempdir().unwrap();
    let (names, st) = many_tags(12);
    let sim = ua_sim(&st, "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let proxy = crate::common::Proxy::start(ua.local_addr().port()).await;
    let endpoint = format!("opc.tcp://127.0.0.1:{}/", proxy.port);
    let mut chain = Chain::start(&one_subscription_each(
        &endpoint,
        "session_timeout = \"60s\"\nkeep_alive = \"500ms\"\nreconnect_max = \"1s\"",
        &names,
    ));
    let got = chain.until(Duration::from_secs(20), |s| names.iter().all(|n| !of(s, n).is_empty())).await;
    let refused: Vec<&String> = names.iter().filter(|n| !of(&got, n).iter().any(|x| x.quality == Quality::Good)).collect();
    assert_eq!(refused.len(), 2, "{got:?}");
    let created = ua.sessions_created();
    proxy.cut();
    let after = chain.until(Duration::from_secs(8), |_| false).await;
    assert_eq!(ua.sessions_created(), created, "re-activated, not a new session");
    for n in &refused {
        let mine = of(&after, n);
        assert!(mine.iter().all(|x| x.quality == Quality::Bad), "{n} looked good after the cut: {mine:?}");
        assert!(mine.last().is_some_and(|x| x.reason.as_deref().unwrap().contains("BadTooManySubscriptions")), "{n}: {mine:?}");
    }
}

/// Issue 9 item 16: a subscribed-only device reports every outage, also a
/// new one soon after the previous one and with the same reason: the server
/// stopped three times within a minute gives each tag exactly one bad
/// sample per outage, inside that outage, and good values after each.
#[tokio::test]
async fn subscribed_only_tags_report_each_of_three_quick_outages() {
    let pki = tempfile::tempdir().unwrap();
    let names = ["a", "b", "c"];
    let tags: Vec<(&str, &str, &str)> = names.iter().map(|n| (*n, "i32", "4")).collect();
    let sim = ua_sim(&station("s", &tags, &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let dtags: Vec<(String, String)> = names.iter().map(|n| (n.to_string(), format!("nsu={NS};s=s.{n}"))).collect();
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b)| (a.as_str(), b.as_str(), "")).collect();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "publishing_interval = \"200ms\"\nkeep_alive = \"500ms\"\nrequest_timeout = \"1s\"\nreconnect_max = \"1s\"",
        &dref,
    ));
    let mut chain = Chain::start(&devs);
    assert!(all_good(&chain.until(Duration::from_secs(15), |s| all_good(s, &names)).await, &names), "not up");
    let started = tokio::time::Instant::now();
    let mut windows = Vec::new();
    for round in 1..=3 {
        chain.take().await;
        let from = chain.read_to;
        ua.stop();
        let down = chain.until(Duration::from_secs(10), |s| names.iter().all(|n| of(s, n).iter().any(|x| x.quality == Quality::Bad))).await;
        assert!(names.iter().all(|n| of(&down, n).iter().any(|x| x.quality == Quality::Bad)), "outage {round} not reported: {down:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        chain.take().await;
        let to = chain.read_to;
        ua.restart().await.unwrap();
        let back = chain.until(Duration::from_secs(15), |s| all_good(s, &names)).await;
        assert!(all_good(&back, &names), "not good again after outage {round}: {back:?}");
        windows.push((from, to));
    }
    assert!(started.elapsed() < Duration::from_secs(60), "three outages within a minute ({:?})", started.elapsed());
    for n in names {
        let bad: Vec<&Sample> = chain.all.iter().filter(|s| &*s.meta.tag == n && s.quality == Quality::Bad).collect();
        assert_eq!(bad.len(), 3, "{n}: one bad sample per outage: {bad:?}");
        for (k, (from, to)) in windows.iter().enumerate() {
            let inside = bad.iter().filter(|s| s.seq > *from && s.seq <= *to).count();
            assert_eq!(inside, 1, "{n}: outage {} has {inside} bad samples", k + 1);
        }
        assert!(bad.iter().all(|s| s.reason.as_deref().unwrap_or("").starts_with("comm_failure")), "{bad:?}");
    }
}

/// Issue 8 item 8 (OPC UA): with the ring full, data changes wait in a
/// bounded queue (16,384 samples plus one Publish response of at most
/// 4,096), the gateway stops reading Publish responses, and nothing it took
/// is lost: once the ring drains every sample counted reaches the buffer.
#[tokio::test]
async fn data_changes_wait_in_a_bounded_queue_while_the_ring_is_full() {
    crate::common::logs();
    let pki = tempfile::tempdir().unwrap();
    let n = 2000;
    let mut st = String::from("[[station]]\nname = \"s\"\ntick = \"100ms\"\n");
    for i in 0..n {
        st += &format!(
            "[[station.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {}\ntype = \"u32\"\nsignal = {{ kind = \"counter\", start = 0, step = 1 }}\n",
            i * 2
        );
    }
    let sim = ua_sim(&st, "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let dtags: Vec<(String, String)> = (0..n).map(|i| (format!("t{i}"), format!("nsu={NS};s=s.t{i}"))).collect();
    let dref: Vec<(&str, &str, &str)> = dtags.iter().map(|(a, b)| (a.as_str(), b.as_str(), "sampling_interval = \"100ms\"")).collect();
    let devs = ua_devices(&device(&ua.endpoint(), "publishing_interval = \"100ms\"", &dref));
    // A small ring nobody drains yet: it fills at once.
    let dir = tempfile::tempdir().unwrap();
    let ingest = Arc::new(Ingest::new(1024));
    let telemetry = Arc::new(Telemetry::default());
    let stop = CancellationToken::new();
    relais::sources::opcua::session::spawn_all(devs, ingest.clone(), &telemetry, stop.clone(), dir.path(), "test").unwrap();
    let stats = telemetry.devices().into_iter().find(|d| d.name == "plc").unwrap();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = tokio::time::Instant::now();
    while load(&stats.pending_peak) < 8192 && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 2,000 items changing every 100 ms: 20,000 samples/s for 6 s more.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let peak = load(&stats.pending_peak);
    eprintln!("peak of samples waiting for the ring: {peak}");
    assert!(peak >= 8192, "the queue was loaded (peak {peak})");
    assert!(peak <= 16_384 + 4_096, "samples waiting for the ring stay bounded: peak {peak}");
    // The ring drains: values flow again, and every sample counted arrives.
    let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &[]).unwrap();
    let before = load(&stats.good);
    let t1 = tokio::time::Instant::now();
    while load(&stats.good) < before + 3 * n as u64 && t1.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(load(&stats.good) >= before + 3 * n as u64, "values flow again after the stall");
    ua.stop();
    let t2 = tokio::time::Instant::now();
    while !(load(&stats.pending) == 0 && load(&stats.bad) >= n as u64) && t2.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ingest.barrier().await;
    let rows = buffer.reader().unwrap().read_blocking(0, u64::MAX, 10_000_000).unwrap();
    let counted = load(&stats.good) + load(&stats.bad);
    assert_eq!(rows.len() as u64, counted, "every sample the device counted reached the buffer");
    stop.cancel();
}

/// Issue 9 item 18: a tag addressed by namespace index (`ns=2;…`) is
/// warned at load (`check` prints it, `run` logs it) with the advice to use
/// `nsu=`: servers renumber their namespaces and a stale index reads another
/// node without any error. Indexes 0 (OPC UA) and 1 (the server's own) are
/// fixed by OPC UA Part 3 §8.2.1 and stay quiet, as do `nsu=` tags.
#[test]
fn a_tag_by_namespace_index_is_warned_to_use_nsu() {
    let text = format!(
        "[gateway]\nid = \"test\"\n{}",
        device(
            "opc.tcp://127.0.0.1:4840",
            "",
            &[
                ("a", "ns=2;s=Line5.Press.Force", ""),
                ("b", "ns=3;i=1001", ""),
                ("c", "ns=1;i=7", ""),
                ("d", "i=2258", ""),
                ("e", &format!("nsu={NS};s=s.x"), ""),
            ],
        )
    );
    let cfg = Config::parse(&text, "devices.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    let ns: Vec<&String> = w.iter().filter(|m| m.contains("nsu=")).collect();
    assert_eq!(ns.len(), 1, "one warning per device: {w:?}");
    let m = ns[0];
    assert!(m.contains("2 tags") && m.contains("\"a\" (ns=2)") && m.contains("\"b\" (ns=3)"), "{m}");
    assert!(m.contains("renumber") && m.contains("relais browse opc.tcp://127.0.0.1:4840"), "{m}");
    assert!(!m.contains("\"c\"") && !m.contains("\"d\"") && !m.contains("\"e\""), "{m}");
    assert!(m.starts_with("devices.toml:"), "located at the first such tag: {m}");
}

/// Issue 8 item 6 for OPC UA: the session's transitions are events beside
/// the samples (the log lines stay): `device.up` when the first session is
/// active, `device.down` with the cause when it is lost, `device.up` with
/// `recovered` and the outage's length when it is back; one event per
/// transition, however many reconnect attempts the outage took.
#[tokio::test]
async fn session_up_down_and_recovery_are_events() {
    let pki = tempfile::tempdir().unwrap();
    let sim = ua_sim(&station("s", &[("a", "i32", "1")], &[]), "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&device(
        &ua.endpoint(),
        "publishing_interval = \"200ms\"\nkeep_alive = \"500ms\"\nrequest_timeout = \"1s\"\nreconnect_max = \"1s\"",
        &[("a", &format!("nsu={NS};s=s.a"), "")],
    ));
    let mut chain = Chain::start(&devs);
    assert!(all_good(&chain.until(Duration::from_secs(15), |s| all_good(s, &["a"])).await, &["a"]));
    ua.stop();
    chain.until(Duration::from_secs(10), |s| of(s, "a").iter().any(|x| x.quality == Quality::Bad)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ua.restart().await.unwrap();
    assert!(all_good(&chain.until(Duration::from_secs(15), |s| all_good(s, &["a"])).await, &["a"]), "not back");
    chain.ingest.barrier().await;
    let records = chain.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
    let events: Vec<&relais::model::Event> =
        records.iter().filter_map(|r| r.as_event()).filter(|e| e.kind.starts_with("device.")).collect();
    let kinds: Vec<&str> = events.iter().map(|e| &*e.kind).collect();
    assert_eq!(kinds, ["device.up", "device.down", "device.up"], "{events:#?}");
    for e in &events {
        assert_eq!(e.source, relais::model::EventSource::Device("plc".into()));
        assert_eq!(e.details["endpoint"], ua.endpoint());
    }
    assert_eq!(events[0].severity, relais::model::Severity::Info);
    assert_eq!(events[0].details["recovered"], false);
    assert_eq!(events[1].severity, relais::model::Severity::Warning);
    let cause = events[1].details["error"].as_str().unwrap();
    assert!(cause.starts_with("comm_failure") && events[1].message.contains(cause), "{:?}", events[1]);
    assert_eq!(events[2].details["recovered"], true);
    let outage = events[2].details["outage_s"].as_f64().unwrap();
    assert!((2.5..30.0).contains(&outage), "outage of {outage} s");
    // The recovery comes after the outage's bad samples.
    let bad_seq = chain.all.iter().find(|s| s.quality == Quality::Bad).unwrap().seq;
    assert!(events[2].seq > bad_seq, "{events:?}");
}
