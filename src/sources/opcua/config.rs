//! Configuration of `protocol = "opcua"` devices and their tags.
//!
//! See `sample.toml` beside this file and `docs/configuration.md` for every key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::node::NodeRef;
use crate::diag::{Diag, Item, de_item, duration, reject_unknown_keys, take_key};
use crate::names;
use crate::secret::{Secret, SecretKey, read_secret};

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

    fn parse(s: &str) -> Option<Policy> {
        match s.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
            "none" => Some(Policy::None),
            "basic256sha256" => Some(Policy::Basic256Sha256),
            "aes128sha256rsaoaep" => Some(Policy::Aes128Sha256RsaOaep),
            "aes256sha256rsapss" => Some(Policy::Aes256Sha256RsaPss),
            _ => None,
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
/// Keys of an OPC UA `[[device.tag]]`.
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

/// The acquisition keys shared by a device (defaults) and its tags.
struct RawAcq<'a> {
    mode: &'a Option<Spanned<String>>,
    publishing_interval: &'a Option<Spanned<String>>,
    sampling_interval: &'a Option<Spanned<String>>,
    queue_size: &'a Option<Spanned<i64>>,
    poll_interval: &'a Option<Spanned<String>>,
    deadband: &'a Option<Spanned<f64>>,
    deadband_type: &'a Option<Spanned<String>>,
}

macro_rules! raw_acq {
    ($r:expr) => {
        RawAcq {
            mode: &$r.mode,
            publishing_interval: &$r.publishing_interval,
            sampling_interval: &$r.sampling_interval,
            queue_size: &$r.queue_size,
            poll_interval: &$r.poll_interval,
            deadband: &$r.deadband,
            deadband_type: &$r.deadband_type,
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    name: Spanned<String>,
    node_id: Spanned<String>,
    unit: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    mode: Option<Spanned<String>>,
    publishing_interval: Option<Spanned<String>>,
    sampling_interval: Option<Spanned<String>>,
    queue_size: Option<Spanned<i64>>,
    poll_interval: Option<Spanned<String>>,
    deadband: Option<Spanned<f64>>,
    deadband_type: Option<Spanned<String>>,
}

/// Resolved acquisition defaults of a device, overridable per tag.
#[derive(Clone, Copy)]
struct AcqDefaults {
    poll: bool,
    publishing_interval: Duration,
    /// `None`: the publishing interval.
    sampling_interval: Option<Duration>,
    queue_size: u32,
    poll_interval: Duration,
    deadband: Option<Deadband>,
}

fn acquisition(d: &mut Diag<'_>, key: &str, raw: &RawAcq<'_>, def: AcqDefaults) -> AcqDefaults {
    let k = |s: &str| format!("{key} / {s}");
    let mut out = def;
    if let Some(m) = raw.mode {
        match m.get_ref().as_str() {
            "subscription" | "subscribe" => out.poll = false,
            "poll" | "polling" | "read" => out.poll = true,
            other => d.error(m.span(), &k("mode"), format!("unknown mode {other:?}; expected \"subscription\" or \"poll\"")),
        }
    }
    let min = Duration::from_millis(1);
    let dur = |d: &mut Diag<'_>, v: &Option<Spanned<String>>, name: &str, default: Duration| {
        let x = duration(d, v, &k(name), default);
        if let Some(s) = v
            && (x < min || x > Duration::from_secs(86_400))
        {
            d.error(s.span(), &k(name), format!("{:?} is out of range; expected 1ms..=24h", s.get_ref()));
            return default;
        }
        x
    };
    out.publishing_interval = dur(d, raw.publishing_interval, "publishing_interval", def.publishing_interval);
    out.sampling_interval = match raw.sampling_interval {
        // "0" asks the server for its fastest rate (Part 4 §5.12.1.2).
        Some(s) if s.get_ref().trim() == "0" => Some(Duration::ZERO),
        None => def.sampling_interval,
        v => Some(dur(d, v, "sampling_interval", Duration::from_secs(1))),
    };
    out.poll_interval = dur(d, raw.poll_interval, "poll_interval", def.poll_interval);
    if let Some(q) = raw.queue_size {
        match u32::try_from(*q.get_ref()) {
            Ok(n) if n >= 1 => out.queue_size = n,
            _ => d.error(q.span(), &k("queue_size"), format!("queue_size {} is out of range; expected 1 or more", q.get_ref())),
        }
    }
    let kind = match raw.deadband_type {
        None => None,
        Some(t) => match t.get_ref().as_str() {
            "absolute" => Some(false),
            "percent" => Some(true),
            other => {
                d.error(t.span(), &k("deadband_type"), format!("unknown deadband_type {other:?}; expected \"absolute\" or \"percent\""));
                None
            }
        },
    };
    if let Some(v) = raw.deadband {
        let x = *v.get_ref();
        let percent = kind.unwrap_or(matches!(def.deadband, Some(Deadband::Percent(_))));
        if !x.is_finite() || x < 0.0 || (percent && x > 100.0) {
            d.error(
                v.span(),
                &k("deadband"),
                format!("deadband {x} is out of range; expected 0 or more{}", if percent { ", at most 100 (percent)" } else { "" }),
            );
        } else if x == 0.0 {
            out.deadband = None;
        } else {
            out.deadband = Some(if percent { Deadband::Percent(x) } else { Deadband::Absolute(x) });
        }
    } else if let (Some(p), Some(db)) = (kind, def.deadband) {
        let x = match db {
            Deadband::Absolute(x) | Deadband::Percent(x) => x,
        };
        out.deadband = Some(if p { Deadband::Percent(x) } else { Deadband::Absolute(x) });
    } else if let (Some(_), Some(t)) = (kind, raw.deadband_type) {
        d.error(t.span(), &k("deadband_type"), "deadband_type without a `deadband` value");
    }
    out
}

fn warn_poll_keys(d: &mut Diag<'_>, key: &str, raw: &RawAcq<'_>, acq: &AcqDefaults) {
    if acq.poll {
        for (v, n) in [(raw.publishing_interval, "publishing_interval"), (raw.sampling_interval, "sampling_interval")] {
            if let Some(v) = v {
                d.warn(
                    v.span(),
                    &format!("{key} / {n}"),
                    format!("`{n}` applies to mode = \"subscription\"; this tag is polled (poll_interval)"),
                );
            }
        }
        if let Some(v) = raw.deadband {
            d.warn(v.span(), &format!("{key} / deadband"), "a deadband applies to mode = \"subscription\"; this tag is polled");
        }
    } else if let Some(v) = raw.poll_interval {
        d.warn(
            v.span(),
            &format!("{key} / poll_interval"),
            "`poll_interval` applies to mode = \"poll\"; this tag is subscribed (publishing_interval, sampling_interval)",
        );
    }
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
    reject_unknown_keys(&mut item, DEVICE_KEYS, diag, key);
    let raw = de_item::<RawDevice>(item, diag, key);
    let name = raw.as_ref().map(|r| r.name.get_ref().clone()).unwrap_or_default();
    let key = if raw.is_some() { format!("device {name:?}") } else { key.to_string() };
    let k = |s: &str| format!("{key} / {s}");
    let mut defaults = AcqDefaults {
        poll: false,
        publishing_interval: Duration::from_secs(1),
        sampling_interval: None,
        queue_size: 1,
        poll_interval: Duration::from_secs(1),
        deadband: None,
    };
    let mut device = None;
    if let Some(raw) = &raw {
        if let Err(e) = names::check(&name) {
            diag.error(raw.name.span(), &k("name"), e);
        } else if name == crate::telemetry::HEALTH_DEVICE {
            diag.error(raw.name.span(), &k("name"), format!("{name:?} is reserved for the gateway's own health samples"));
        }
        let endpoint = match &raw.endpoint {
            Some(e) => {
                let ep = e.get_ref().trim().to_string();
                if let Err(err) = check_endpoint(&ep) {
                    diag.error(e.span(), &k("endpoint"), err);
                }
                ep
            }
            None => {
                diag.error(raw.name.span(), &k("endpoint"), "missing key `endpoint`: the server URL, e.g. \"opc.tcp://192.168.1.20:4840\"");
                String::new()
            }
        };
        let policy = match &raw.security_policy {
            None => Policy::None,
            Some(p) => Policy::parse(p.get_ref()).unwrap_or_else(|| {
                diag.error(
                    p.span(),
                    &k("security_policy"),
                    format!(
                        "unknown security_policy {:?}; expected None, Basic256Sha256, Aes128Sha256RsaOaep or Aes256Sha256RsaPss",
                        p.get_ref()
                    ),
                );
                Policy::None
            }),
        };
        let mode = match &raw.security_mode {
            None if policy == Policy::None => Mode::None,
            None => Mode::SignAndEncrypt,
            Some(m) => match m.get_ref().to_ascii_lowercase().replace(['_', '-'], "").as_str() {
                "none" => Mode::None,
                "sign" => Mode::Sign,
                "signandencrypt" => Mode::SignAndEncrypt,
                other => {
                    diag.error(
                        m.span(),
                        &k("security_mode"),
                        format!("unknown security_mode {other:?}; expected None, Sign or SignAndEncrypt"),
                    );
                    Mode::None
                }
            },
        };
        if (policy == Policy::None) != (mode == Mode::None) {
            let span = raw.security_mode.as_ref().or(raw.security_policy.as_ref()).map_or(raw.name.span(), |s| s.span());
            diag.error(span, &k("security_mode"), format!(
                "security_policy {policy:?} with security_mode {mode:?}: policy None goes with mode None, and a real policy needs Sign or SignAndEncrypt"
            ));
        }
        let password = read_secret(diag, &key, "password", &raw.password, &raw.password_file, &raw.password_env, base);
        let password_failed = matches!(password, SecretKey::Failed);
        let password = password.secret();
        let identity = match (&raw.username, password, &raw.user_certificate, &raw.user_private_key) {
            (Some(u), Some(p), None, None) => Identity::User { username: u.get_ref().clone(), password: p },
            (Some(u), None, None, None) => {
                // A password key that could not be read was reported already.
                if !password_failed {
                    diag.error(u.span(), &k("password"), "a username needs `password`, `password_file` or `password_env`");
                }
                Identity::Anonymous
            }
            (None, Some(_), _, _) => {
                let span = raw
                    .password
                    .as_ref()
                    .or(raw.password_file.as_ref())
                    .or(raw.password_env.as_ref())
                    .map_or(raw.name.span(), |s| s.span());
                diag.error(span, &k("username"), "a password is set but no username");
                Identity::Anonymous
            }
            (None, None, Some(c), Some(pk)) => Identity::X509 { certificate: base.join(c.get_ref()), private_key: base.join(pk.get_ref()) },
            (None, None, None, None) => Identity::Anonymous,
            (Some(u), _, Some(_), _) | (Some(u), _, _, Some(_)) => {
                diag.error(u.span(), &k("username"), "choose one user identity: username/password or user_certificate/user_private_key");
                Identity::Anonymous
            }
            (None, None, c, pk) => {
                let span = c.as_ref().or(pk.as_ref()).map_or(raw.name.span(), |s| s.span());
                diag.error(
                    span,
                    &k("user_certificate"),
                    "an X.509 user identity needs both `user_certificate` (DER) and `user_private_key` (PEM)",
                );
                Identity::Anonymous
            }
        };
        if let Identity::X509 { certificate, private_key } = &identity {
            for (p, n) in [(certificate, "user_certificate"), (private_key, "user_private_key")] {
                if !p.exists() {
                    let span = if n == "user_certificate" { raw.user_certificate.as_ref() } else { raw.user_private_key.as_ref() };
                    diag.error(span.map_or(raw.name.span(), |s| s.span()), &k(n), format!("{} does not exist", p.display()));
                }
            }
        }
        if policy == Policy::None && !matches!(identity, Identity::Anonymous) {
            let span = raw.username.as_ref().or(raw.user_certificate.as_ref()).map_or(raw.name.span(), |s| s.span());
            diag.warn(span, &k("security_policy"), "user credentials over security_policy None: the server encrypts the password with its certificate if it can, but the session itself is not protected");
        }
        let pki_dir = raw.pki_dir.as_ref().map(|p| base.join(p.get_ref()));
        let trust: Vec<PathBuf> = match raw.trust_server_certificate.as_ref().map(|t| (t.get_ref(), t.span())) {
            None => Vec::new(),
            Some((list, span)) => {
                let files: Vec<&String> = match list {
                    TrustList::One(f) => vec![f],
                    TrustList::Many(fs) => fs.iter().collect(),
                };
                files
                    .into_iter()
                    .map(|f| {
                        let p = base.join(f);
                        if !p.exists() {
                            diag.error(span.clone(), &k("trust_server_certificate"), format!("{} does not exist", p.display()));
                        } else if let Err(e) = read_any_cert(&p) {
                            diag.error(span.clone(), &k("trust_server_certificate"), format!("{e:#}"));
                        }
                        p
                    })
                    .collect()
            }
        };
        let session_timeout = duration(diag, &raw.session_timeout, &k("session_timeout"), Duration::from_secs(60));
        let keep_alive = duration(diag, &raw.keep_alive, &k("keep_alive"), Duration::from_secs(5));
        if keep_alive >= session_timeout {
            let span = raw.keep_alive.as_ref().map_or(raw.name.span(), |s| s.span());
            diag.error(
                span,
                &k("keep_alive"),
                format!(
                    "keep_alive ({}) must be shorter than session_timeout ({}): the server would close the session between two keep-alives",
                    crate::units::format_duration(keep_alive),
                    crate::units::format_duration(session_timeout)
                ),
            );
        }
        let request_timeout = duration(diag, &raw.request_timeout, &k("request_timeout"), Duration::from_secs(10));
        let reconnect_max = duration(diag, &raw.reconnect_max, &k("reconnect_max"), Duration::from_secs(5));
        for (v, n, lo) in [
            (&raw.session_timeout, "session_timeout", Duration::from_secs(1)),
            (&raw.keep_alive, "keep_alive", Duration::from_millis(100)),
            (&raw.request_timeout, "request_timeout", Duration::from_millis(100)),
            (&raw.reconnect_max, "reconnect_max", Duration::from_millis(100)),
        ] {
            if let Some(s) = v
                && crate::units::parse_duration(s.get_ref()).is_ok_and(|x| x < lo || x > Duration::from_secs(86_400))
            {
                diag.error(
                    s.span(),
                    &k(n),
                    format!("{:?} is out of range; expected {}..=24h", s.get_ref(), crate::units::format_duration(lo)),
                );
            }
        }
        defaults = acquisition(diag, &key, &raw_acq!(raw), defaults);
        device = Some(OpcUaDevice {
            name: name.clone(),
            endpoint,
            policy,
            mode,
            identity,
            pki_dir,
            trust,
            strict_server_certificate: raw.strict_server_certificate.unwrap_or(true),
            session_timeout,
            keep_alive,
            request_timeout,
            reconnect_max,
            tags: Vec::new(),
        });
    }

    let items = match tags_item {
        Some(t) => crate::diag::array_items_of(t, diag, &format!("{key} / tag"), "device.tag"),
        None => Vec::new(),
    };
    if items.is_empty()
        && let Some(r) = &raw
    {
        diag.warn(r.name.span(), &key, "device has no [[device.tag]]; nothing will be read");
    }
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut tags = Vec::new();
    let mut by_index: Vec<(String, u16, std::ops::Range<usize>)> = Vec::new();
    for (i, mut t) in items.into_iter().enumerate() {
        let tkey =
            crate::diag::peek_str(&t, "name").map_or_else(|| format!("{key} / tag #{}", i + 1), |(n, _)| format!("{key} / tag {n:?}"));
        reject_unknown_keys(&mut t, TAG_KEYS, diag, &tkey);
        let Some(rt) = de_item::<RawTag>(t, diag, &tkey) else { continue };
        let tname = rt.name.get_ref().clone();
        if let Err(e) = names::check(&tname) {
            diag.error(rt.name.span(), &format!("{tkey} / name"), e);
        }
        if let Some(prev) = seen.get(&tname) {
            let (line, _) = crate::diag::line_col(diag.source(), *prev);
            diag.error(rt.name.span(), &format!("{tkey} / name"), format!("duplicate tag name (first defined on line {line})"));
        } else {
            seen.insert(tname.clone(), rt.name.span().start);
        }
        let node = match rt.node_id.get_ref().parse::<NodeRef>() {
            Ok(n) => Some(n),
            Err(e) => {
                diag.error(rt.node_id.span(), &format!("{tkey} / node_id"), e.to_string());
                None
            }
        };
        let acq = acquisition(diag, &tkey, &raw_acq!(rt), defaults);
        warn_poll_keys(diag, &tkey, &raw_acq!(rt), &acq);
        let acquisition = if acq.poll {
            Acquisition::Poll { interval: acq.poll_interval }
        } else {
            Acquisition::Subscription {
                publishing_interval: acq.publishing_interval,
                sampling_interval: acq.sampling_interval.unwrap_or(acq.publishing_interval),
                queue_size: acq.queue_size,
                deadband: acq.deadband,
            }
        };
        if let Some(NodeRef { namespace: super::node::Namespace::Index(ns), .. }) = &node
            && *ns >= 2
        {
            by_index.push((tname.clone(), *ns, rt.node_id.span()));
        }
        if let Some(node) = node {
            tags.push(OpcUaTag { name: tname, node, acquisition, unit: rt.unit.filter(|u| !u.is_empty()) });
        }
    }
    warn_namespace_indexes(diag, &key, device.as_ref().map_or("opc.tcp://HOST:4840", |d| d.endpoint.as_str()), &by_index);
    if diag.error_count() > before {
        return None;
    }
    device.map(|mut d| {
        d.tags = tags;
        d
    })
}

/// One warning per device for its tags addressed by namespace index
/// (`ns=2;…` and above; `tags`: name, index, span of `node_id`): a server
/// renumbers its namespace table after updates and restarts, and a stale
/// index reads another node, or none, without any error. Indexes 0 (the
/// OPC UA namespace) and 1 (the server's own) are fixed by OPC UA Part 3
/// §8.2.1 and are not warned.
fn warn_namespace_indexes(diag: &mut Diag<'_>, key: &str, endpoint: &str, tags: &[(String, u16, std::ops::Range<usize>)]) {
    let Some((_, _, span)) = tags.first() else { return };
    let listed: Vec<String> = tags.iter().take(3).map(|(n, i, _)| format!("{n:?} (ns={i})")).collect();
    let more = if tags.len() > 3 { format!(" and {} more", tags.len() - 3) } else { String::new() };
    diag.warn(
        span.clone(),
        &format!("{key} / tag / node_id"),
        format!(
            "{} tag{} address{} a namespace by index: {}{more}. Servers renumber their namespaces after updates and restarts, and a \
             renumbered index reads another node (or none) without any error: write nsu=<namespace URI> instead \
             (`relais browse {endpoint}` prints every NodeId with nsu=)",
            tags.len(),
            if tags.len() == 1 { "" } else { "s" },
            if tags.len() == 1 { "es" } else { "" },
            listed.join(", ")
        ),
    );
}

/// Most bytes of a certificate or key file (a certificate chain is a few KiB).
pub const CERT_FILE_MAX: u64 = 1 << 20;

/// Reads an X.509 certificate in DER or PEM (a regular file of at most
/// [`CERT_FILE_MAX`]). Errors name the file.
pub fn read_any_cert(f: &Path) -> anyhow::Result<opcua::crypto::X509> {
    use opcua::crypto::X509;
    let bytes = crate::secret::read_capped(f, CERT_FILE_MAX).map_err(|e| anyhow::anyhow!("{e}"))?;
    X509::from_der(&bytes)
        .or_else(|_| X509::from_pem(&bytes))
        .map_err(|e| anyhow::anyhow!("{} is not an X.509 certificate (DER or PEM): {e}", f.display()))
}
