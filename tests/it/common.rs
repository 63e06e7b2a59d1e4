//! Test infrastructure: a private Mosquitto per test, an MQTT subscriber,
//! free ports, and small builders.

#![allow(dead_code)]
#![allow(unsafe_code)] // kill(2) to stop child processes gracefully

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

use relais::app::Gateway;
use relais::buffer::Buffer;
use relais::config::{BufferConfig, Config};
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn mosquitto_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join("mosquitto")).find(|p| p.is_file())
}

/// A Mosquitto broker of the test's own, on a free port, with persistence in
/// a temp folder so a graceful stop keeps queued messages.
pub struct Mosquitto {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    persistence: bool,
    /// Extra lines of mosquitto.conf.
    extra: String,
}

impl Mosquitto {
    /// Starts a broker; `None` (test skipped, with a message) when Mosquitto is
    /// not installed, unless `RELAIS_REQUIRE_BROKER=1`.
    pub fn start() -> Option<Mosquitto> {
        Mosquitto::start_with(true)
    }

    /// Like [`Mosquitto::start`]; `persistence = false` loses retained
    /// messages and sessions on restart.
    pub fn start_with(persistence: bool) -> Option<Mosquitto> {
        let Some(bin) = mosquitto_bin() else {
            if std::env::var("RELAIS_REQUIRE_BROKER").is_ok_and(|v| v == "1") {
                panic!("mosquitto is not installed but RELAIS_REQUIRE_BROKER=1");
            }
            eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
            return None;
        };
        let mut m = Mosquitto { port: free_port(), bin, dir: tempfile::tempdir().unwrap(), child: None, persistence, extra: String::new() };
        m.spawn();
        Some(m)
    }

    /// A persistent broker with extra lines in its mosquitto.conf
    /// (`queue_qos0_messages true` for Sparkplug's QoS 0 births).
    pub fn start_conf(extra: &str) -> Option<Mosquitto> {
        let mut m = Mosquitto::start_with(true)?;
        m.extra = extra.to_string();
        m.restart();
        Some(m)
    }

    fn spawn(&mut self) {
        // Started as root, Mosquitto drops to the `mosquitto` user, which must
        // be able to write its persistence file here (else nothing persists).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o777));
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence {}\npersistence_location {}/\nautosave_interval 0\nmax_queued_messages 0\nmax_inflight_messages 0\n{}\n",
                self.port,
                self.persistence,
                self.dir.path().display(),
                self.extra
            ),
        )
        .unwrap();
        let child =
            Command::new(&self.bin).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start mosquitto");
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "mosquitto did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Graceful stop (SIGTERM: queued messages are saved).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc_kill(c.id() as i32, 15) };
            let _ = c.wait();
        }
    }

    /// Starts again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: i32) {
    unsafe { libc_kill(pid as i32, sig) };
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One received MQTT message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("bad JSON on {}: {e}: {}", self.topic, String::from_utf8_lossy(&self.payload)))
    }
}

/// A QoS 1 subscriber with a persistent session: it resubscribes after a
/// broker restart and gets the messages queued meanwhile.
pub struct Sub {
    rx: mpsc::UnboundedReceiver<Msg>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sub {
    pub async fn new(port: u16, filter: &str) -> Sub {
        Sub::with_id(port, filter, &format!("test-sub-{}", fastrand::u64(..)), false).await
    }

    /// A subscriber with a fixed client id; `clean` starts a clean session.
    pub async fn with_id(port: u16, filter: &str, id: &str, clean: bool) -> Sub {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(clean);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut el) = AsyncClient::new(o, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let filter = filter.to_string();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send(Msg { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv()).await.expect("SUBACK within 10s");
        Sub { rx, task }
    }

    /// The next message within `t`.
    pub async fn next(&mut self, t: Duration) -> Option<Msg> {
        tokio::time::timeout(t, self.rx.recv()).await.ok().flatten()
    }

    /// Messages until every seq in `want` arrived (data messages parsed once
    /// each) or `t` passes; `also` must hold too.
    pub async fn until_seqs(&mut self, t: Duration, want: impl IntoIterator<Item = u64>, mut also: impl FnMut(&Msg) -> bool) -> Vec<Msg> {
        let mut missing: std::collections::HashSet<u64> = want.into_iter().collect();
        let mut also_ok = false;
        let deadline = tokio::time::Instant::now() + t;
        let mut out = Vec::new();
        while !(missing.is_empty() && also_ok) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => {
                    for s in seqs(std::slice::from_ref(&m)) {
                        missing.remove(&s);
                    }
                    if !also_ok && also(&m) {
                        also_ok = true;
                    }
                    out.push(m);
                }
                _ => break,
            }
        }
        out
    }

    /// Messages until `done` says so or `t` passes.
    pub async fn collect(&mut self, t: Duration, mut done: impl FnMut(&[Msg]) -> bool) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + t;
        let mut out = Vec::new();
        while !done(&out) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => out.push(m),
                _ => break,
            }
        }
        out
    }
}

/// Data messages only (not the gateway's status topic).
pub fn data(msgs: &[Msg]) -> Vec<Msg> {
    msgs.iter().filter(|m| !m.topic.contains("/relais/")).cloned().collect()
}

/// The `seq` of every data message (json or json-batch) and of every event
/// (`…/relais/<gateway>/event/<kind>`, which share the samples' `seq`), in
/// arrival order.
pub fn seqs(msgs: &[Msg]) -> Vec<u64> {
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| !m.topic.contains("/relais/") || m.topic.contains("/event/")) {
        let j = m.json();
        if let Some(samples) = j.get("samples").and_then(|s| s.as_array()) {
            out.extend(samples.iter().filter_map(|s| s["seq"].as_u64()));
        } else if let Some(s) = j.get("seq").and_then(|s| s.as_u64()) {
            out.push(s);
        }
    }
    out
}

/// Checks that `seqs`, after dropping repeats, is exactly `from..=to` ascending.
pub fn assert_complete_in_order(seqs: &[u64], from: u64, to: u64) {
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
    let expect: Vec<u64> = (from..=to).collect();
    if firsts != expect {
        let missing: Vec<u64> = expect.iter().copied().filter(|s| !seen.contains(s)).take(20).collect();
        let out_of_order = firsts.windows(2).position(|w| w[0] >= w[1]);
        panic!(
            "expected seq {from}..={to} in order; got {} distinct (of {} received); missing (first 20): {missing:?}; first disorder at index {out_of_order:?}; extra: {:?}",
            firsts.len(),
            seqs.len(),
            firsts.iter().filter(|s| **s < from || **s > to).take(10).collect::<Vec<_>>()
        );
    }
}

/// A buffer on a temp dir with one ring.
pub struct TestBuffer {
    pub ingest: Arc<Ingest>,
    pub buffer: Buffer,
    pub dir: tempfile::TempDir,
}

pub fn buffer_with(cfg: BufferConfig, sinks: &[&str]) -> TestBuffer {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Arc::new(Ingest::new(cfg.ring_capacity));
    let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), sinks).unwrap();
    TestBuffer { ingest, buffer, dir }
}

/// A good f64 sample of `meta` with value `v`.
pub fn sample(meta: &Arc<TagMeta>, v: f64) -> Sample {
    Sample::good(meta.clone(), Value::F64(v), Timestamp::now())
}

/// An HTTP client for tests. reqwest is built with rustls and no crypto
/// provider of its own (the project uses `ring` only, GUIDE §4), so the ring
/// provider is installed as the process default first; a bare
/// `reqwest::Client::new()` would panic.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Polls `f` every 20 ms until true or `t` passes.
pub async fn eventually(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Logs to the test output (RUST_LOG, default warn).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// A TCP proxy in front of a broker: it can hold back the broker's answers
/// (no PUBACK reaches the client) or cut every connection.
pub struct Proxy {
    pub port: u16,
    hold: Arc<std::sync::atomic::AtomicBool>,
    hold_up: Arc<std::sync::atomic::AtomicBool>,
    drop_answers: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hold_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hu = hold_up.clone();
        let drop_answers = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let h = hold.clone();
        let dr = drop_answers.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let mut cut1 = cut_rx.clone();
                let mut cut2 = cut_rx.clone();
                cut1.borrow_and_update();
                cut2.borrow_and_update();
                let h = h.clone();
                let hu = hu.clone();
                let dr = dr.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        while hu.load(Ordering::Relaxed) {
                            tokio::select! {
                                _ = cut1.changed() => return,
                                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                            }
                        }
                        tokio::select! {
                            _ = cut1.changed() => return,
                            r = cr.read(&mut buf) => match r {
                                Ok(0) | Err(_) => return,
                                Ok(n) => if sw.write_all(&buf[..n]).await.is_err() { return },
                            }
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        while h.load(Ordering::Relaxed) {
                            tokio::select! {
                                _ = cut2.changed() => return,
                                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                            }
                        }
                        tokio::select! {
                            _ = cut2.changed() => return,
                            r = sr.read(&mut buf) => match r {
                                Ok(0) | Err(_) => return,
                                Ok(_) if dr.load(Ordering::Relaxed) => {}
                                Ok(n) => if cw.write_all(&buf[..n]).await.is_err() { return },
                            }
                        }
                    }
                });
            }
        });
        Proxy { port, hold, hold_up, drop_answers, cut, task }
    }

    /// Holds back (true) or releases (false) everything the broker sends.
    pub fn hold_answers(&self, on: bool) {
        self.hold.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Holds back (true) or releases (false) traffic in both directions: a
    /// network blackhole (new connections are accepted but stay silent).
    pub fn blackhole(&self, on: bool) {
        self.hold.store(on, std::sync::atomic::Ordering::Relaxed);
        self.hold_up.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Discards (true) everything the broker sends: PUBACKs are lost.
    pub fn drop_answers(&self, on: bool) {
        self.drop_answers.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Cuts every open connection (a network cut).
    pub fn cut(&self) {
        self.cut.send_modify(|v| *v += 1);
    }
}

/// A SKAB file: `../shared/data/skab/<name>` or `data/skab/<name>` (see
/// scripts/get-skab.sh); `None`, with a message, when absent.
pub fn skab(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = [root.join("../shared/data/skab").join(name), root.join("data/skab").join(name)].into_iter().find(|p| p.exists());
    if found.is_none() {
        if std::env::var("RELAIS_REQUIRE_SKAB").is_ok_and(|v| v == "1") {
            panic!("SKAB file {name} not found in ../shared/data/skab or data/skab, but RELAIS_REQUIRE_SKAB=1");
        }
        eprintln!("SKIPPED: SKAB file {name} not found in ../shared/data/skab or data/skab (scripts/get-skab.sh)");
    }
    found
}

/// `relais run --config cfg` (this build's binary), logging warnings and errors to the
/// test's stderr.
pub fn spawn_relais(cfg: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits up to `within` for `child` to exit and returns its exit code; `None` when it
/// did not exit in time (it is then killed and reaped) or was killed by a signal.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A simulator `[[station]]` on 127.0.0.1:`port` with `tags` holding registers
/// `t0`… at addresses 0…, each counting up by 1 every 10 ms (wrapping at 60,000).
pub fn counter_station(port: u16, tags: usize) -> String {
    let mut s = format!("[[station]]\nname = \"line\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"10ms\"\n");
    for i in 0..tags {
        s += &format!(
            "[[station.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {i}\nsignal = {{ kind = \"counter\", start = 0, step = 1, wrap = 60000 }}\n"
        );
    }
    s
}

/// The names of the entries of `dir`, sorted; empty when `dir` does not exist.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Writes `content` to `dir/name` through a hidden temporary file and a rename, so a
/// folder watcher never sees it half-written.
pub fn write_atomic(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The integer `value` of `key` in the `meta` table of `data_dir/buffer.db`
/// (`last_seq`, …), read through a connection of its own.
pub fn meta(data_dir: &Path, key: &str) -> u64 {
    let c = rusqlite::Connection::open(data_dir.join("buffer.db")).unwrap();
    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// A gateway config for in-process tests: id `gw`, data in `dir/data`, no status
/// or health samples, then `body` (sources, sinks …); panics on an error.
pub fn gateway_config(dir: &Path, body: &str) -> Config {
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n{body}",
        dir.join("data").display()
    );
    Config::parse(&text, "test.toml", dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Every sample in the gateway's buffer, in `seq` order.
pub fn samples(gw: &Gateway) -> Vec<Sample> {
    gw.buffer.reader().unwrap().read_blocking(0, u64::MAX, 10_000_000).unwrap()
}

/// The samples of tag `tag` (any device), in the order given.
pub fn of<'a>(samples: &'a [Sample], tag: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| &*s.meta.tag == tag).collect()
}
