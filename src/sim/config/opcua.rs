//! `[opcua]` of a simulator config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use toml::Spanned;

use super::raw::RawOpcUa;
use crate::diag::Diag;
use crate::sim::opcua::OpcUaSimConfig;

/// Checks `[opcua]`: listen address, security policies, durations, namespace
/// URI, users.
pub(super) fn parse_opcua(o: RawOpcUa, d: &mut Diag<'_>) -> OpcUaSimConfig {
    let listen = match &o.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 4840)),
        Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
            d.error(l.span(), "opcua / listen", format!("{:?} is not an address like \"127.0.0.1:4840\"", l.get_ref()));
            SocketAddr::from(([127, 0, 0, 1], 4840))
        }),
    };
    let mut security = Vec::new();
    let mut allow_none = true;
    if let Some(list) = &o.security {
        allow_none = false;
        for p in list.get_ref() {
            match p.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
                "none" => allow_none = true,
                "basic256sha256" => security.push(SecurityPolicy::Basic256Sha256),
                "aes128sha256rsaoaep" => security.push(SecurityPolicy::Aes128Sha256RsaOaep),
                "aes256sha256rsapss" => security.push(SecurityPolicy::Aes256Sha256RsaPss),
                other => d.error(
                    list.span(),
                    "opcua / security",
                    format!("unknown security policy {other:?}; expected None, Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss"),
                ),
            }
        }
    } else {
        security.push(SecurityPolicy::Basic256Sha256);
    }
    if let Some(list) = &o.security
        && list.get_ref().is_empty()
    {
        d.error(
            list.span(),
            "opcua / security",
            "security is empty: list at least one of None, Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss",
        );
    }
    let dur = |d: &mut Diag<'_>, v: &Option<Spanned<String>>, key: &str, default: Duration| {
        crate::diag::duration(d, v, &format!("opcua / {key}"), default)
    };
    let restart_after = o.restart_after.as_ref().map(|_| dur(d, &o.restart_after, "restart_after", Duration::from_secs(60)));
    if let (Some(t), Some(r)) = (restart_after, &o.restart_after)
        && t < Duration::from_secs(1)
    {
        d.error(r.span(), "opcua / restart_after", "restart_after must be at least 1s (the server would restart without ever serving)");
    }
    let ns_span = o.namespace_uri.as_ref().map_or(0..0, |n| n.span());
    let namespace_uri = o.namespace_uri.map_or_else(|| "urn:relais:sim".into(), |n| n.into_inner());
    if namespace_uri.trim().is_empty() || namespace_uri == "http://opcfoundation.org/UA/" {
        d.error(
            ns_span,
            "opcua / namespace_uri",
            format!("namespace_uri {namespace_uri:?} cannot be used: give a URI of your own such as \"urn:lab:line5\""),
        );
    }
    let mut names = std::collections::HashSet::new();
    for u in &o.users {
        if u.username.trim().is_empty() {
            d.error(0..0, "opcua / users", "a user has an empty username");
        } else if !names.insert(u.username.as_str()) {
            d.error(0..0, "opcua / users", format!("user {:?} is listed twice", u.username));
        }
    }
    if o.anonymous == Some(false) && o.users.is_empty() && o.trust_client_certs != Some(true) {
        d.warn(0..0, "opcua / anonymous", "anonymous = false and no users: only clients with an X.509 user certificate can open a session");
    }
    let scan = dur(d, &o.scan, "scan", Duration::from_millis(100)).max(Duration::from_millis(10));
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
        down_for: dur(d, &o.down_for, "down_for", Duration::from_secs(5)),
        scan,
    }
}
