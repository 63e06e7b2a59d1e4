//! Configuration of `type = "mqtt"` sinks. See `sample.toml` beside this file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::topic::TopicTemplate;
use crate::diag::{Diag, Item, de_item, reject_unknown_keys};
use crate::{names, units};

/// Payload layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One sample per message on the tag's topic.
    Json,
    /// One message per device per read batch, on the batch topic.
    JsonBatch,
}

/// A secret that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Broker address parsed from `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS (`mqtts://`, `ssl://`).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", if self.tls { "mqtts" } else { "mqtt" }, self.host, self.port)
    }
}

impl BrokerUrl {
    /// Parses `mqtt://`, `tcp://`, `mqtts://` or `ssl://` URLs; no path, no credentials.
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("broker url {url:?} needs a scheme: mqtt://host:port or mqtts://host:port"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" | "tls" => true,
            _ => return Err(format!("unknown scheme {scheme:?} in {url:?}; use mqtt:// or mqtts://")),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') {
            return Err(format!(
                "broker url {url:?} carries credentials; use the `username` and `password_file` keys so secrets stay out of logs"
            ));
        }
        if rest.contains('/') || rest.contains('?') {
            return Err(format!("broker url {url:?} may not have a path or query"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(|| format!("bad IPv6 address in {url:?}"))?;
            (h.to_string(), p.strip_prefix(':').map(str::to_string))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.to_string())),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("broker url {url:?} has no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port {p:?} in {url:?}"))?,
        };
        Ok(BrokerUrl { tls, host, port })
    }
}

/// A validated MQTT sink.
#[derive(Debug, Clone)]
pub struct MqttSinkConfig {
    /// Sink name; also the name of its cursor in the buffer.
    pub name: String,
    /// Broker address.
    pub broker: BrokerUrl,
    /// MQTT client identifier.
    pub client_id: String,
    /// Per-sample topic template (format `json`).
    pub topic: TopicTemplate,
    /// Per-device topic template (format `json-batch`).
    pub batch_topic: TopicTemplate,
    /// Birth / Last Will topic (retained).
    pub status_topic: String,
    /// 0 (at most once) or 1 (at least once, default).
    pub qos: u8,
    /// Payload layout.
    pub format: Format,
    /// Retain flag of data messages (default false).
    pub retain: bool,
    /// Username, if the broker needs one.
    pub username: Option<String>,
    /// Password, from `password`, `password_file` or `password_env`.
    pub password: Option<Secret>,
    /// CA certificates (PEM) to trust; system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// MQTT keep-alive (default 30 s).
    pub keep_alive: Duration,
    /// Most unacknowledged messages at once (default 100).
    pub max_inflight: u16,
    /// Most samples in one json-batch message (default 500).
    pub batch_max_samples: usize,
    /// Rows read from the buffer per step (default 1000).
    pub read_rows: usize,
    /// Backlog size, in rows, above which live samples are sent in a lane of
    /// their own beside the replay (default 10000).
    pub backlog_threshold: u64,
    /// Longest wait between reconnect attempts (default 30 s).
    pub reconnect_max: Duration,
}

/// Keys of an MQTT `[[sink]]`.
pub const SINK_KEYS: &[&str] = &[
    "name", "type", "url", "client_id", "topic", "batch_topic", "status_topic", "qos", "format", "retain", "username",
    "password", "password_file", "password_env", "ca_file", "client_cert", "client_key", "keep_alive", "max_inflight",
    "batch_max_samples", "read_rows", "backlog_threshold", "reconnect_max",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Spanned<String>,
    #[serde(rename = "type")]
    #[allow(dead_code)]
    ty: String,
    url: Spanned<String>,
    client_id: Option<String>,
    topic: Option<Spanned<String>>,
    batch_topic: Option<Spanned<String>>,
    status_topic: Option<Spanned<String>>,
    qos: Option<Spanned<i64>>,
    format: Option<Spanned<String>>,
    retain: Option<bool>,
    username: Option<String>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    keep_alive: Option<Spanned<String>>,
    max_inflight: Option<Spanned<i64>>,
    batch_max_samples: Option<Spanned<i64>>,
    read_rows: Option<Spanned<i64>>,
    backlog_threshold: Option<Spanned<i64>>,
    reconnect_max: Option<Spanned<String>>,
}

/// Parses one `[[sink]]` item with `type = "mqtt"`. `gateway` is the gateway
/// id (for the default client id and status topic); relative paths resolve
/// against `base_dir`, the config file's folder.
pub fn parse_sink(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str, gateway: &str, base_dir: &Path) -> Option<MqttSinkConfig> {
    reject_unknown_keys(&mut item, SINK_KEYS, diag, key);
    let raw: RawSink = de_item(item, diag, key)?;
    let before = diag.error_count();
    let name = raw.name.get_ref().clone();
    let key = format!("sink {name:?}");
    let k = |s: &str| format!("{key} / {s}");
    if let Err(e) = names::check(&name) {
        diag.error(raw.name.span(), &k("name"), e);
    }
    let broker = match BrokerUrl::parse(raw.url.get_ref()) {
        Ok(b) => Some(b),
        Err(e) => {
            diag.error(raw.url.span(), &k("url"), e);
            None
        }
    };
    let template = |diag: &mut Diag<'_>, v: &Spanned<String>, what: &str| match TopicTemplate::parse(v.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            diag.error(v.span(), &k(what), e);
            None
        }
    };
    let topic = match &raw.topic {
        Some(t) => template(diag, t, "topic"),
        None => TopicTemplate::parse("relais/{gateway}/{device}/{tag}").ok(),
    };
    let format = match raw.format.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
        None | Some(("json", _)) => Format::Json,
        Some(("json-batch", _)) => Format::JsonBatch,
        Some((other, span)) => {
            diag.error(span, &k("format"), format!("unknown format {other:?}; expected \"json\" or \"json-batch\""));
            Format::Json
        }
    };
    let batch_topic = match (&raw.batch_topic, &topic) {
        (Some(t), _) => {
            let bt = template(diag, t, "batch_topic");
            if let Some(b) = &bt
                && b.uses_tag()
            {
                diag.error(t.span(), &k("batch_topic"), "batch_topic carries several tags per message and may not use {tag}");
            }
            bt
        }
        (None, Some(t)) => match t.without_tag_level() {
            Some(b) => Some(b),
            None => {
                if format == Format::JsonBatch {
                    let span = raw.topic.as_ref().map_or(raw.name.span(), |t| t.span());
                    diag.error(span, &k("batch_topic"), "format = \"json-batch\" needs a topic without {tag}: set batch_topic (e.g. \"icam/line5/{device}\")");
                }
                TopicTemplate::parse("relais/{gateway}/{device}").ok()
            }
        },
        (None, None) => None,
    };
    let status_topic = match (&raw.status_topic, &topic) {
        (Some(s), _) => template(diag, s, "status_topic").map(|t| {
            if t.uses_device() || t.uses_tag() {
                diag.error(s.span(), &k("status_topic"), "status_topic may only use {gateway}");
            }
            t.render(gateway, "", "")
        }),
        (None, Some(t)) => {
            let p = t.static_prefix();
            Some(if p.is_empty() || p == "relais" || p.ends_with("/relais") {
                format!("{}relais/{gateway}/status", p.strip_suffix("relais").unwrap_or(""))
            } else {
                format!("{p}/relais/{gateway}/status")
            })
        }
        (None, None) => None,
    };
    let qos = match &raw.qos {
        None => 1,
        Some(q) if matches!(q.get_ref(), 0 | 1) => *q.get_ref() as u8,
        Some(q) => {
            diag.error(q.span(), &k("qos"), format!("qos {} is not supported; use 1 (at least once, default) or 0 (at most once)", q.get_ref()));
            1
        }
    };
    let int = |diag: &mut Diag<'_>, v: &Option<Spanned<i64>>, what: &str, lo: i64, hi: i64, default: i64| match v {
        None => default,
        Some(x) if (lo..=hi).contains(x.get_ref()) => *x.get_ref(),
        Some(x) => {
            diag.error(x.span(), &k(what), format!("{} is out of range; expected {lo}..={hi}", x.get_ref()));
            default
        }
    };
    let max_inflight = int(diag, &raw.max_inflight, "max_inflight", 1, 65_000, 100) as u16;
    let batch_max_samples = int(diag, &raw.batch_max_samples, "batch_max_samples", 1, 10_000, 500) as usize;
    let read_rows = int(diag, &raw.read_rows, "read_rows", 1, 100_000, 1000) as usize;
    let backlog_threshold = int(diag, &raw.backlog_threshold, "backlog_threshold", 0, i64::MAX, 10_000) as u64;
    let dur = |diag: &mut Diag<'_>, v: &Option<Spanned<String>>, what: &str, default: Duration| match v {
        None => default,
        Some(s) => units::parse_duration(s.get_ref()).unwrap_or_else(|e| {
            diag.error(s.span(), &k(what), e);
            default
        }),
    };
    let keep_alive = dur(diag, &raw.keep_alive, "keep_alive", Duration::from_secs(30));
    if keep_alive < Duration::from_secs(5) {
        let span = raw.keep_alive.as_ref().map_or(raw.name.span(), |s| s.span());
        diag.error(span, &k("keep_alive"), "keep_alive must be at least 5s");
    }
    let reconnect_max = dur(diag, &raw.reconnect_max, "reconnect_max", Duration::from_secs(30));
    let path = |diag: &mut Diag<'_>, v: &Option<Spanned<String>>, what: &str| -> Option<PathBuf> {
        let v = v.as_ref()?;
        let p = base_dir.join(v.get_ref());
        if !p.is_file() {
            diag.error(v.span(), &k(what), format!("file {} does not exist or is not a file", p.display()));
        }
        Some(p)
    };
    let ca_file = path(diag, &raw.ca_file, "ca_file");
    let client_cert = path(diag, &raw.client_cert, "client_cert");
    let client_key = path(diag, &raw.client_key, "client_key");
    if client_cert.is_some() != client_key.is_some() {
        diag.error(raw.name.span(), &k("client_cert"), "client_cert and client_key go together: set both or neither");
    }
    if broker.as_ref().is_some_and(|b| !b.tls) && (ca_file.is_some() || client_cert.is_some()) {
        diag.error(raw.url.span(), &k("url"), "TLS files are set but the url is mqtt://; use mqtts:// to enable TLS");
    }
    let password = secret(diag, &raw, base_dir, &k);
    if password.is_some() && raw.username.is_none() {
        diag.error(raw.name.span(), &k("username"), "a password is set but no username");
    }
    if let (Some(b), Some(_)) = (&broker, &password)
        && !b.tls
        && !is_loopback(&b.host)
    {
        diag.warn(raw.url.span(), &k("url"), "the password is sent in clear text over mqtt:// to a remote broker; use mqtts://");
    }
    if diag.error_count() > before {
        return None;
    }
    Some(MqttSinkConfig {
        client_id: raw.client_id.unwrap_or_else(|| format!("relais-{gateway}-{name}")),
        name,
        broker: broker?,
        topic: topic?,
        batch_topic: batch_topic?,
        status_topic: status_topic?,
        qos,
        format,
        retain: raw.retain.unwrap_or(false),
        username: raw.username,
        password,
        ca_file,
        client_cert,
        client_key,
        keep_alive,
        max_inflight,
        batch_max_samples,
        read_rows,
        backlog_threshold,
        reconnect_max,
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn secret(diag: &mut Diag<'_>, raw: &RawSink, base_dir: &Path, k: &dyn Fn(&str) -> String) -> Option<Secret> {
    let given = [raw.password.is_some(), raw.password_file.is_some(), raw.password_env.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        diag.error(raw.name.span(), &k("password"), "set only one of password, password_file, password_env");
        return None;
    }
    if let Some(p) = &raw.password {
        if p.get_ref().is_empty() {
            diag.error(p.span(), &k("password"), "password is empty");
        }
        return Some(Secret(p.get_ref().clone()));
    }
    if let Some(f) = &raw.password_file {
        let path = base_dir.join(f.get_ref());
        return match std::fs::read_to_string(&path) {
            Ok(s) => Some(Secret(s.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) => {
                diag.error(f.span(), &k("password_file"), format!("cannot read {}: {e}", path.display()));
                None
            }
        };
    }
    if let Some(v) = &raw.password_env {
        return match std::env::var(v.get_ref()) {
            Ok(s) if !s.is_empty() => Some(Secret(s)),
            _ => {
                diag.error(v.span(), &k("password_env"), format!("environment variable {} is not set or empty", v.get_ref()));
                None
            }
        };
    }
    None
}
