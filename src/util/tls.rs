//! TLS client settings, written once for every TLS client (the MQTT client
//! of the MQTT sinks and the `mqtt-in` source, the HTTPS, PostgreSQL and
//! NATS sinks): the CA to trust and an optional client certificate, read
//! from PEM files named by the config and checked when it is read, and the
//! rustls client configuration built from them (the `ring` provider only:
//! with `aws-lc-rs` also in the graph rustls panics at run time, see GUIDE §4).
//! (The form of a URL that may be logged is `util::redact::url`.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use crate::diag::{Diag, Item, de_item};

/// PEM files of a TLS client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// CA certificates (PEM) to trust; the system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
}

/// Most bytes of a PEM file.
const PEM_MAX: u64 = 1 << 20;

/// Reads a PEM file (certificate, chain or key): a regular file of at most
/// 1 MiB, so a wrong path (a device, a pipe, a huge file) fails at once.
fn read_pem(p: &Path) -> Result<Vec<u8>, String> {
    crate::secret::read_capped(p, PEM_MAX)
}

/// The TLS keys of a config item.
#[derive(serde::Deserialize)]
struct RawFiles {
    ca_file: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
}

/// Reads the `ca_file`, `client_cert` and `client_key` keys of `item` (which
/// may hold other keys too) and checks them like [`parse_files`].
pub fn read_files(item: Item<'_>, d: &mut Diag<'_>, key: &str, base: &Path) -> TlsFiles {
    match de_item::<RawFiles>(item, d, key) {
        Some(r) => parse_files(d, key, base, &r.ca_file, &r.client_cert, &r.client_key),
        None => TlsFiles::default(),
    }
}

/// Reads and checks the `ca_file`, `client_cert` and `client_key` keys
/// (relative to `base`): readable files (see [`crate::secret::read_capped`]),
/// PEM certificates in the first two and a PEM private key in the third,
/// `client_cert` and `client_key` together. Every problem is recorded under
/// `{key} / …`; the paths are returned (absolute) even when one is wrong.
pub fn parse_files(
    d: &mut Diag<'_>,
    key: &str,
    base: &Path,
    ca: &Option<Spanned<String>>,
    cert: &Option<Spanned<String>>,
    pkey: &Option<Spanned<String>>,
) -> TlsFiles {
    let k = |s: &str| format!("{key} / {s}");
    let mut file = |v: &Option<Spanned<String>>, what: &str, check: &dyn Fn(&[u8]) -> Result<(), &'static str>| -> Option<PathBuf> {
        let v = v.as_ref()?;
        let p = base.join(v.get_ref());
        let p = std::path::absolute(&p).unwrap_or(p);
        match read_pem(&p).and_then(|b| check(&b).map_err(|e| format!("{} {e}", p.display()))) {
            Ok(()) => {}
            Err(e) => d.error(v.span(), &k(what), e),
        }
        Some(p)
    };
    let certs = |b: &[u8]| match CertificateDer::pem_slice_iter(b).filter_map(Result::ok).count() {
        0 => Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        _ => Ok(()),
    };
    let keyf = |b: &[u8]| PrivateKeyDer::from_pem_slice(b).map(|_| ()).map_err(|_| "holds no PEM private key");
    let files = TlsFiles {
        ca_file: file(ca, "ca_file", &certs),
        client_cert: file(cert, "client_cert", &certs),
        client_key: file(pkey, "client_key", &keyf),
    };
    if files.client_cert.is_some() != files.client_key.is_some() {
        let span = cert.as_ref().or(pkey.as_ref()).map(|s| s.span()).unwrap_or(0..0);
        d.error(span, &k("client_cert"), "client_cert and client_key go together: set both or neither");
    }
    files
}

impl TlsFiles {
    /// True when any file is set.
    pub fn any(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some()
    }

    /// The rustls client configuration: the CA file or the system roots,
    /// and the client certificate for mutual TLS. Errors name the key and
    /// the file: unreadable, not PEM, a certificate rustls refuses, no
    /// certificate at all in the CA file or among the system roots.
    pub fn client_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
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
        Ok(match (&self.client_cert, &self.client_key) {
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
}

/// True when `host` names this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_checked_where_the_config_names_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
        let s = |v: &str| Some(Spanned::new(0..1, v.to_string()));
        let mut d = Diag::new("t.toml", "x");
        let f = parse_files(&mut d, "sink", dir.path(), &s("junk.pem"), &s("missing.pem"), &s("junk.pem"));
        assert!(f.any() && f.ca_file.as_ref().is_some_and(|p| p.is_absolute()), "{f:?}");
        let errs: Vec<String> = d.into_errors().0.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("sink / ca_file") && errs[0].contains("junk.pem holds no PEM certificate"), "{errs:?}");
        assert!(errs[1].contains("sink / client_cert") && errs[1].contains("cannot read") && errs[1].contains("missing.pem"), "{errs:?}");
        assert!(errs[2].contains("sink / client_key") && errs[2].contains("junk.pem holds no PEM private key"), "{errs:?}");
        let mut d = Diag::new("t.toml", "x");
        let f = parse_files(&mut d, "sink", dir.path(), &None, &None, &s("junk.pem"));
        assert!(!f.any());
        let errs: Vec<String> = d.into_errors().0.iter().map(|e| e.to_string()).collect();
        assert!(errs.iter().any(|e| e.contains("client_cert and client_key go together")), "{errs:?}");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && is_loopback("localhost") && !is_loopback("10.0.0.1"));
    }
}
