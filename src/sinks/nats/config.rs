//! Configuration of `type = "nats"` sinks. See `sample.toml` beside this file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::subject::{SubjectTemplate, check_stream, stream_name};
use crate::diag::{Diag, Item, de_item, reject_unknown_keys};
use crate::names;
use crate::secret::{Secret, read_secret};
use crate::util::redact::url as loggable;
use crate::util::tls::{TlsFiles, is_loopback, read_files};

/// Payload layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One record per message, on its tag's subject (events on `event_subject.{kind}`).
    Json,
    /// One message per run of consecutive records, on `batch_subject`.
    JsonBatch,
}

/// How relais authenticates (secrets never logged).
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// No credentials.
    None,
    /// `user` and `password`.
    UserPassword(String, Secret),
    /// `token`.
    Token(Secret),
    /// An NKey seed (`SU…`).
    NKey(Secret),
    /// A `.creds` file (user JWT and NKey seed), read at each connect.
    Creds(PathBuf),
}

/// `create_stream = true`: the stream relais creates when it is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// Subjects it captures (default: the filter of `subject`, e.g. `relais.gw.>`).
    pub subjects: Vec<String>,
    /// Replicas, 1 to 5 (default 1).
    pub replicas: usize,
    /// Oldest message kept (0 = no limit, default).
    pub max_age: Duration,
    /// JetStream's `Nats-Msg-Id` duplicate window (default 2 min).
    pub duplicate_window: Duration,
}

/// A validated NATS JetStream sink.
#[derive(Debug, Clone)]
pub struct NatsSinkConfig {
    /// Sink name; also the name of its cursor in the buffer.
    pub name: String,
    /// Servers (`nats://h1:4222`, `tls://h2:4222`).
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// CA and client certificate files.
    pub tls: TlsFiles,
    /// TLS is required (a `tls://` server or any TLS file).
    pub require_tls: bool,
    /// Per-record subject (format `json`).
    pub subject: SubjectTemplate,
    /// Batch subject (format `json-batch`, placeholder `{gateway}`).
    pub batch_subject: SubjectTemplate,
    /// Events go to `{event_subject}.{kind}` (format `json`).
    pub event_subject: SubjectTemplate,
    /// Payload layout.
    pub format: Format,
    /// The stream, rendered for this gateway (`RELAIS_line5`).
    pub stream: String,
    /// Create the stream when missing.
    pub create: Option<StreamSpec>,
    /// PubAcks awaited at once (default 256).
    pub max_inflight: usize,
    /// Most records in one `json-batch` message (default 500).
    pub batch_max_records: usize,
    /// Largest payload (default 1 MiB, the server's default `max_payload`).
    pub max_message_bytes: usize,
    /// Records read from the buffer per step (default 1000).
    pub read_rows: usize,
    /// Unsent records above which live records get a lane of their own
    /// during a replay (default 10000; 0: strict `seq` order always).
    pub backlog_threshold: u64,
    /// Age of the oldest undelivered record that raises `sink.backlog_old`
    /// (`backlog_alarm_age`, default 60 s; `"0s"`: off; `sinks::driver::backlog_age`).
    pub backlog_alarm_age: Duration,
    /// Longest wait for a PubAck before the connection is rebuilt (default 10 s).
    pub ack_timeout: Duration,
    /// Longest wait between reconnect attempts (default 30 s).
    pub reconnect_max: Duration,
}

impl NatsSinkConfig {
    /// The servers as they may be logged.
    pub fn target(&self) -> String {
        self.servers.iter().map(|s| loggable(s)).collect::<Vec<_>>().join(",")
    }
}

/// Keys of a NATS `[[sink]]`.
pub const KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "user",
    "password",
    "password_file",
    "password_env",
    "token",
    "token_file",
    "token_env",
    "nkey",
    "nkey_file",
    "nkey_env",
    "creds_file",
    "ca_file",
    "client_cert",
    "client_key",
    "subject",
    "batch_subject",
    "event_subject",
    "format",
    "stream",
    "create_stream",
    "stream_subjects",
    "replicas",
    "max_age",
    "duplicate_window",
    "max_inflight",
    "batch_max_records",
    "max_message_bytes",
    "read_rows",
    "backlog_threshold",
    "backlog_alarm_age",
    "ack_timeout",
    "reconnect_max",
];

#[derive(Deserialize)]
struct Raw {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    nkey: Option<Spanned<String>>,
    nkey_file: Option<Spanned<String>>,
    nkey_env: Option<Spanned<String>>,
    creds_file: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    batch_subject: Option<Spanned<String>>,
    event_subject: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    stream: Option<Spanned<String>>,
    create_stream: Option<bool>,
    stream_subjects: Option<Spanned<Vec<String>>>,
    replicas: Option<Spanned<i64>>,
    max_age: Option<Spanned<String>>,
    duplicate_window: Option<Spanned<String>>,
    max_inflight: Option<Spanned<i64>>,
    batch_max_records: Option<Spanned<i64>>,
    max_message_bytes: Option<Spanned<crate::diag::read::Size>>,
    read_rows: Option<Spanned<i64>>,
    backlog_threshold: Option<Spanned<i64>>,
    backlog_alarm_age: Option<Spanned<String>>,
    ack_timeout: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
}

fn int_in(d: &mut Diag<'_>, v: &Option<Spanned<i64>>, key: &str, (lo, hi): (i64, i64), default: i64) -> i64 {
    match v {
        None => default,
        Some(x) if (lo..=hi).contains(x.get_ref()) => *x.get_ref(),
        Some(x) => {
            d.error(x.span(), key, format!("{} is out of range; expected {lo}..={hi}", x.get_ref()));
            default
        }
    }
}

/// `nats://h1:4222,tls://h2:4222` → checked server URLs (default `nats://127.0.0.1:4222`).
fn parse_servers(d: &mut Diag<'_>, v: &Option<Spanned<String>>, key: &str) -> (Vec<String>, bool) {
    let Some(v) = v else { return (vec!["nats://127.0.0.1:4222".into()], false) };
    let (mut out, mut tls, mut remote_plain) = (Vec::new(), false, false);
    for s in v.get_ref().split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = match reqwest::Url::parse(s) {
            Ok(u) => u,
            Err(e) => {
                d.error(v.span(), key, format!("{:?} is not a server URL: {e}", loggable(s)));
                continue;
            }
        };
        if !matches!(url.scheme(), "nats" | "tls") {
            d.error(v.span(), key, format!("scheme {:?} is not supported; use nats:// or tls://", url.scheme()));
            continue;
        }
        if !url.username().is_empty() || url.password().is_some() {
            d.error(v.span(), key, "a server URL carries credentials; use `user` and `password_file` (or `token_file`, `creds_file`)");
            continue;
        }
        if url.host_str().is_none_or(str::is_empty) {
            d.error(v.span(), key, format!("{s:?} names no host"));
            continue;
        }
        tls |= url.scheme() == "tls";
        remote_plain |= url.scheme() == "nats" && !is_loopback(url.host_str().unwrap_or(""));
        out.push(format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), url.port().unwrap_or(4222)));
    }
    if out.is_empty() && d.ok() {
        d.error(v.span(), key, "no server given");
    }
    if remote_plain && !tls {
        d.warn(
            v.span(),
            key,
            "nats:// to another machine sends the data (and credentials) in clear text unless the server asks for TLS; use tls://",
        );
    }
    (out, tls)
}

fn template(d: &mut Diag<'_>, v: &Option<Spanned<String>>, key: &str, default: &str, allowed: &[&str]) -> Option<SubjectTemplate> {
    let (text, span) = v.as_ref().map_or((default, 0..0), |s| (s.get_ref().as_str(), s.span()));
    SubjectTemplate::parse(text, allowed).map_err(|e| d.error(span, key, e)).ok()
}

fn parse_auth(d: &mut Diag<'_>, raw: &Raw, key: &str, base: &Path) -> Auth {
    let k = |s: &str| format!("{key} / {s}");
    let password = read_secret(d, key, "password", &raw.password, &raw.password_file, &raw.password_env, base).secret();
    let token = read_secret(d, key, "token", &raw.token, &raw.token_file, &raw.token_env, base).secret();
    let nkey = read_secret(d, key, "nkey", &raw.nkey, &raw.nkey_file, &raw.nkey_env, base).secret();
    let creds = raw.creds_file.as_ref().map(|f| {
        let p = base.join(f.get_ref());
        let p = std::path::absolute(&p).unwrap_or(p);
        match crate::secret::read_capped(&p, crate::secret::SECRET_FILE_MAX) {
            Ok(b) if String::from_utf8_lossy(&b).contains("NATS USER JWT") => {}
            Ok(_) => d.error(
                f.span(),
                &k("creds_file"),
                format!("{} is not a NATS credentials file (no -----BEGIN NATS USER JWT-----)", p.display()),
            ),
            Err(e) => d.error(f.span(), &k("creds_file"), e),
        }
        p
    });
    let user = raw.user.as_ref().map(|u| u.get_ref().clone());
    let given = [password.is_some() || user.is_some(), token.is_some(), nkey.is_some(), creds.is_some()].iter().filter(|g| **g).count();
    let span = raw.name.span();
    if given > 1 {
        d.error(span.clone(), &k("user"), "set one way to authenticate: user + password, token, nkey or creds_file");
        return Auth::None;
    }
    if let Some(s) = &nkey
        && !s.expose().starts_with("SU")
    {
        d.error(span.clone(), &k("nkey"), "an NKey user seed starts with \"SU\" (the public key \"U…\" is not enough)");
    }
    match (user, password, token, nkey, creds) {
        (Some(u), Some(p), ..) => Auth::UserPassword(u, p),
        (Some(_), None, ..) | (None, Some(_), ..) => {
            d.error(span, &k("user"), "user and password go together");
            Auth::None
        }
        (_, _, Some(t), ..) => Auth::Token(t),
        (_, _, _, Some(n), _) => Auth::NKey(n),
        (_, _, _, _, Some(c)) => Auth::Creds(c),
        _ => Auth::None,
    }
}

fn parse_stream_spec(d: &mut Diag<'_>, raw: &Raw, key: &str, default_subjects: Vec<String>) -> StreamSpec {
    let k = |s: &str| format!("{key} / {s}");
    let subjects = match &raw.stream_subjects {
        Some(s) if s.get_ref().is_empty() || s.get_ref().iter().any(|x| x.is_empty() || x.contains(char::is_whitespace)) => {
            d.error(s.span(), &k("stream_subjects"), "give at least one subject, without spaces");
            default_subjects
        }
        Some(s) => s.get_ref().clone(),
        None => default_subjects,
    };
    let replicas = int_in(d, &raw.replicas, &k("replicas"), (1, 5), 1) as usize;
    let max_age = crate::diag::duration(d, &raw.max_age, &k("max_age"), Duration::ZERO);
    let duplicate_window = crate::diag::duration(d, &raw.duplicate_window, &k("duplicate_window"), Duration::from_secs(120));
    if duplicate_window < Duration::from_millis(100) {
        d.error(raw.duplicate_window.as_ref().map_or(0..0, |s| s.span()), &k("duplicate_window"), "must be at least 100ms");
    }
    StreamSpec { subjects, replicas, max_age, duplicate_window }
}

/// Parses one `[[sink]]` item with `type = "nats"` (`item_key` names it in
/// messages before its name is known); relative paths resolve against `base`.
pub fn parse_sink(mut item: Item<'_>, d: &mut Diag<'_>, item_key: &str, gateway: &str, base: &Path) -> Option<NatsSinkConfig> {
    reject_unknown_keys(&mut item, KEYS, d, item_key);
    let raw: Raw = de_item(item.clone(), d, item_key)?;
    let before = d.error_count();
    let name = raw.name.get_ref().clone();
    let key = format!("sink {name:?}");
    let k = |s: &str| format!("{key} / {s}");
    if let Err(e) = names::check(&name) {
        d.error(raw.name.span(), &k("name"), e);
    }
    let (servers, tls_scheme) = parse_servers(d, &raw.url, &k("url"));
    let auth = parse_auth(d, &raw, &key, base);
    let tls = read_files(item, d, &key, base);
    let all = &["gateway", "device", "tag"];
    let subject = template(d, &raw.subject, &k("subject"), "relais.{gateway}.{device}.{tag}", all);
    let batch_subject = template(d, &raw.batch_subject, &k("batch_subject"), "relais.{gateway}._batch", &["gateway"]);
    let event_subject = template(d, &raw.event_subject, &k("event_subject"), "relais.{gateway}._event", &["gateway"]);
    let format = match raw.format.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
        None | Some(("json", _)) => Format::Json,
        Some(("json-batch", _)) => Format::JsonBatch,
        Some((other, span)) => {
            d.error(span, &k("format"), format!("unknown format {other:?}; expected \"json\" or \"json-batch\""));
            Format::Json
        }
    };
    let stream_t = raw.stream.as_ref().map_or("RELAIS_{gateway}".to_string(), |s| s.get_ref().clone());
    if let Err(e) = check_stream(&stream_t) {
        d.error(raw.stream.as_ref().map_or(0..0, |s| s.span()), &k("stream"), e);
    }
    let default_subjects = match (&subject, &batch_subject, &event_subject) {
        (Some(s), Some(b), Some(e)) => {
            let mut v = vec![s.filter(gateway), b.filter(gateway), format!("{}.>", e.render(gateway, "", ""))];
            v.dedup();
            // `relais.gw.>` already covers `relais.gw._batch` and `relais.gw._event.>`.
            let first = v[0].clone();
            let covered = |x: &String| first.ends_with(".>") && x != &first && x.starts_with(&first[..first.len() - 1]);
            v.into_iter().enumerate().filter(|(i, x)| *i == 0 || !covered(x)).map(|(_, x)| x).collect()
        }
        _ => Vec::new(),
    };
    let create = raw.create_stream.unwrap_or(false).then(|| parse_stream_spec(d, &raw, &key, default_subjects));
    let max_inflight = int_in(d, &raw.max_inflight, &k("max_inflight"), (1, 65_536), 256) as usize;
    let batch_max_records = int_in(d, &raw.batch_max_records, &k("batch_max_records"), (1, 100_000), 500) as usize;
    let max_message_bytes =
        crate::diag::size(d, &raw.max_message_bytes, &k("max_message_bytes"), "max_message_bytes", 1 << 20, 1024..=16 << 20) as usize;
    let read_rows = int_in(d, &raw.read_rows, &k("read_rows"), (1, 100_000), 1000) as usize;
    let backlog_threshold = int_in(d, &raw.backlog_threshold, &k("backlog_threshold"), (0, i64::MAX), 10_000) as u64;
    let backlog_alarm_age = crate::diag::duration(
        d,
        &raw.backlog_alarm_age,
        &k("backlog_alarm_age"),
        crate::sinks::driver::backlog_age::DEFAULT_BACKLOG_ALARM_AGE,
    );
    let ack_timeout = crate::diag::duration(d, &raw.ack_timeout, &k("ack_timeout"), Duration::from_secs(10));
    if ack_timeout < Duration::from_millis(100) {
        d.error(raw.ack_timeout.as_ref().map_or(0..0, |t| t.span()), &k("ack_timeout"), "ack_timeout must be at least 100ms");
    }
    let reconnect_max = crate::diag::duration(d, &raw.reconnect_max, &k("reconnect_max"), Duration::from_secs(30));
    if d.error_count() > before {
        return None;
    }
    Some(NatsSinkConfig {
        name,
        servers,
        auth,
        require_tls: tls_scheme || tls.any(),
        tls,
        subject: subject?,
        batch_subject: batch_subject?,
        event_subject: event_subject?,
        format,
        stream: stream_name(&stream_t, gateway),
        create,
        max_inflight,
        batch_max_records,
        max_message_bytes,
        read_rows,
        backlog_threshold,
        backlog_alarm_age,
        ack_timeout,
        reconnect_max,
    })
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "json",
            Format::JsonBatch => "json-batch",
        })
    }
}
