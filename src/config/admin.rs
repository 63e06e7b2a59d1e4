//! `[admin]`: the admin listener (`/metrics`, `/healthz`, `/readyz`).
//!
//! No listener without the section: a plant network gets no new open port
//! unless the config asks for one. With it, the listener binds
//! `127.0.0.1:9780` unless `listen` says otherwise, and every request needs
//! the bearer token (`token_file` or `token_env`); `auth = "none"` must be
//! written out and is refused on an address other than loopback.
//! Keys are documented in `docs/configuration.md`.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::component::{Claim, Resource};
use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};
use crate::secret::{Secret, SecretKey, read_secret};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9780";

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listen address (default [`DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// Where `listen` (or the section) is in the file, for claim clashes.
    pub listen_span: Range<usize>,
    /// How requests are authorised.
    pub auth: AdminAuth,
    /// `/readyz`: a device must have produced a good sample within this many
    /// of its poll periods (default 3).
    pub ready_periods: u32,
    /// `/readyz`: a sink holding unacknowledged records must have had an
    /// acknowledgement within this time (default 30 s).
    pub ready_ack_within: Duration,
}

/// `auth`.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminAuth {
    /// `auth = "token"` (default): `Authorization: Bearer <token>` on every
    /// request except `/healthz`.
    Token(Secret),
    /// `auth = "none"`: open, loopback only.
    None,
}

impl AdminConfig {
    /// The listen address claim: shared with no HTTP `[[source]]` (the root
    /// reports a clash).
    pub fn claim(&self) -> Claim {
        Claim {
            resource: Resource::ListenAlone(self.listen),
            owner: "admin".into(),
            key: "admin / listen".into(),
            span: Some(self.listen_span.clone()),
        }
    }
}

/// Keys of `[admin]`.
pub const ADMIN_KEYS: &[&str] = &["listen", "auth", "token_file", "token_env", "ready_periods", "ready_ack_within"];

#[derive(Deserialize)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    ready_periods: Option<Spanned<i64>>,
    ready_ack_within: Option<Spanned<String>>,
}

#[derive(Clone, Copy, PartialEq)]
enum AuthKind {
    Token,
    None,
}

/// Reads `[admin]`; relative `token_file` paths resolve against `base`.
/// Every error is recorded in `diag`; `None` when there was one.
pub fn parse_admin(mut item: Item<'_>, diag: &mut Diag<'_>, base: &Path) -> Option<AdminConfig> {
    let section = item.span();
    reject_unknown_keys(&mut item, ADMIN_KEYS, diag, "admin");
    let raw: RawAdmin = de_item(item, diag, "admin")?;
    let before = diag.error_count();
    let mut r = Reader::new(diag, "admin");
    let listen = match &raw.listen {
        None => Some(DEFAULT_LISTEN.parse().expect("valid default")),
        v => r.socket_addr(v, "listen", DEFAULT_LISTEN),
    };
    let kind = r.choice(&raw.auth, "auth", &[("token", AuthKind::Token), ("none", AuthKind::None)], AuthKind::Token);
    let ready_periods = r.int(&raw.ready_periods, "ready_periods", 1..=1000, 3u32);
    let ready_ack_within =
        r.duration_in(&raw.ready_ack_within, "ready_ack_within", Duration::from_secs(30), Duration::from_secs(1)..=Duration::MAX);
    let listen_span = raw.listen.as_ref().map_or(section.clone(), |l| l.span());
    let auth_span = raw.auth.as_ref().map_or(section.clone(), |a| a.span());
    let auth = match kind {
        AuthKind::Token => match read_secret(diag, "admin", "token", &None, &raw.token_file, &raw.token_env, base) {
            SecretKey::Read(s) => {
                if listen.is_some_and(|l| !l.ip().is_loopback()) {
                    diag.warn(
                            listen_span.clone(),
                            "admin / listen",
                            "the admin listener is open beyond this machine over plain HTTP: the token travels in clear text; put a TLS reverse proxy in front or listen on 127.0.0.1",
                        );
                }
                Some(AdminAuth::Token(s))
            }
            SecretKey::Absent => {
                diag.error(
                        auth_span,
                        "admin / auth",
                        "the admin listener needs a bearer token: set `token_file` (a file holding it) or `token_env` (a variable holding it), or `auth = \"none\"` on a loopback address",
                    );
                None
            }
            SecretKey::Failed => None,
        },
        AuthKind::None => {
            if let Some(t) = raw.token_file.as_ref().or(raw.token_env.as_ref()) {
                diag.error(t.span(), "admin / auth", "a token is given but `auth = \"none\"`: remove the token or set `auth = \"token\"`");
            }
            if let Some(l) = listen
                && !l.ip().is_loopback()
            {
                diag.error(
                    listen_span.clone(),
                    "admin / listen",
                    format!("`auth = \"none\"` on {l}: anyone on the network could read the gateway's state; listen on 127.0.0.1 or use `auth = \"token\"` with `token_file`"),
                );
            }
            Some(AdminAuth::None)
        }
    };
    if diag.error_count() > before {
        return None;
    }
    Some(AdminConfig { listen: listen?, listen_span, auth: auth?, ready_periods, ready_ack_within })
}
