//! OPC UA client source (async-opcua): `protocol = "opcua"` devices.
//!
//! - [`config`]: `[[device]]` entries and their tags (NodeIds, subscription or polling).
//! - [`node`]: NodeIds with `nsu=` namespace URIs, resolved per session (pure).
//! - [`convert`]: DataValue → sample, StatusCode → quality (pure).
//! - [`certcheck`]: strict checks of a server certificate (host name, application URI, dates).
//! - [`pki`]: the gateway's certificate and the trust list (its PKI folder).
//! - [`client`]: the library client, the user identity, opening a session.
//! - [`explain`]: what to tell an operator about a failed connect.
//! - [`session`]: the supervisor: connection state, namespaces, subscriptions, polls, watchdog, recovery.
//! - [`browse`]: `relais browse`.
//! - [`oneshot`]: one-off sessions of the command line; `relais probe opcua` (one value with its StatusCode and timestamps).

pub mod browse;
pub mod certcheck;
pub mod client;
pub mod component;
pub mod config;
pub mod convert;
pub mod explain;
pub mod node;
pub mod oneshot;
pub mod pki;
pub mod session;
pub mod write_value;
