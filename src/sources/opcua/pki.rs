//! The gateway's OPC UA application identity and PKI folder.
//!
//! - One application instance certificate per gateway, in `<pki_dir>/own/cert.der`
//!   with its key in `<pki_dir>/private/private.pem` (mode 0600). It is made
//!   on first start and reused afterwards: the same SHA-1 thumbprint across
//!   restarts, so a server admin trusts it once (field case B19).
//! - Server certificates are trusted by file: `<pki_dir>/trusted/` (the
//!   `trust_server_certificate` key copies files there). An untrusted server
//!   certificate is saved to `<pki_dir>/rejected/` and reported with the
//!   command that trusts it. There is no fallback to security None.

use std::path::{Path, PathBuf};

use opcua::client::ClientBuilder;
use opcua::core::config::Config as _;
use opcua::crypto::{CertificateStore, X509, X509Data};
use opcua::types::EndpointDescription;

use super::config::read_any_cert;

/// The gateway's application identity and PKI folder.
#[derive(Debug, Clone)]
pub struct Pki {
    /// PKI folder.
    pub dir: PathBuf,
    /// Application URI (`urn:relais:<gateway id>` of the gateway that made the
    /// certificate, kept in `own/application_uri`), also in the certificate.
    pub application_uri: String,
    /// Our certificate (DER).
    pub cert_path: PathBuf,
    /// Our private key (PEM).
    pub key_path: PathBuf,
    /// SHA-1 thumbprint of our certificate, hex.
    pub thumbprint: String,
}

/// Validity of a generated client certificate.
const CERT_DAYS: u32 = 5 * 365;

impl Pki {
    /// Opens (or makes, on first use) the PKI folder `dir` and the gateway's
    /// certificate. Errors name the file that cannot be read or written.
    pub fn open(dir: &Path, gateway_id: &str) -> anyhow::Result<Pki> {
        for sub in ["own", "private", "trusted", "rejected"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.join(sub).display()))?;
        }
        let cert_path = dir.join("own/cert.der");
        let key_path = dir.join("private/private.pem");
        // The application URI is kept beside the certificate that carries it,
        // so both stay consistent when the gateway id changes.
        let uri_path = dir.join("own/application_uri");
        let (cert, application_uri) = if cert_path.exists() && key_path.exists() {
            let cert = CertificateStore::read_cert(&cert_path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert_path.display()))?;
            CertificateStore::read_pkey(&key_path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key_path.display()))?;
            let uri =
                std::fs::read_to_string(&uri_path).map(|u| u.trim().to_string()).unwrap_or_else(|_| format!("urn:relais:{gateway_id}"));
            if cert.is_application_uri_valid(&uri).is_err() {
                tracing::warn!(
                    certificate = %cert_path.display(), application_uri = %uri,
                    "the OPC UA client certificate does not carry this application URI; servers may reject it (BadCertificateUriInvalid). \
                     Delete the certificate and its key to make a new one, then trust the new one on the servers"
                );
            }
            tracing::info!(certificate = %cert_path.display(), thumbprint = %cert.thumbprint().as_hex_string(), "OPC UA client certificate");
            (cert, uri)
        } else {
            let application_uri = format!("urn:relais:{gateway_id}");
            let desc = ClientBuilder::new()
                .application_name(format!("relais {gateway_id}"))
                .application_uri(&application_uri)
                .config()
                .application_description();
            let mut data = X509Data::from(desc);
            data.certificate_duration_days = CERT_DAYS;
            let (cert, _) = CertificateStore::create_certificate_and_key(&data, false, &cert_path, &key_path)
                .map_err(|e| anyhow::anyhow!("cannot write the OPC UA client certificate to {}: {e}", dir.display()))?;
            restrict(&key_path)?;
            std::fs::write(&uri_path, &application_uri).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", uri_path.display()))?;
            tracing::info!(
                certificate = %cert_path.display(), thumbprint = %cert.thumbprint().as_hex_string(),
                "made the gateway's OPC UA client certificate (kept and reused from now on); trust it on the servers that use security"
            );
            (cert, application_uri)
        };
        let thumbprint = cert.thumbprint().as_hex_string();
        Ok(Pki { dir: dir.to_path_buf(), application_uri, cert_path, key_path, thumbprint })
    }

    /// Copies server certificate files (DER or PEM) into the trusted folder,
    /// named as the library looks them up.
    pub fn trust(&self, files: &[PathBuf]) -> anyhow::Result<()> {
        for f in files {
            let cert = read_any_cert(f)?;
            let dest = self.dir.join("trusted").join(CertificateStore::cert_file_name(&cert));
            let der = cert.to_der().map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            std::fs::write(&dest, der).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dest.display()))?;
        }
        Ok(())
    }

    /// The server certificate of `endpoint` as seen from our PKI folder
    /// (trusted or not, its file name there), if the endpoint carries one.
    pub fn server_cert(&self, endpoint: &EndpointDescription) -> Option<ServerCert> {
        let cert = X509::from_byte_string(&endpoint.server_certificate).ok()?;
        let file = CertificateStore::cert_file_name(&cert);
        Some(ServerCert { trusted: self.dir.join("trusted").join(&file).exists(), file, thumbprint: cert.thumbprint().as_hex_string() })
    }
}

#[cfg(unix)]
fn restrict(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).map_err(|e| anyhow::anyhow!("cannot restrict {}: {e}", p.display()))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// The server certificate of an endpoint as seen from our PKI folder.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// In `<pki_dir>/trusted`.
    pub trusted: bool,
    /// Its file name in the PKI folders (`CN [thumbprint].der`).
    pub file: String,
    /// SHA-1 thumbprint, hex.
    pub thumbprint: String,
}
