//! One-off sessions for the command line (`relais browse`, `relais probe
//! opcua`): open a session as a configured device would (endpoint, security,
//! identity, certificate checks), without reconnects, do one thing, close.
//!
//! [`read_value`] reads one variable's Value attribute (OPC UA Part 4 §5.10.2
//! Read, `TimestampsToReturn::Both`) and [`render_value`] prints it with its
//! StatusCode, SourceTimestamp and ServerTimestamp (Part 4 §7.11).

use std::sync::Arc;
use std::time::Duration;

use opcua::client::Session;
use opcua::types::{AttributeId, DataValue, ReadValueId, TimestampsToReturn, Variant};

use super::client::{OpenError, Pki, build_client, check_server_certificate, explain, identity_token, open_session, probe};
use super::config::OpcUaDevice;

/// An open session and its event loop.
pub struct OneShot {
    /// The session.
    pub session: Arc<Session>,
    lp: tokio::task::JoinHandle<opcua::types::StatusCode>,
}

impl OneShot {
    /// Connects as `dev` and waits for the session (at most its
    /// `request_timeout`, at least 5 s); errors say why in the user's terms
    /// (refused, no endpoint with that security, certificate, the server's
    /// answer).
    pub async fn open(dev: &OpcUaDevice, pki: &Pki, gateway_id: &str) -> anyhow::Result<OneShot> {
        let client = build_client(dev, pki, gateway_id, false)?;
        let identity = identity_token(&dev.identity)?;
        let opened = open_session(&client, &client, dev, identity).await;
        let opened = opened.and_then(|(s, l, ep)| check_server_certificate(dev, pki, &ep).map(|()| (s, l, ep)));
        let (session, event_loop, _) = match opened {
            Ok(x) => x,
            // The network-level cause (refused, no route, name unknown) when
            // there is one, as `relais run` reports it.
            Err(OpenError::Unreachable(m)) => match probe(&dev.endpoint).await {
                Err(net) => anyhow::bail!("{net}"),
                Ok(()) => anyhow::bail!("{m}"),
            },
            Err(OpenError::NoEndpoint(m) | OpenError::Certificate(m)) => anyhow::bail!("{m}"),
        };
        session.disable_reconnects();
        let mut lp = event_loop.spawn();
        let wait = dev.request_timeout.max(Duration::from_secs(5));
        let connected = tokio::select! {
            c = session.wait_for_connection() => c,
            // Without retries the event loop ends at the first failure, with
            // the server's answer.
            r = &mut lp => {
                let status = r.unwrap_or(opcua::types::StatusCode::BadUnexpectedError);
                anyhow::bail!("could not open a session on {}: {}", dev.endpoint, explain(status, dev, pki, &session.endpoint_info().endpoint).await);
            }
            _ = tokio::time::sleep(wait) => false,
        };
        if !connected {
            lp.abort();
            anyhow::bail!("could not open a session on {} within {wait:?} (security {:?}/{:?})", dev.endpoint, dev.policy, dev.mode);
        }
        Ok(OneShot { session, lp })
    }

    /// The server's namespace table (index → URI).
    pub async fn namespaces(&self) -> anyhow::Result<Vec<String>> {
        let ns = self
            .session
            .read(&[ReadValueId::new_value(opcua::types::VariableId::Server_NamespaceArray.into())], TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| anyhow::anyhow!("reading the NamespaceArray: {}", e.status()))?;
        Ok(match ns.into_iter().next().and_then(|d| d.value) {
            Some(Variant::Array(a)) => a
                .values
                .iter()
                .map(|v| if let Variant::String(s) = v { s.value().clone().unwrap_or_default() } else { String::new() })
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Closes the session (at most 2 s).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.session.disconnect()).await;
        self.lp.abort();
    }
}

/// One variable's value as read.
#[derive(Debug, Clone)]
pub struct ReadValue {
    /// The node, with `nsu=` when the namespace is in the server's table.
    pub node_id: String,
    /// The DataValue as the server sent it.
    pub value: DataValue,
}

/// Connects as `dev`, reads the Value attribute of `node` (`nsu=`, `ns=` or
/// namespace-0 form) with both timestamps, and closes.
pub async fn read_value(dev: &OpcUaDevice, pki: &Pki, gateway_id: &str, node: &str) -> anyhow::Result<ReadValue> {
    let node_ref: super::node::NodeRef = node.parse().map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let s = OneShot::open(dev, pki, gateway_id).await?;
    let result = async {
        let uris = s.namespaces().await?;
        let id = node_ref.resolve(&super::session::namespace_map(&uris)).map_err(|e| anyhow::anyhow!("--node {node}: {e}"))?;
        let values = s
            .session
            .read(&[ReadValueId::new(id.clone(), AttributeId::Value)], TimestampsToReturn::Both, 0.0)
            .await
            .map_err(|e| anyhow::anyhow!("Read {node}: {}", e.status()))?;
        let value = values.into_iter().next().ok_or_else(|| anyhow::anyhow!("Read {node}: the server returned no result"))?;
        Ok(ReadValue { node_id: super::node::with_uri(&id, &uris), value })
    }
    .await;
    s.close().await;
    result
}

/// The value, its type, StatusCode (name and hex), SourceTimestamp and
/// ServerTimestamp (RFC 3339, UTC; `not set` when the server sent none),
/// one per line (pure).
pub fn render_value(endpoint: &str, r: &ReadValue) -> String {
    let dv = &r.value;
    let (value, ty) = match &dv.value {
        Some(v) => (
            variant_text(v),
            match v.type_id() {
                opcua::types::VariantTypeId::Empty => "Empty".to_string(),
                opcua::types::VariantTypeId::Scalar(t) => format!("{t:?}"),
                opcua::types::VariantTypeId::Array(t, _) => format!("array of {t:?}"),
            },
        ),
        None => ("(none)".to_string(), "-".to_string()),
    };
    let status = dv.status.unwrap_or(opcua::types::StatusCode::Good);
    let ts = |t: &Option<opcua::types::DateTime>| {
        t.as_ref().and_then(super::convert::timestamp).map_or_else(|| "not set".to_string(), crate::model::format_rfc3339)
    };
    format!(
        "{endpoint} {}\n  value:            {value} ({ty})\n  status:           {status} (0x{:08X})\n  source timestamp: {}\n  server timestamp: {}\n",
        r.node_id,
        status.bits(),
        ts(&dv.source_timestamp),
        ts(&dv.server_timestamp)
    )
}

/// A variant as a person reads it: numbers and text plainly, the rest as the library shows it.
fn variant_text(v: &Variant) -> String {
    match super::convert::value_of(v) {
        Ok(x) => x.to_string(),
        Err(_) => format!("{v:?}"),
    }
}
