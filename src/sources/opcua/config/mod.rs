//! Configuration of `protocol = "opcua"` devices and their tags.
//!
//! See `sample.toml` beside this file and `docs/configuration.md` for every key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod acquisition;
mod security;
mod tags;

use super::node::NodeRef;
use crate::diag::{Diag, Item, Reader, de_item, take_key};
use crate::names;
use crate::secret::Secret;
use acquisition::{AcqDefaults, raw_acq};
pub use security::{CERT_FILE_MAX, read_any_cert};

/// Security policy of the secure channel (OPC UA Part 7 security profiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No security (only on trusted networks).
    None,
    /// Basic256Sha256.
    Basic256Sha256,
    /// Aes128_Sha256_RsaOaep.
    Aes128Sha256RsaOaep,
    /// Aes256_Sha256_RsaPss.
    Aes256Sha256RsaPss,
}

impl Policy {
    /// The library's policy.
    pub fn to_opcua(self) -> opcua::crypto::SecurityPolicy {
        use opcua::crypto::SecurityPolicy as P;
        match self {
            Policy::None => P::None,
            Policy::Basic256Sha256 => P::Basic256Sha256,
            Policy::Aes128Sha256RsaOaep => P::Aes128Sha256RsaOaep,
            Policy::Aes256Sha256RsaPss => P::Aes256Sha256RsaPss,
        }
    }
}

/// Message security mode (Part 4 §7.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No signing, no encryption.
    None,
    /// Signed messages.
    Sign,
    /// Signed and encrypted messages.
    SignAndEncrypt,
}

impl Mode {
    /// The library's mode.
    pub fn to_opcua(self) -> opcua::types::MessageSecurityMode {
        use opcua::types::MessageSecurityMode as M;
        match self {
            Mode::None => M::None,
            Mode::Sign => M::Sign,
            Mode::SignAndEncrypt => M::SignAndEncrypt,
        }
    }
}

/// Who the gateway is to the server (the session's user identity token, Part 4 §7.41).
#[derive(Debug, Clone)]
pub enum Identity {
    /// Anonymous.
    Anonymous,
    /// User name and password.
    User {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An X.509 user certificate (DER) and its private key (PEM).
    X509 {
        /// Certificate file.
        certificate: PathBuf,
        /// Private key file.
        private_key: PathBuf,
    },
}

/// How a tag is acquired.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Acquisition {
    /// A MonitoredItem in a subscription (Part 4 §5.12, §5.13).
    Subscription {
        /// Publishing interval of the subscription.
        publishing_interval: Duration,
        /// Sampling interval requested for the item (default: the
        /// publishing interval; 0 = the server's fastest).
        sampling_interval: Duration,
        /// Queue size requested for the item.
        queue_size: u32,
        /// Data change deadband, if any.
        deadband: Option<Deadband>,
    },
    /// A Read service call every interval (Part 4 §5.10.2).
    Poll {
        /// Read interval.
        interval: Duration,
    },
}

/// A data change filter deadband (Part 4 §7.22.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deadband {
    /// Report when the value moves by more than this, in engineering units.
    Absolute(f64),
    /// Report when the value moves by more than this percent of the EURange.
    Percent(f64),
}

/// A validated OPC UA tag.
#[derive(Debug, Clone)]
pub struct OpcUaTag {
    /// Tag name (an MQTT topic level).
    pub name: String,
    /// The node, by namespace URI or index.
    pub node: NodeRef,
    /// Subscription or polling, with its settings.
    pub acquisition: Acquisition,
    /// Engineering unit.
    pub unit: Option<String>,
    /// `Some` when `writable = true`: its limits and read-back
    /// (`sources::writable`). Writes set the Value attribute with the node's DataType.
    pub write: Option<crate::sources::writable::TagWrite>,
}

/// A validated `protocol = "opcua"` device: one server, one session.
#[derive(Debug, Clone)]
pub struct OpcUaDevice {
    /// Device name (an MQTT topic level).
    pub name: String,
    /// Server URL, `opc.tcp://host:port[/path]`.
    pub endpoint: String,
    /// Security policy.
    pub policy: Policy,
    /// Message security mode.
    pub mode: Mode,
    /// User identity.
    pub identity: Identity,
    /// PKI folder (own certificate, trusted and rejected server certificates);
    /// `None` = `<data_dir>/pki`.
    pub pki_dir: Option<PathBuf>,
    /// Server certificate files to trust (copied into `<pki_dir>/trusted`).
    pub trust: Vec<PathBuf>,
    /// Check the server certificate's hostname, application URI and validity
    /// dates besides its trust (default true).
    pub strict_server_certificate: bool,
    /// Session timeout requested from the server.
    pub session_timeout: Duration,
    /// Keep-alive read period (and publish keep-alive).
    pub keep_alive: Duration,
    /// Timeout of one service call.
    pub request_timeout: Duration,
    /// Longest wait between reconnect attempts.
    pub reconnect_max: Duration,
    /// Tags, in config order.
    pub tags: Vec<OpcUaTag>,
}

/// Keys of an OPC UA `[[device]]` (besides its `[[device.tag]]` list).
pub const DEVICE_KEYS: &[&str] = &[
    "name",
    "protocol",
    "endpoint",
    "security_policy",
    "security_mode",
    "username",
    "password",
    "password_file",
    "password_env",
    "user_certificate",
    "user_private_key",
    "pki_dir",
    "trust_server_certificate",
    "strict_server_certificate",
    "session_timeout",
    "keep_alive",
    "request_timeout",
    "reconnect_max",
    "mode",
    "publishing_interval",
    "sampling_interval",
    "queue_size",
    "poll_interval",
    "deadband",
    "deadband_type",
];
/// Keys of an OPC UA `[[device.tag]]` besides the write keys
/// (`sources::writable::WRITE_KEYS`).
pub const TAG_KEYS: &[&str] = &[
    "name",
    "node_id",
    "mode",
    "publishing_interval",
    "sampling_interval",
    "queue_size",
    "poll_interval",
    "deadband",
    "deadband_type",
    "unit",
    "description",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: Spanned<String>,
    #[allow(dead_code)]
    protocol: String,
    endpoint: Option<Spanned<String>>,
    security_policy: Option<Spanned<String>>,
    security_mode: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    user_certificate: Option<Spanned<String>>,
    user_private_key: Option<Spanned<String>>,
    pki_dir: Option<Spanned<String>>,
    trust_server_certificate: Option<Spanned<TrustList>>,
    strict_server_certificate: Option<bool>,
    session_timeout: Option<Spanned<String>>,
    keep_alive: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    publishing_interval: Option<Spanned<String>>,
    sampling_interval: Option<Spanned<String>>,
    queue_size: Option<Spanned<i64>>,
    poll_interval: Option<Spanned<String>>,
    deadband: Option<Spanned<f64>>,
    deadband_type: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a certificate file name or a list of them")]
enum TrustList {
    One(String),
    Many(Vec<String>),
}

/// Checks an `opc.tcp://host:port[/path]` URL.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("opc.tcp://") else {
        return Err(format!("endpoint {url:?} must start with opc.tcp://, e.g. \"opc.tcp://192.168.1.20:4840\""));
    };
    let hostport = rest.split('/').next().unwrap_or("");
    if hostport.is_empty() {
        return Err(format!("endpoint {url:?} has no host"));
    }
    // It would be logged and shown by `relais check` (the message itself is
    // redacted by Diag).
    if hostport.contains('@') {
        return Err(format!(
            "endpoint {url:?} carries credentials; use the `username` and `password_file` keys so secrets stay out of logs"
        ));
    }
    if let Some((_, port)) = hostport.rsplit_once(':')
        && !port.ends_with(']')
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(format!("endpoint {url:?} has an invalid port {port:?}; expected 1..=65535 (OPC UA's default is 4840)"));
    }
    Ok(())
}

/// Parses and validates one `[[device]]` item with `protocol = "opcua"`.
/// Returns `None` when any error was recorded.
pub fn parse_device(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str, base: &Path) -> Option<OpcUaDevice> {
    let tags_item = take_key(&mut item, "tag");
    let before = diag.error_count();
    let shown: Vec<&str> = DEVICE_KEYS.iter().copied().chain(["tag"]).collect();
    crate::diag::reject_unknown_keys_showing(&mut item, DEVICE_KEYS, &shown, diag, key);
    let raw = de_item::<RawDevice>(item, diag, key);
    let key = raw.as_ref().map_or_else(|| key.to_string(), |r| format!("device {:?}", r.name.get_ref()));
    let mut r = Reader::new(diag, &key);
    let mut defaults = AcqDefaults::default();
    let mut device = None;
    if let Some(raw) = &raw {
        defaults = acquisition::acquisition(&mut r, &raw_acq!(raw), defaults);
        device = Some(read_device(&mut r, raw, base));
    }
    let endpoint = device.as_ref().map_or("opc.tcp://HOST:4840", |d: &OpcUaDevice| d.endpoint.as_str()).to_string();
    let name_span = raw.as_ref().map(|r| r.name.span());
    let timeout = device.as_ref().map_or(Duration::from_secs(10), |d: &OpcUaDevice| d.request_timeout);
    let tags = tags::read_tags(&mut r, tags_item, defaults, (&endpoint, timeout), name_span);
    if diag.error_count() > before {
        return None;
    }
    device.map(|mut d| {
        d.tags = tags;
        d
    })
}

/// The device's own keys (its tags are read apart).
fn read_device(r: &mut Reader<'_, '_>, raw: &RawDevice, base: &Path) -> OpcUaDevice {
    let name = raw.name.get_ref().clone();
    if let Err(e) = names::check(&name) {
        r.error(raw.name.span(), "name", e);
    } else if name == crate::telemetry::HEALTH_DEVICE {
        r.error(raw.name.span(), "name", format!("{name:?} is reserved for the gateway's own health samples"));
    }
    let endpoint = match &raw.endpoint {
        Some(e) => {
            let ep = e.get_ref().trim().to_string();
            if let Err(err) = check_endpoint(&ep) {
                r.error(e.span(), "endpoint", err);
            }
            ep
        }
        None => {
            r.error(raw.name.span(), "endpoint", "missing key `endpoint`: the server URL, e.g. \"opc.tcp://192.168.1.20:4840\"");
            String::new()
        }
    };
    let (policy, mode) = security::read_security(r, raw);
    let identity = security::read_identity(r, raw, base);
    if policy == Policy::None && !matches!(identity, Identity::Anonymous) {
        let span = raw.username.as_ref().or(raw.user_certificate.as_ref()).map_or(raw.name.span(), |s| s.span());
        r.warn(span, "security_policy", "user credentials over security_policy None: the server encrypts the password with its certificate if it can, but the session itself is not protected");
    }
    let trust = security::read_trust(r, raw, base);
    let (session_timeout, keep_alive, request_timeout, reconnect_max) = read_timeouts(r, raw);
    OpcUaDevice {
        name,
        endpoint,
        policy,
        mode,
        identity,
        pki_dir: raw.pki_dir.as_ref().map(|p| base.join(p.get_ref())),
        trust,
        strict_server_certificate: raw.strict_server_certificate.unwrap_or(true),
        session_timeout,
        keep_alive,
        request_timeout,
        reconnect_max,
        tags: Vec::new(),
    }
}

/// `session_timeout`, `keep_alive` (shorter than the session timeout),
/// `request_timeout` and `reconnect_max`, each up to a day.
fn read_timeouts(r: &mut Reader<'_, '_>, raw: &RawDevice) -> (Duration, Duration, Duration, Duration) {
    let day = Duration::from_secs(86_400);
    let ms100 = Duration::from_millis(100);
    let session_timeout = r.duration_in(&raw.session_timeout, "session_timeout", Duration::from_secs(60), Duration::from_secs(1)..=day);
    let keep_alive = r.duration_in(&raw.keep_alive, "keep_alive", Duration::from_secs(5), ms100..=day);
    if keep_alive >= session_timeout {
        let span = raw.keep_alive.as_ref().map_or(raw.name.span(), |s| s.span());
        r.error(
            span,
            "keep_alive",
            format!(
                "keep_alive ({}) must be shorter than session_timeout ({}): the server would close the session between two keep-alives",
                crate::units::format_duration(keep_alive),
                crate::units::format_duration(session_timeout)
            ),
        );
    }
    let request_timeout = r.duration_in(&raw.request_timeout, "request_timeout", Duration::from_secs(10), ms100..=day);
    let reconnect_max = r.duration_in(&raw.reconnect_max, "reconnect_max", Duration::from_secs(5), ms100..=day);
    (session_timeout, keep_alive, request_timeout, reconnect_max)
}
