//! Namespace resolution: the server's NamespaceArray is read on every
//! session (and again when a node is BadNodeIdUnknown, at most every
//! [`NS_RECHECK`]), and every `nsu=` tag is resolved against it; a tag whose
//! namespace the server lacks gets a bad sample and is retried.

use std::sync::Arc;

use opcua::client::Session;
use opcua::types::{NamespaceMap, ReadValueId, TimestampsToReturn, VariableId, Variant};
use tokio::time::Instant;

use super::{Device, NS_RECHECK, RETRY_MISSING};
use crate::model::{Sample, Timestamp, reason};

impl Device {
    /// Reads the server's NamespaceArray into `self.namespaces` (and the
    /// session's namespace map).
    pub(super) async fn read_namespaces(&mut self, session: &Arc<Session>) -> Result<(), String> {
        let r = session
            .read(&[ReadValueId::new_value(VariableId::Server_NamespaceArray.into())], TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| format!("reading the NamespaceArray: {}", e.status()))?;
        let uris: Vec<String> = match r.into_iter().next().and_then(|dv| dv.value) {
            Some(Variant::Array(a)) => {
                if let Ok(map) = NamespaceMap::new_from_variant_array(&a.values) {
                    session.set_namespaces(map);
                }
                a.values
                    .iter()
                    .map(|v| match v {
                        Variant::String(s) => s.value().clone().unwrap_or_default(),
                        _ => String::new(),
                    })
                    .collect()
            }
            other => return Err(format!("the server's NamespaceArray is not a string array: {other:?}")),
        };
        self.namespaces = uris;
        self.last_ns_check = Some(Instant::now());
        Ok(())
    }

    /// Resolves every tag against `self.namespaces`; the tags that cannot be
    /// resolved get a bad sample (config_error) and stay unresolved.
    pub(super) async fn resolve_all(&mut self) {
        let map = namespace_map(&self.namespaces);
        let mut unresolved = Vec::new();
        for (i, t) in self.dev.tags.iter().enumerate() {
            match t.node.resolve(&map) {
                Ok(id) => self.resolved[i] = Some(id),
                Err(e) => {
                    self.resolved[i] = None;
                    unresolved.push(Sample::bad(
                        self.metas[i].clone(),
                        format!("{}: {} ({})", reason::CONFIG_ERROR, e, t.node).into(),
                        Timestamp::now(),
                    ));
                }
            }
        }
        if !unresolved.is_empty() {
            tracing::warn!(device = %self.dev.name, tags = unresolved.len(), first = %unresolved[0].reason.as_deref().unwrap_or(""),
                "tags in namespaces the server does not have; retried every {}s", RETRY_MISSING.as_secs());
            self.emit(unresolved).await;
        }
    }

    /// Reads the namespace table again; true when it changed. The old table
    /// is kept in `self.namespaces` so that [`Device::rebuild`] sees the change
    /// and recreates every subscription.
    pub(super) async fn namespaces_changed(&mut self, session: &Arc<Session>) -> bool {
        let before = self.namespaces.clone();
        if self.read_namespaces(session).await.is_err() {
            return false;
        }
        let changed = before != self.namespaces;
        if changed {
            self.namespaces = before;
        }
        changed
    }

    /// Whether the namespace table may be read again now.
    pub(super) fn ns_recheck_allowed(&self) -> bool {
        self.last_ns_check.is_none_or(|t| t.elapsed() >= NS_RECHECK)
    }
}

/// A namespace table (index → URI) as the library's map.
pub fn namespace_map(uris: &[String]) -> NamespaceMap {
    let values: Vec<Variant> = uris.iter().map(|u| Variant::from(u.as_str())).collect();
    NamespaceMap::new_from_variant_array(&values).unwrap_or_default()
}
