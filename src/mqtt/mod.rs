//! An MQTT client connection as configured: broker URL, client id,
//! credentials, TLS (rustls with the ring provider). Shared by the MQTT sink
//! and the `mqtt-in` source.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, Reader, de_item};
use crate::secret::{Secret, read_secret};

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
        self.host == "localhost" || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
    /// CA certificates (PEM) to trust; system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
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
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    keep_alive: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
}

/// `ca_file`, `client_cert` and `client_key`: existing files holding PEM
/// certificates and a PEM private key.
fn tls_files(d: &mut Diag<'_>, raw: &RawConn, key: &str, base: &Path) -> (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let k = |s: &str| format!("{key} / {s}");
    let path = |d: &mut Diag<'_>, v: &Option<Spanned<String>>, what: &str| -> Option<PathBuf> {
        let v = v.as_ref()?;
        let p = base.join(v.get_ref());
        if !p.is_file() {
            d.error(v.span(), &k(what), format!("file {} does not exist or is not a file", p.display()));
        }
        Some(p)
    };
    let ca_file = path(d, &raw.ca_file, "ca_file");
    if let (Some(p), Some(v)) = (&ca_file, &raw.ca_file)
        && p.is_file()
    {
        match read_pem(p).map(|b| CertificateDer::pem_slice_iter(&b).filter_map(Result::ok).count()) {
            Ok(0) => d.error(v.span(), &k("ca_file"), format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", p.display())),
            Err(e) => d.error(v.span(), &k("ca_file"), e),
            Ok(_) => {}
        }
    }
    let client_cert = path(d, &raw.client_cert, "client_cert");
    let client_key = path(d, &raw.client_key, "client_key");
    if let (Some(p), Some(v)) = (&client_key, &raw.client_key)
        && p.is_file()
        && read_pem(p).map_or(true, |b| PrivateKeyDer::from_pem_slice(&b).is_err())
    {
        d.error(v.span(), &k("client_key"), format!("{} holds no PEM private key", p.display()));
    }
    (ca_file, client_cert, client_key)
}

/// Reads the connection keys of `item` (which may hold other keys too);
/// relative paths resolve against `base`.
pub fn parse_conn(item: Item<'_>, d: &mut Diag<'_>, key: &str, base: &Path, default_client_id: String) -> Option<ClientConn> {
    let span = item.span();
    let raw: RawConn = de_item(item, d, key)?;
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
    let (ca_file, client_cert, client_key) = tls_files(d, &raw, key, base);
    if client_cert.is_some() != client_key.is_some() {
        d.error(span.clone(), &k("client_cert"), "client_cert and client_key go together: set both or neither");
    }
    if broker.as_ref().is_some_and(|b| !b.tls) && (ca_file.is_some() || client_cert.is_some()) {
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
    Some(ClientConn {
        broker: broker?,
        client_id,
        username: raw.username,
        password,
        ca_file,
        client_cert,
        client_key,
        keep_alive,
        reconnect_max,
    })
}

/// Reads a PEM file (certificate, chain or key): a regular file of at most
/// 1 MiB, so a wrong path (a device, a pipe, a huge file) fails at once.
fn read_pem(p: &Path) -> Result<Vec<u8>, String> {
    crate::secret::read_capped(p, 1 << 20)
}

/// Builds the rustls client configuration (ring provider only): the CA file
/// or the system roots, and the client certificate for mutual TLS.
pub fn tls_config(c: &ClientConn) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match &c.ca_file {
        Some(ca) => {
            let pem = read_pem(ca).map_err(|e| anyhow::anyhow!("ca_file: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| anyhow::anyhow!("ca_file {}: {e}", ca.display()))?;
                roots.add(cert).map_err(|e| anyhow::anyhow!("ca_file {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("ca_file {} holds no PEM certificate", ca.display());
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                anyhow::bail!("no system CA certificates found; set ca_file");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots);
    Ok(match (&c.client_cert, &c.client_key) {
        (Some(cert), Some(key)) => {
            let pem = read_pem(cert).map_err(|e| anyhow::anyhow!("client_cert: {e}"))?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("client_cert {}: {e}", cert.display()))?;
            let pem = read_pem(key).map_err(|e| anyhow::anyhow!("client_key: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| anyhow::anyhow!("client_key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    })
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
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(c)?))));
    }
    Ok(o)
}
