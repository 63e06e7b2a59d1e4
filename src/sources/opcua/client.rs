//! The gateway's OPC UA application identity and the library client.
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
use std::time::Duration;

use opcua::client::{Client, ClientBuilder, IdentityToken};
use opcua::core::config::Config as _;
use opcua::crypto::{CertificateStore, X509, X509Data};
use opcua::types::{EndpointDescription, StatusCode};

use super::config::{Identity, OpcUaDevice, read_any_cert};

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

/// The library client for `dev`: our certificate, no certificate made by the
/// library, keep-alive reads every `keep_alive` (three failures close the
/// session), subscriptions managed by us (not recreated by the library with
/// stale namespace indexes). With `reconnect`, a session reconnects forever
/// with backoff up to `reconnect_max`; without, every call fails at once
/// when the server is unreachable (for GetEndpoints and one-shot commands).
pub fn build_client(dev: &OpcUaDevice, pki: &Pki, gateway_id: &str, reconnect: bool) -> anyhow::Result<Client> {
    ClientBuilder::new()
        .application_name(format!("relais {gateway_id}"))
        .application_uri(&pki.application_uri)
        .product_uri("urn:relais")
        .session_name(format!("relais {gateway_id} {}", dev.name))
        .pki_dir(&pki.dir)
        .certificate_path(pki.cert_path.strip_prefix(&pki.dir).unwrap_or(&pki.cert_path))
        .private_key_path(pki.key_path.strip_prefix(&pki.dir).unwrap_or(&pki.key_path))
        .create_sample_keypair(false)
        .trust_server_certs(false)
        // The library's host name and application URI checks misread
        // certificates whose URI is not the first subjectAltName entry
        // (node-opcua's): relais makes those checks itself (`certcheck`,
        // in `open_session`). The library still requires the certificate in
        // the trusted folder and a key length fit for the policy.
        .verify_server_certs(false)
        .session_retry_limit(if reconnect { -1 } else { 0 })
        .session_retry_initial(Duration::from_millis(500).min(dev.reconnect_max))
        .session_retry_max(dev.reconnect_max)
        .keep_alive_interval(dev.keep_alive)
        .max_failed_keep_alive_count(3)
        .request_timeout(dev.request_timeout)
        .publish_timeout(dev.request_timeout.max(dev.keep_alive * 3))
        .session_timeout(dev.session_timeout.as_millis().min(u32::MAX as u128) as u32)
        .recreate_subscriptions(false)
        // The library's decoding limits (1000 array elements, 5 chunks) are
        // below what one publish of a few thousand MonitoredItems carries: a
        // response above them would be dropped, its values lost.
        .max_array_length(1_000_000)
        // Strings and ByteStrings: the library's 65,535 would fail the whole
        // response (BadDecodingError, the connection dropped and rebuilt in a
        // loop) for one long value; the sink decides what is too large.
        .max_string_length(64 << 20)
        .max_byte_string_length(64 << 20)
        .max_chunk_count(4096)
        .max_message_size(256 << 20)
        .client()
        .map_err(|errs| anyhow::anyhow!("device {}: OPC UA client settings rejected: {}", dev.name, errs.join("; ")))
}

/// The session's user identity token.
pub fn identity_token(id: &Identity) -> anyhow::Result<IdentityToken> {
    Ok(match id {
        Identity::Anonymous => IdentityToken::Anonymous,
        Identity::User { username, password } => IdentityToken::UserName(username.clone(), password.expose().into()),
        Identity::X509 { certificate, private_key } => IdentityToken::new_x509_path(certificate, private_key)
            .map_err(|e| anyhow::anyhow!("user certificate {} / key {}: {e}", certificate.display(), private_key.display()))?,
    })
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

/// What to tell an operator about a failed connect, from the status and a
/// look at the network and the PKI folders (field case B19: "EOF" is not an
/// answer). A certificate is blamed only when the status says so or when the
/// server is reachable and closes the secure channel.
/// `endpoint`: the endpoint the connect used (its server certificate is
/// looked at only with a security policy).
pub async fn explain(status: StatusCode, dev: &OpcUaDevice, pki: &Pki, endpoint: &EndpointDescription) -> String {
    use opcua::types::StatusCode as S;
    let cert = if dev.policy == super::config::Policy::None { None } else { pki.server_cert(endpoint) };
    let server_cert = cert.as_ref();
    let sub = status.sub_code();
    let ours = || not_trusted_by_server(pki, server_cert);
    let theirs = not_trusted_by_us(pki, server_cert);
    if sub == S::BadCertificateUntrusted.sub_code()
        || sub == S::BadSecurityChecksFailed.sub_code()
        || sub == S::BadCertificateInvalid.sub_code()
    {
        return theirs.unwrap_or_else(ours);
    }
    if sub == S::BadCertificateHostNameInvalid.sub_code()
        || sub == S::BadCertificateUriInvalid.sub_code()
        || sub == S::BadCertificateTimeInvalid.sub_code()
    {
        // relais checks the server's certificate itself before connecting
        // (`certcheck`); these come from the server, about ours.
        return format!(
            "{status}: the server refused the gateway's client certificate (thumbprint {}, application URI {}): its host name, \
             application URI or validity dates do not suit the server; delete {} and its key to make a new one, then trust it on the server",
            pki.thumbprint,
            pki.application_uri,
            pki.cert_path.display()
        );
    }
    if sub == S::BadIdentityTokenInvalid.sub_code()
        || sub == S::BadIdentityTokenRejected.sub_code()
        || sub == S::BadUserAccessDenied.sub_code()
    {
        return format!("{status}: the server rejected the user identity (username/password or user certificate)");
    }
    if sub == S::BadSecurityPolicyRejected.sub_code() {
        return format!(
            "{status}: the server refused the user identity type{}; or the security policy",
            if matches!(dev.identity, Identity::Anonymous) {
                " (anonymous sessions not allowed? set username/password or a user certificate)"
            } else {
                ""
            }
        );
    }
    if sub == S::BadTcpEndpointUrlInvalid.sub_code()
        || sub == S::BadCommunicationError.sub_code()
        || sub == S::BadConnectionClosed.sub_code()
        || sub == S::BadSecureChannelClosed.sub_code()
        || sub == S::BadTimeout.sub_code()
    {
        // Say what the network says before anything else.
        match probe(&dev.endpoint).await {
            Err(net) => return net,
            Ok(()) if dev.policy != super::config::Policy::None && sub != S::BadTimeout.sub_code() => {
                return theirs.unwrap_or_else(|| {
                    format!(
                        "{status}: the server accepts connections but closed the secure channel; if this repeats, most likely {}",
                        ours()
                    )
                });
            }
            Ok(()) if sub == S::BadTcpEndpointUrlInvalid.sub_code() => {
                return format!("{status}: the server does not know the endpoint path of {}", dev.endpoint);
            }
            Ok(()) => {}
        }
    }
    format!("{status}")
}

/// The server does not trust the gateway's certificate: where to find it,
/// and whether the gateway does not trust the server's either.
fn not_trusted_by_server(pki: &Pki, server_cert: Option<&ServerCert>) -> String {
    let mut m = format!(
        "the server does not trust the gateway's client certificate (thumbprint {}, file {}): trust it on the server \
         (it usually sits in the server's rejected-certificates folder); the gateway keeps retrying and connects once it is trusted",
        pki.thumbprint,
        pki.cert_path.display()
    );
    if let Some(c) = server_cert
        && !c.trusted
    {
        m += &format!(
            ". The gateway does not trust the server's certificate yet either (thumbprint {}): set trust_server_certificate, \
             or once it appears in {} move it to {}",
            c.thumbprint,
            pki.dir.join("rejected").display(),
            pki.dir.join("trusted").display()
        );
    }
    m
}

/// Our side refused the server: the library saved its certificate in our
/// rejected folder when it checked it.
fn not_trusted_by_us(pki: &Pki, server_cert: Option<&ServerCert>) -> Option<String> {
    server_cert.filter(|c| !c.trusted && pki.dir.join("rejected").join(&c.file).exists()).map(|c| {
        format!(
            "the gateway does not trust the server's certificate (thumbprint {}): it is in {}; move it to {} \
             (or set trust_server_certificate) to trust it; the gateway keeps retrying",
            c.thumbprint,
            pki.dir.join("rejected").join(&c.file).display(),
            pki.dir.join("trusted").display()
        )
    })
}

/// Resolves and connects to the endpoint's host and port (then closes): the
/// plain reason when the network is the problem.
pub async fn probe(endpoint: &str) -> Result<(), String> {
    let rest = endpoint.strip_prefix("opc.tcp://").unwrap_or(endpoint);
    let hostport = rest.split('/').next().unwrap_or("");
    let target = if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        hostport.to_string()
    } else {
        format!("{hostport}:4840")
    };
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host(target.as_str())).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => return Err(format!("cannot resolve {target}: {e}")),
            Err(_) => return Err(format!("cannot resolve {target}: no answer within 3 s")),
        };
    let Some(addr) = addrs.first() else { return Err(format!("cannot resolve {target}: no address")) };
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(format!("connection to {target} refused (server down, or wrong port)"))
        }
        Ok(Err(e)) => Err(format!("cannot connect to {target}: {e}")),
        Err(_) => Err(format!("no answer from {target} within 3 s (host down, or a firewall drops the packets)")),
    }
}

/// With `strict_server_certificate` and a security policy: the strict
/// checks of the server certificate `ep` carries ([`super::certcheck`]),
/// once that certificate is trusted (an untrusted one is refused by the
/// library, which saves it to `rejected/`, and reported with how to trust
/// it first).
pub fn check_server_certificate(dev: &OpcUaDevice, pki: &Pki, ep: &EndpointDescription) -> Result<(), OpenError> {
    if !dev.strict_server_certificate || dev.policy == super::config::Policy::None || !pki.server_cert(ep).is_some_and(|c| c.trusted) {
        return Ok(());
    }
    super::certcheck::check(ep, &dev.endpoint).map_err(OpenError::Certificate)
}

/// Why a session could not be set up.
#[derive(Debug)]
pub enum OpenError {
    /// GetEndpoints failed (server down, network): retry.
    Unreachable(String),
    /// The server offers no endpoint with the configured policy and mode.
    NoEndpoint(String),
    /// `strict_server_certificate`: the server's certificate does not fit
    /// the connection (host name, application URI, dates; see `certcheck`).
    Certificate(String),
}

/// GetEndpoints on `dev.endpoint` (with `discovery`, which does not retry),
/// then a session of `client` (not yet connected: the
/// returned event loop connects it) on the endpoint with the configured
/// security policy and mode. Never falls back to another security mode.
pub async fn open_session(
    discovery: &Client,
    client: &Client,
    dev: &OpcUaDevice,
    identity: IdentityToken,
) -> Result<
    (std::sync::Arc<opcua::client::Session>, opcua::client::SessionEventLoop<opcua::client::transport::TcpConnector>, EndpointDescription),
    OpenError,
> {
    // The library has no deadline on the opening handshake (Hello/Acknowledge,
    // OpenSecureChannel): a port that accepts TCP and never speaks OPC UA
    // (another service, a half-dead server) would hold this call for ever.
    let limit = dev.request_timeout.max(Duration::from_secs(5));
    let eps = match tokio::time::timeout(limit, discovery.get_server_endpoints_from_url(dev.endpoint.as_str())).await {
        Ok(r) => r.map_err(|e| OpenError::Unreachable(format!("cannot reach {}: {}", dev.endpoint, e.status())))?,
        Err(_) => {
            return Err(OpenError::Unreachable(format!(
                "{} accepted the TCP connection but gave no OPC UA answer within {:?} (not an OPC UA server on this port, or a server that hangs)",
                dev.endpoint, limit
            )));
        }
    };
    let Some(ep) = Client::find_matching_endpoint(&eps, &dev.endpoint, dev.policy.to_opcua(), dev.mode.to_opcua()) else {
        let offered: Vec<String> = eps
            .iter()
            .map(|e| format!("{}/{:?}", e.security_policy_uri.as_ref().rsplit('#').next().unwrap_or(""), e.security_mode))
            .collect();
        return Err(OpenError::NoEndpoint(format!(
            "the server offers no endpoint with security_policy {:?} and security_mode {:?} at {}; it offers: {}",
            dev.policy,
            dev.mode,
            dev.endpoint,
            offered.join(", ")
        )));
    };
    // Connect where the configuration says, not where the server advertises:
    // behind NAT or a port forward the advertised host and port are often
    // unreachable (only the security settings are taken from the server's
    // description).
    let mut ep = ep;
    ep.endpoint_url = dev.endpoint.as_str().into();
    let (session, lp) = client
        .session_builder()
        .connect_to_endpoint_directly(ep.clone())
        .and_then(|b| b.user_identity_token(identity).build(client.certificate_store().clone()))
        .map_err(|e| OpenError::Unreachable(format!("{e}")))?;
    Ok((session, lp, ep))
}
