//! The library client: its settings, the user identity, and opening a
//! session on the configured endpoint. The gateway's certificate and trust
//! list are in [`super::pki`]; failed connects are explained by
//! [`super::explain`].

use std::time::Duration;

use opcua::client::{Client, ClientBuilder, IdentityToken};
use opcua::types::EndpointDescription;

use super::config::{Identity, OpcUaDevice};
pub use super::explain::{explain, probe};
pub use super::pki::{Pki, ServerCert};

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
