//! Strict checks of an OPC UA server's application instance certificate
//! (OPC UA Part 4 §6.1.3, "Host Name" and "URI" checks, and the validity
//! period), made by relais itself.
//!
//! Why not the library's: async-opcua 0.19 takes the *first*
//! subjectAltName entry for the application URI (`X509::is_application_uri_valid`)
//! and leaves that first entry out of the host name check
//! (`X509::is_hostname_valid`). OPC UA Part 6 §6.2.2 puts no order on the
//! entries, and node-opcua, the most common server stack, lists
//! `DNS:<host>, IP:…, URI:urn:<host>:NodeOPCUA-Server`: the library refuses
//! it with BadCertificateUriInvalid (connected by IP address) or
//! BadCertificateHostNameInvalid (connected by its host name). So the
//! gateway's client runs with the library's extra checks off (it still
//! requires the certificate in the trusted folder, not in the rejected one,
//! and a key length fit for the policy) and, with
//! `strict_server_certificate = true`, these run before every session:
//!
//! - dates: now within notBefore..=notAfter;
//! - host name: the configured endpoint's host is one of the certificate's
//!   `DNS:` names (ASCII case-insensitive, no wildcards) or, for an IP
//!   address, one of its `IP:` addresses;
//! - application URI: the ApplicationUri the server advertises (its
//!   endpoint description) is one of the certificate's `URI:` entries.

use std::net::IpAddr;

use opcua::crypto::X509;
use opcua::types::EndpointDescription;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// The subjectAltName entries of a certificate, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AltNames {
    /// `DNS:` entries.
    pub dns: Vec<String>,
    /// `IP:` entries.
    pub ip: Vec<IpAddr>,
    /// `URI:` entries.
    pub uri: Vec<String>,
}

impl AltNames {
    /// Reads the subjectAltName extension of a DER certificate (RFC 5280
    /// §4.2.1.6). Errors say why the certificate cannot be read.
    pub fn of_der(der: &[u8]) -> Result<AltNames, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("the certificate cannot be read: {e}"))?;
        let san: Option<(bool, SubjectAltName)> =
            cert.tbs_certificate.get().map_err(|e| format!("the certificate's subjectAltName cannot be read: {e}"))?;
        let mut out = AltNames::default();
        for name in san.map(|(_, s)| s.0).unwrap_or_default() {
            match name {
                GeneralName::DnsName(d) => out.dns.push(d.to_string()),
                GeneralName::UniformResourceIdentifier(u) => out.uri.push(u.to_string()),
                GeneralName::IpAddress(o) => match o.as_bytes().len() {
                    4 => out.ip.push(IpAddr::from(<[u8; 4]>::try_from(o.as_bytes()).unwrap_or_default())),
                    16 => out.ip.push(IpAddr::from(<[u8; 16]>::try_from(o.as_bytes()).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(out)
    }

    /// The entries as an operator reads them: `DNS:vm, IP:127.0.0.1, URI:urn:…`.
    pub fn listing(&self) -> String {
        let all: Vec<String> = self
            .dns
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(self.ip.iter().map(|i| format!("IP:{i}")))
            .chain(self.uri.iter().map(|u| format!("URI:{u}")))
            .collect();
        if all.is_empty() { "no subjectAltName entries".into() } else { all.join(", ") }
    }

    /// Whether `host` (a DNS name or an IP address, as in an endpoint URL)
    /// is one of the entries.
    pub fn has_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => self.ip.contains(&ip) || self.dns.iter().any(|d| d.parse::<IpAddr>() == Ok(ip)),
            Err(_) => {
                let h = host.trim_end_matches('.');
                self.dns.iter().any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(h))
            }
        }
    }
}

/// The host of an `opc.tcp://host:port/path` endpoint URL (IPv6 in brackets).
pub fn endpoint_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or("");
    if let Some(end) = hostport.find(']')
        && hostport.starts_with('[')
    {
        return &hostport[..=end];
    }
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

/// Checks the server certificate of `ep` for a connection to `endpoint`
/// (the configured URL): dates, host name, application URI (see the module
/// doc). `Err` is the reason, for the operator and the tags.
pub fn check(ep: &EndpointDescription, endpoint: &str) -> Result<(), String> {
    let cert = X509::from_byte_string(&ep.server_certificate).map_err(|e| format!("BadCertificateInvalid: {e}"))?;
    cert.is_time_valid(&chrono::Utc::now())
        .map_err(|e| format!("BadCertificateTimeInvalid: the server's certificate is not valid now: {e}"))?;
    let der = cert.to_der().map_err(|e| format!("BadCertificateInvalid: {e}"))?;
    let names = AltNames::of_der(&der).map_err(|e| format!("BadCertificateInvalid: {e}"))?;
    let host = endpoint_host(endpoint);
    if !names.has_host(host) {
        return Err(format!(
            "BadCertificateHostNameInvalid: the server's certificate does not name the host {host} of the endpoint (it lists {}): \
             connect by one of those names, or give the server a certificate for {host}, or set strict_server_certificate = false \
             to check only that it is trusted",
            names.listing()
        ));
    }
    let uri = ep.server.application_uri.as_ref();
    if !names.uri.iter().any(|u| u == uri) {
        return Err(format!(
            "BadCertificateUriInvalid: the server's certificate does not carry the application URI {uri:?} that the server \
             advertises (it lists {}): fix the server's certificate or its ApplicationUri, or set strict_server_certificate = false \
             to check only that it is trusted",
            names.listing()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::crypto::{X509, X509Data};
    use opcua::types::{ApplicationDescription, ByteString};

    /// A self-signed certificate with `alt` (host names or IP addresses, in
    /// order) and then, last as node-opcua puts it, application URI `uri`.
    fn cert(uri: &str, alt: &[&str]) -> X509 {
        let mut data = X509Data {
            key_size: 2048,
            common_name: "test".into(),
            organization: "relais".into(),
            organizational_unit: "test".into(),
            country: "FR".into(),
            state: "x".into(),
            alt_host_names: alt.iter().map(|s| s.to_string()).collect::<Vec<_>>().into(),
            certificate_duration_days: 30,
        };
        data.alt_host_names.add_uri(uri);
        X509::cert_and_pkey(&data).unwrap().0
    }

    fn endpoint(c: &X509, uri: &str) -> EndpointDescription {
        EndpointDescription {
            server_certificate: ByteString::from(c.to_der().unwrap()),
            server: ApplicationDescription { application_uri: uri.into(), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn the_uri_may_be_anywhere_among_the_alt_names() {
        let c = cert("urn:vm:NodeOPCUA-Server", &["vm", "127.0.0.1"]);
        let names = AltNames::of_der(&c.to_der().unwrap()).unwrap();
        assert_eq!(names.uri, ["urn:vm:NodeOPCUA-Server"]);
        assert!(names.has_host("127.0.0.1") && names.has_host("VM") && !names.has_host("localhost") && !names.has_host("127.0.0.2"));
        let ep = endpoint(&c, "urn:vm:NodeOPCUA-Server");
        assert_eq!(check(&ep, "opc.tcp://127.0.0.1:4840/UA/x"), Ok(()));
        assert_eq!(check(&ep, "opc.tcp://vm:4840"), Ok(()));
        let e = check(&ep, "opc.tcp://localhost:4840").unwrap_err();
        assert!(e.starts_with("BadCertificateHostNameInvalid") && e.contains("DNS:vm, IP:127.0.0.1, URI:urn:vm:NodeOPCUA-Server"), "{e}");
        let e = check(&endpoint(&c, "urn:other"), "opc.tcp://vm:4840").unwrap_err();
        assert!(e.starts_with("BadCertificateUriInvalid") && e.contains("\"urn:other\""), "{e}");
    }

    #[test]
    fn hosts_of_endpoint_urls() {
        assert_eq!(endpoint_host("opc.tcp://10.0.0.5:4840/x"), "10.0.0.5");
        assert_eq!(endpoint_host("opc.tcp://plc.local"), "plc.local");
        assert_eq!(endpoint_host("opc.tcp://[fd00::1]:4840/"), "[fd00::1]");
        let c = cert("urn:a", &["::1"]);
        assert!(AltNames::of_der(&c.to_der().unwrap()).unwrap().has_host("[::1]"));
    }
}
