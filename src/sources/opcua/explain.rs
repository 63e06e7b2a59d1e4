//! What to tell an operator about a failed connect (field case B19: "EOF"
//! is not an answer): the status, a look at the network, and the PKI folders.

use std::time::Duration;

use opcua::types::{EndpointDescription, StatusCode};

use super::config::{Identity, OpcUaDevice};
use super::pki::{Pki, ServerCert};

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
