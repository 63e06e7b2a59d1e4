//! `[opcua]` of a simulator config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use toml::Spanned;

use super::raw::RawOpcUa;
use crate::diag::{Diag, Reader};
use crate::sim::opcua::OpcUaSimConfig;

/// The security policies the simulator serves, as written in `security`.
const POLICIES: &[(&str, SecurityPolicy)] = &[
    ("None", SecurityPolicy::None),
    ("Basic256Sha256", SecurityPolicy::Basic256Sha256),
    ("Aes128Sha256RsaOaep", SecurityPolicy::Aes128Sha256RsaOaep),
    ("Aes256Sha256RsaPss", SecurityPolicy::Aes256Sha256RsaPss),
];

/// Checks `[opcua]`: listen address, security policies, durations, namespace
/// URI, users.
pub(super) fn parse_opcua(o: RawOpcUa, d: &mut Diag<'_>) -> OpcUaSimConfig {
    let mut r = Reader::new(d, "opcua");
    let listen = r.socket_addr(&o.listen, "listen", "127.0.0.1:4840").unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4840)));
    let (security, allow_none) = security(&o.security, &mut r);
    let restart_after = o.restart_after.as_ref().map(|_| r.duration(&o.restart_after, "restart_after", Duration::from_secs(60)));
    if let (Some(t), Some(ra)) = (restart_after, &o.restart_after)
        && t < Duration::from_secs(1)
    {
        r.error(ra.span(), "restart_after", "restart_after must be at least 1s (the server would restart without ever serving)");
    }
    let ns_span = o.namespace_uri.as_ref().map_or(0..0, |n| n.span());
    let namespace_uri = o.namespace_uri.map_or_else(|| "urn:relais:sim".into(), |n| n.into_inner());
    if namespace_uri.trim().is_empty() || namespace_uri == "http://opcfoundation.org/UA/" {
        r.error(
            ns_span,
            "namespace_uri",
            format!("namespace_uri {namespace_uri:?} cannot be used: give a URI of your own such as \"urn:lab:line5\""),
        );
    }
    let mut names = std::collections::HashSet::new();
    for u in &o.users {
        if u.username.trim().is_empty() {
            r.error(0..0, "users", "a user has an empty username");
        } else if !names.insert(u.username.as_str()) {
            r.error(0..0, "users", format!("user {:?} is listed twice", u.username));
        }
    }
    if o.anonymous == Some(false) && o.users.is_empty() && o.trust_client_certs != Some(true) {
        r.warn(0..0, "anonymous", "anonymous = false and no users: only clients with an X.509 user certificate can open a session");
    }
    let scan = r.duration(&o.scan, "scan", Duration::from_millis(100)).max(Duration::from_millis(10));
    OpcUaSimConfig {
        listen,
        namespace_uri,
        security,
        allow_none,
        pki_dir: PathBuf::from(o.pki_dir.unwrap_or_else(|| "relais-sim-pki".into())),
        trust_client_certs: o.trust_client_certs.unwrap_or(true),
        users: o.users.into_iter().map(|u| (u.username, u.password)).collect(),
        anonymous: o.anonymous.unwrap_or(true),
        restart_after,
        down_for: r.duration(&o.down_for, "down_for", Duration::from_secs(5)),
        scan,
    }
}

/// `security`: the policies served with a secure channel, and whether
/// `None` is served too (absent: Basic256Sha256 and None). Names are read
/// ignoring case, `_` and `-`.
fn security(list: &Option<Spanned<Vec<String>>>, r: &mut Reader<'_, '_>) -> (Vec<SecurityPolicy>, bool) {
    let Some(list) = list else { return (vec![SecurityPolicy::Basic256Sha256], true) };
    if list.get_ref().is_empty() {
        r.error(
            list.span(),
            "security",
            "security is empty: list at least one of None, Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss",
        );
    }
    let mut security = Vec::new();
    let mut allow_none = false;
    for p in list.get_ref() {
        match r.choice_loose(&Some(Spanned::new(list.span(), p.clone())), "security", POLICIES, SecurityPolicy::Unknown) {
            SecurityPolicy::None => allow_none = true,
            SecurityPolicy::Unknown => {}
            policy => security.push(policy),
        }
    }
    (security, allow_none)
}
