//! An MQTT client connection as configured: broker URL, client id,
//! credentials, TLS (rustls with the ring provider). Shared by the MQTT sink
//! and the `mqtt-in` source.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, Reader, de_item};
use crate::secret::{Secret, read_secret};
use crate::util::tls::{TlsFiles, read_files};

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
    ///
    /// Errors quote the URL without its user information or query
    /// ([`crate::util::redact::text`]): a password written there is never echoed.
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let shown = crate::util::redact::text(url);
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| format!("broker url {shown:?} needs a scheme: mqtt://host:port or mqtts://host:port"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" | "tls" => true,
            _ => return Err(format!("unknown scheme {scheme:?} in {shown:?}; use mqtt:// or mqtts://")),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') {
            return Err(format!(
                "broker url {shown:?} carries credentials; use the `username` and `password_file` keys so secrets stay out of logs"
            ));
        }
        if rest.contains('/') || rest.contains('?') {
            return Err(format!("broker url {shown:?} may not have a path or query"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(|| format!("bad IPv6 address in {shown:?}"))?;
            (h.to_string(), p.strip_prefix(':').map(str::to_string))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.to_string())),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("broker url {shown:?} has no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port {p:?} in {shown:?}"))?,
        };
        Ok(BrokerUrl { tls, host, port })
    }

    /// True when the host is this machine.
    pub fn is_loopback(&self) -> bool {
        crate::util::tls::is_loopback(&self.host)
    }
}

/// The connection settings of one MQTT client.
#[derive(Debug, Clone)]
pub struct ClientConn {
    /// Broker address.
    pub broker: BrokerUrl,
    /// MQTT client identifier.
    pub client_id: String,
    /// Username, if the broker needs one.
    pub username: Option<String>,
    /// Password, from `password`, `password_file` or `password_env`.
    pub password: Option<Secret>,
    /// CA to trust (system roots when absent) and client certificate for
    /// mutual TLS (`ca_file`, `client_cert`, `client_key`).
    pub tls: TlsFiles,
    /// MQTT keep-alive (default 30 s).
    pub keep_alive: Duration,
    /// Longest wait between reconnect attempts (default 5 s, [`crate::util::DEFAULT_RECONNECT_MAX`]).
    pub reconnect_max: Duration,
}

/// The connection keys.
pub const CONN_KEYS: &[&str] = &[
    "url",
    "client_id",
    "username",
    "password",
    "password_file",
    "password_env",
    "ca_file",
    "client_cert",
    "client_key",
    "keep_alive",
    "reconnect_max",
];

#[derive(Deserialize)]
struct RawConn {
    url: Spanned<String>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    keep_alive: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
}

/// Reads the connection keys of `item` (which may hold other keys too);
/// relative paths resolve against `base`.
pub fn parse_conn(item: Item<'_>, d: &mut Diag<'_>, key: &str, base: &Path, default_client_id: String) -> Option<ClientConn> {
    let span = item.span();
    let raw: RawConn = de_item(item.clone(), d, key)?;
    let before = d.error_count();
    let k = |s: &str| format!("{key} / {s}");
    let broker = match BrokerUrl::parse(raw.url.get_ref()) {
        Ok(b) => Some(b),
        Err(e) => {
            d.error(raw.url.span(), &k("url"), e);
            None
        }
    };
    let mut r = Reader::new(d, key);
    let keep_alive = r.duration(&raw.keep_alive, "keep_alive", Duration::from_secs(30));
    if let Some(s) = &raw.keep_alive
        && !(Duration::from_secs(5)..=Duration::from_secs(65_535)).contains(&keep_alive)
    {
        r.error(s.span(), "keep_alive", "keep_alive must be in 5s..=65535s (the MQTT limit)");
    }
    let reconnect_max = r.duration(&raw.reconnect_max, "reconnect_max", crate::util::DEFAULT_RECONNECT_MAX);
    let tls = read_files(item, d, key, base);
    if broker.as_ref().is_some_and(|b| !b.tls) && tls.any() {
        d.error(raw.url.span(), &k("url"), "TLS files are set but the url is mqtt://; use mqtts:// to enable TLS");
    }
    let password = read_secret(d, key, "password", &raw.password, &raw.password_file, &raw.password_env, base).secret();
    if password.is_some() && raw.username.is_none() {
        d.error(span.clone(), &k("username"), "a password is set but no username");
    }
    if let (Some(b), Some(_)) = (&broker, &password)
        && !b.tls
        && !b.is_loopback()
    {
        d.warn(raw.url.span(), &k("url"), "the password is sent in clear text over mqtt:// to a remote broker; use mqtts://");
    }
    if d.error_count() > before {
        return None;
    }
    let client_id = raw.client_id.unwrap_or(default_client_id);
    if client_id.is_empty() || client_id.len() > 256 {
        d.error(span.clone(), &k("client_id"), "client_id must be 1 to 256 bytes");
        return None;
    }
    Some(ClientConn { broker: broker?, client_id, username: raw.username, password, tls, keep_alive, reconnect_max })
}

/// MQTT options of a connection: keep-alive, credentials, TLS, 16 MiB packets.
/// The caller sets the session flags, Last Will and windows.
pub fn options(c: &ClientConn) -> anyhow::Result<MqttOptions> {
    let mut o = MqttOptions::new(&c.client_id, &c.broker.host, c.broker.port);
    o.set_keep_alive(c.keep_alive);
    o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    if let Some(u) = &c.username {
        o.set_credentials(u, c.password.as_ref().map(|p| p.expose()).unwrap_or(""));
    }
    if c.broker.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(c.tls.client_config()?))));
    }
    Ok(o)
}
