//! The security keys of an OPC UA device: security policy and mode, the
//! user identity (anonymous, user name and password, X.509), and the server
//! certificates to trust.

use std::path::{Path, PathBuf};

use super::{Identity, Mode, Policy, RawDevice, TrustList};
use crate::diag::Reader;
use crate::secret::{SecretKey, read_secret};

/// `security_policy` and `security_mode`, which must agree (None with None,
/// a real policy with Sign or SignAndEncrypt, the default).
pub(super) fn read_security(r: &mut Reader<'_, '_>, raw: &RawDevice) -> (Policy, Mode) {
    let policies = [
        ("None", Policy::None),
        ("Basic256Sha256", Policy::Basic256Sha256),
        ("Aes128Sha256RsaOaep", Policy::Aes128Sha256RsaOaep),
        ("Aes256Sha256RsaPss", Policy::Aes256Sha256RsaPss),
    ];
    let policy = r.choice_loose(&raw.security_policy, "security_policy", &policies, Policy::None);
    let default_mode = if policy == Policy::None { Mode::None } else { Mode::SignAndEncrypt };
    let modes = [("None", Mode::None), ("Sign", Mode::Sign), ("SignAndEncrypt", Mode::SignAndEncrypt)];
    let before = r.error_count();
    let mode = r.choice_loose(&raw.security_mode, "security_mode", &modes, default_mode);
    let mode = if r.error_count() > before { Mode::None } else { mode };
    if (policy == Policy::None) != (mode == Mode::None) {
        let span = raw.security_mode.as_ref().or(raw.security_policy.as_ref()).map_or(raw.name.span(), |s| s.span());
        r.error(span, "security_mode", format!(
            "security_policy {policy:?} with security_mode {mode:?}: policy None goes with mode None, and a real policy needs Sign or SignAndEncrypt"
        ));
    }
    (policy, mode)
}

/// The user identity: one of user name and password (from `password`,
/// `password_file` or `password_env`), an X.509 certificate and key, or none.
pub(super) fn read_identity(r: &mut Reader<'_, '_>, raw: &RawDevice, base: &Path) -> Identity {
    let key = r.table().to_string();
    let password = read_secret(r.diag(), &key, "password", &raw.password, &raw.password_file, &raw.password_env, base);
    let password_failed = matches!(password, SecretKey::Failed);
    let password = password.secret();
    let identity = match (&raw.username, password, &raw.user_certificate, &raw.user_private_key) {
        (Some(u), Some(p), None, None) => Identity::User { username: u.get_ref().clone(), password: p },
        (Some(u), None, None, None) => {
            // A password key that could not be read was reported already.
            if !password_failed {
                r.error(u.span(), "password", "a username needs `password`, `password_file` or `password_env`");
            }
            Identity::Anonymous
        }
        (None, Some(_), _, _) => {
            let span =
                raw.password.as_ref().or(raw.password_file.as_ref()).or(raw.password_env.as_ref()).map_or(raw.name.span(), |s| s.span());
            r.error(span, "username", "a password is set but no username");
            Identity::Anonymous
        }
        (None, None, Some(c), Some(pk)) => Identity::X509 { certificate: base.join(c.get_ref()), private_key: base.join(pk.get_ref()) },
        (None, None, None, None) => Identity::Anonymous,
        (Some(u), _, Some(_), _) | (Some(u), _, _, Some(_)) => {
            r.error(u.span(), "username", "choose one user identity: username/password or user_certificate/user_private_key");
            Identity::Anonymous
        }
        (None, None, c, pk) => {
            let span = c.as_ref().or(pk.as_ref()).map_or(raw.name.span(), |s| s.span());
            r.error(span, "user_certificate", "an X.509 user identity needs both `user_certificate` (DER) and `user_private_key` (PEM)");
            Identity::Anonymous
        }
    };
    if let Identity::X509 { certificate, private_key } = &identity {
        for (p, n, v) in
            [(certificate, "user_certificate", &raw.user_certificate), (private_key, "user_private_key", &raw.user_private_key)]
        {
            if !p.exists() {
                r.error(v.as_ref().map_or(raw.name.span(), |s| s.span()), n, format!("{} does not exist", p.display()));
            }
        }
    }
    identity
}

/// `trust_server_certificate`: one file or a list, each an existing X.509
/// certificate (DER or PEM).
pub(super) fn read_trust(r: &mut Reader<'_, '_>, raw: &RawDevice, base: &Path) -> Vec<PathBuf> {
    let Some((list, span)) = raw.trust_server_certificate.as_ref().map(|t| (t.get_ref(), t.span())) else { return Vec::new() };
    let files: Vec<&String> = match list {
        TrustList::One(f) => vec![f],
        TrustList::Many(fs) => fs.iter().collect(),
    };
    files
        .into_iter()
        .map(|f| {
            let p = base.join(f);
            if !p.exists() {
                r.error(span.clone(), "trust_server_certificate", format!("{} does not exist", p.display()));
            } else if let Err(e) = read_any_cert(&p) {
                r.error(span.clone(), "trust_server_certificate", format!("{e:#}"));
            }
            p
        })
        .collect()
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
