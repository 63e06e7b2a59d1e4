//! The HTTPS sink against a real HTTPS server (axum over rustls, with a CA
//! made by the test) that answers each POST by script: 2xx moves the cursor,
//! 429 with `Retry-After` is honoured, 5xx is retried, 400 sends the batch's
//! records to the quarantine, `Idempotency-Key` carries the first and last seq.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use relais::config::{BufferConfig, SinkConfig};
use relais::model::TagMeta;
use relais::sinks::http::sink::HttpSink;

use crate::cloud::{Chain, sink_config};
use crate::common::eventually;

/// One request the server got.
#[derive(Debug, Clone)]
pub struct Got {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it answered.
    pub status: u16,
}

#[derive(Default)]
struct Script {
    answers: VecDeque<(u16, Option<&'static str>)>,
    got: Vec<Got>,
}

/// An HTTPS server on a free loopback port with a certificate for
/// `127.0.0.1` signed by a CA of its own (PEM in `dir/ca.pem`).
pub struct TestServer {
    pub port: u16,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn ingest(State(s): State<Arc<Mutex<Script>>>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut g = s.lock().unwrap();
    let (status, retry) = g.answers.pop_front().unwrap_or((200, None));
    g.got.push(Got { at: Instant::now(), headers, body, status });
    let mut h = HeaderMap::new();
    if let Some(r) = retry {
        h.insert("retry-after", r.parse().unwrap());
    }
    let text = if status == 400 { "field value: expected a number" } else { "" };
    (StatusCode::from_u16(status).unwrap(), h, text)
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "relais test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().route("/ingest", post(ingest)).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                });
            }
        });
        TestServer { port, script, task }
    }

    /// Answers the next POSTs with these statuses (then 200), with a `Retry-After` when given.
    pub fn answer(&self, a: &[(u16, Option<&'static str>)]) {
        self.script.lock().unwrap().answers.extend(a.iter().copied());
    }

    pub fn got(&self) -> Vec<Got> {
        self.script.lock().unwrap().got.clone()
    }
}

fn seqs_of(body: &[u8]) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut s: Vec<u64> = v["samples"].as_array().unwrap().iter().map(|x| x["seq"].as_u64().unwrap()).collect();
    s.extend(v["events"].as_array().unwrap().iter().map(|x| x["seq"].as_u64().unwrap()));
    s.sort();
    s
}

fn spawn(chain: &mut Chain, cfg: SinkConfig) {
    let SinkConfig::Http(c) = cfg else { panic!("an HTTP sink") };
    let tb = &chain.tb;
    let sink = HttpSink::new(
        c,
        "gw",
        tb.buffer.reader().unwrap(),
        tb.buffer.cursor(&chain.name).unwrap(),
        tb.buffer.committed(),
        chain.stats.clone(),
    )
    .with_events(tb.ingest.events());
    chain.task = Some(tokio::spawn(sink.run(chain.stop.clone(), Duration::from_millis(1500))));
}

#[tokio::test]
async fn https_answers_by_script_200_429_500_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    // 1st POST 200, 2nd 429 (retry after 1 s), its resend 500, then 200; 4th batch 400.
    server.answer(&[(200, None), (429, Some("1")), (500, None), (200, None), (400, None)]);
    let cfg = sink_config(
        &format!(
            "name = \"cloud\"\ntype = \"http\"\nurl = \"https://127.0.0.1:{}/ingest\"\nca_file = \"ca.pem\"\ntoken_file = \"token\"\n\
             batch_max_records = 5\nreconnect_max = \"1s\"\nheaders = {{ \"X-Plant\" = \"line5\" }}",
            server.port
        ),
        dir.path(),
    );
    let mut chain = Chain::new("cloud", BufferConfig::default());
    let meta = TagMeta::new("pump", "flow", Some("m3/h"));
    // Five records per read: push them five at a time so each read is one batch.
    spawn(&mut chain, cfg);
    for b in 0..5 {
        chain.push_n(&meta, b * 5, 5, Duration::ZERO).await;
        let head = chain.head();
        let got_before = server.got().len();
        assert!(
            eventually(Duration::from_secs(20), || chain.cursor() >= head).await,
            "batch {b}: cursor {} never reached {head}; requests {}",
            chain.cursor(),
            server.got().len() - got_before
        );
    }
    let got = server.got();
    let statuses: Vec<u16> = got.iter().map(|g| g.status).collect();
    // The sink's own events (sink.connected …) are records too: more POSTs may follow.
    assert_eq!(statuses[..5], [200, 429, 500, 200, 400], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 200), "{statuses:?}");
    // Retry-After: 1 s between the 429 and the next POST.
    let waited = got[2].at - got[1].at;
    assert!(waited >= Duration::from_millis(950), "Retry-After 1 honoured: waited {waited:?}");
    // The resends carry the same batch and key.
    for g in &got {
        let key = g.headers["idempotency-key"].to_str().unwrap().to_string();
        let s = seqs_of(&g.body);
        assert_eq!(key, format!("gw:{}-{}", s[0], s[s.len() - 1]));
        assert_eq!(g.headers["authorization"], "Bearer s3cret");
        assert_eq!(g.headers["x-plant"], "line5");
        assert_eq!(g.headers["content-type"], "application/json");
    }
    // A resend starts where the unacknowledged batch started (it may carry
    // more: the sink.disconnected event of the lost try).
    assert_eq!(seqs_of(&got[1].body)[0], seqs_of(&got[2].body)[0]);
    assert_eq!(seqs_of(&got[1].body)[0], seqs_of(&got[3].body)[0]);
    // Every record was stored by a 2xx, except the 400 batch, which is in the quarantine.
    let mut stored: Vec<u64> = got.iter().filter(|g| g.status == 200).flat_map(|g| seqs_of(&g.body)).collect();
    stored.sort();
    let refused = seqs_of(&got[4].body);
    let expect: Vec<u64> = (chain.base + 1..=chain.head()).filter(|s| !refused.contains(s)).collect();
    assert_eq!(stored, expect, "each record once, none lost");
    let n = refused.len();
    assert!(eventually(Duration::from_secs(5), || chain.quarantine().len() == n).await, "{:?}", chain.quarantine());
    let q = chain.quarantine();
    for seq in &refused {
        let row = q.iter().find(|r| r.location == format!("seq {seq}")).unwrap_or_else(|| panic!("seq {seq} quarantined: {q:?}"));
        assert!(row.reason.starts_with("refused_by_sink: HTTP 400 Bad Request: field value: expected a number"), "{}", row.reason);
        let raw: serde_json::Value = serde_json::from_str(&row.raw).unwrap();
        assert_eq!(raw["seq"].as_u64(), Some(*seq));
    }
    assert_eq!(chain.stats.refused.load(std::sync::atomic::Ordering::Relaxed), n as u64);
    chain.stop().await;
}

#[tokio::test]
async fn influx_lines_and_a_401_is_retried_not_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.answer(&[(401, None), (200, None)]);
    let cfg = sink_config(
        &format!(
            "name = \"influx\"\ntype = \"http\"\nurl = \"https://localhost:{}/ingest\"\nca_file = \"ca.pem\"\nformat = \"influx\"\nreconnect_max = \"1s\"",
            server.port
        ),
        dir.path(),
    );
    let mut chain = Chain::new("influx", BufferConfig::default());
    let meta = TagMeta::new("press", "force", Some("kN"));
    chain.push_n(&meta, 0, 3, Duration::ZERO).await;
    spawn(&mut chain, cfg);
    let head = chain.head();
    assert!(eventually(Duration::from_secs(20), || chain.cursor() >= head).await);
    let got = server.got();
    assert_eq!(got.iter().map(|g| g.status).take(2).collect::<Vec<_>>(), vec![401, 200]);
    let samples = |b: &Bytes| {
        String::from_utf8(b.to_vec()).unwrap().lines().filter(|l| l.starts_with("relais,")).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(samples(&got[0].body), samples(&got[1].body), "the batch refused with 401 is sent again");
    let text = String::from_utf8(got[1].body.to_vec()).unwrap();
    let lines = samples(&got[1].body);
    assert_eq!(lines.len(), 3, "{text}");
    for (i, l) in lines.iter().enumerate() {
        let seq = chain.base + 1 + i as u64;
        assert!(l.starts_with("relais,gateway=gw,device=press,tag=force,unit=kN,quality=good "), "{l}");
        assert!(l.contains(&format!("value={}", i as f64)) && l.contains(&format!("seq={seq}i")), "{l}");
    }
    assert_eq!(got[1].headers["content-type"], "text/plain; charset=utf-8");
    assert!(chain.quarantine().is_empty(), "a 401 is about the endpoint, not the data");
    chain.stop().await;
}

/// Issue 9 item 14: reqwest names the whole URL in its errors, query
/// included, so a token in the endpoint's query reached the log, the status
/// line and the `sink.disconnected` event. A server that accepts and closes
/// every connection: the error says what failed, never the token.
#[tokio::test]
async fn a_failing_post_never_shows_a_token_from_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            drop(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = sink_config(
        &format!("name = \"cloud\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/ingest?token=s3cret-q\"\nreconnect_max = \"1s\""),
        dir.path(),
    );
    let mut chain = Chain::new("cloud", BufferConfig::default());
    spawn(&mut chain, cfg);
    chain.push_n(&TagMeta::new("pump", "flow", None), 0, 3, Duration::ZERO).await;
    let stats = chain.stats.clone();
    assert!(eventually(Duration::from_secs(20), || stats.error().is_some_and(|e| e.contains("POST"))).await, "{:?}", stats.error());
    let e = stats.error().unwrap();
    assert!(e.contains("http://127.0.0.1") && !e.contains("s3cret-q"), "{e}");
    chain.stop().await;
    accepts.abort();
}
