//! The simulator's OPC UA server settings (`[opcua]`) and the async-opcua
//! server builder made from them: endpoints (None and each security policy
//! with Sign and SignAndEncrypt), users, PKI and namespaces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::simple_node_manager;
use opcua::server::{ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerUserToken};
use opcua::types::MessageSecurityMode;

/// `[opcua]` of a simulator config.
#[derive(Debug, Clone)]
pub struct OpcUaSimConfig {
    /// Listen address (`127.0.0.1:4840`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Namespace URI of the stations' nodes.
    pub namespace_uri: String,
    /// Security policies offered besides None (each with Sign and SignAndEncrypt).
    pub security: Vec<SecurityPolicy>,
    /// Offer security None too (default true).
    pub allow_none: bool,
    /// PKI folder of the server (its certificate, trusted and rejected clients).
    pub pki_dir: PathBuf,
    /// Trust any client certificate (default true; false = clients must be
    /// in `<pki_dir>/trusted`, as on a real PLC).
    pub trust_client_certs: bool,
    /// User name / password pairs accepted besides anonymous.
    pub users: Vec<(String, String)>,
    /// Accept anonymous sessions (default true).
    pub anonymous: bool,
    /// Restart the server after this long (fault injection), then every time again.
    pub restart_after: Option<Duration>,
    /// How long the server stays down on a restart.
    pub down_for: Duration,
    /// How often station values are copied into the address space.
    pub scan: Duration,
}

/// The server builder of one server generation. An odd `pad` registers a
/// padding namespace before ours, so the stations' namespace index moves
/// between restarts that bump it (field case B16). The stations' node
/// manager is named `relais-sim`.
pub(crate) fn builder(cfg: &OpcUaSimConfig, addr: SocketAddr, pad: u32) -> ServerBuilder {
    let mut user_ids: Vec<String> = Vec::new();
    if cfg.anonymous {
        user_ids.push(ANONYMOUS_USER_TOKEN_ID.to_string());
    }
    let mut b = ServerBuilder::new()
        .application_name("relais simulator")
        .application_uri("urn:relais:sim:server")
        .product_uri("urn:relais")
        .host(addr.ip().to_string())
        .port(addr.port())
        .pki_dir(&cfg.pki_dir)
        .create_sample_keypair(true)
        .trust_client_certs(cfg.trust_client_certs)
        .diagnostics_enabled(true)
        .discovery_urls(vec![format!("opc.tcp://{}/", addr)]);
    for (i, (user, pass)) in cfg.users.iter().enumerate() {
        let id = format!("user{i}");
        b = b.add_user_token(&id, ServerUserToken::user_pass(user.as_str(), pass.as_str()));
        user_ids.push(id);
    }
    let ids: Vec<&str> = user_ids.iter().map(|s| s.as_str()).collect();
    if cfg.allow_none {
        b = b.add_endpoint("none", ("/", SecurityPolicy::None, MessageSecurityMode::None, ids.as_slice()));
    }
    for p in &cfg.security {
        for (m, n) in [(MessageSecurityMode::Sign, "sign"), (MessageSecurityMode::SignAndEncrypt, "sign_encrypt")] {
            b = b.add_endpoint(format!("{}_{n}", p.to_str()), ("/", *p, m, ids.as_slice()));
        }
    }
    for k in 0..(pad % 2) {
        b = b.with_node_manager(simple_node_manager(
            NamespaceMetadata { namespace_uri: format!("urn:relais:sim:padding:{k}"), ..Default::default() },
            "padding",
        ));
    }
    b = b.with_node_manager(simple_node_manager(
        NamespaceMetadata { namespace_uri: cfg.namespace_uri.clone(), ..Default::default() },
        "relais-sim",
    ));
    b
}
