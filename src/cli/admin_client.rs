//! The client side of the admin listener for `relais status` and `relais
//! tail`: where the daemon listens and its token (from the configuration's
//! `[admin]`, or `--url` and `RELAIS_ADMIN_TOKEN`), and errors that say what
//! to do (daemon not running, token refused).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use crate::config::{AdminAuth, Config};

/// Environment variable holding the token when no `--config` is given.
pub const TOKEN_ENV: &str = "RELAIS_ADMIN_TOKEN";

/// Where to reach the daemon.
pub struct Target {
    /// `http://host:port` (no trailing slash).
    pub base: String,
    /// The bearer token, if the listener needs one.
    pub token: Option<crate::secret::Secret>,
}

/// The address to connect to for a listener bound to `listen`
/// (an unspecified address is reached on loopback).
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        let ip = if listen.is_ipv4() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) };
        SocketAddr::new(ip, listen.port())
    } else {
        listen
    }
}

/// The target from `config` (`[admin]` listen and token), else `url` with
/// the token of [`TOKEN_ENV`].
pub fn target(config: Option<&Config>, path: Option<&Path>, url: &str) -> Result<Target, String> {
    let Some(cfg) = config else {
        let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()).map(crate::secret::Secret::new);
        return Ok(Target { base: url.trim_end_matches('/').to_string(), token });
    };
    let file = path.map(|p| p.display().to_string()).unwrap_or_default();
    let Some(admin) = &cfg.admin else {
        return Err(format!("{file} has no [admin] section: the daemon serves no admin API (add [admin], see docs/configuration.md)"));
    };
    let token = match &admin.auth {
        AdminAuth::Token(t) => Some(t.clone()),
        AdminAuth::None => None,
    };
    Ok(Target { base: format!("http://{}", connect_addr(admin.listen)), token })
}

/// An HTTP client (plain HTTP to the local listener).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// GET `path` with the token; a readable error when the daemon is not
/// running, refuses the token or answers otherwise.
pub async fn get(
    t: &Target,
    path: &str,
    query: &[(&str, &str)],
    timeout: Option<std::time::Duration>,
) -> Result<reqwest::Response, String> {
    let mut url = reqwest::Url::parse(&format!("{}{path}", t.base)).map_err(|e| format!("{}{path}: not a URL: {e}", t.base))?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let mut req = client().get(url);
    if let Some(tok) = &t.token {
        req = req.bearer_auth(tok.expose());
    }
    if let Some(d) = timeout {
        req = req.timeout(d);
    }
    let r = req.send().await.map_err(|e| {
        if e.is_connect() {
            format!("relais is not running, or its admin listener is elsewhere: nothing answers at {} ({e}); start it with `relais run --config FILE`", t.base)
        } else {
            format!("{}{path}: {e}", t.base)
        }
    })?;
    match r.status().as_u16() {
        200 => Ok(r),
        401 if t.token.is_none() => {
            Err(format!("{} asks for a token: give --config FILE (its [admin] token_file) or set {TOKEN_ENV}", t.base))
        }
        401 => Err(format!("{} refused the token (401): it is not the daemon's [admin] token (token_file or token_env)", t.base)),
        code => {
            let body = r.text().await.unwrap_or_default();
            Err(format!("{}{path} answered {code}: {}", t.base, body.trim()))
        }
    }
}
