//! The Sparkplug keys of an MQTT `[[sink]]` with `format = "sparkplug"`:
//! `group_id` (required) and `edge_node_id` (default: the gateway id).

use std::ops::Range;

use toml::Spanned;

use crate::diag::Diag;

/// Sparkplug identity of the edge node a sink speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkplugConfig {
    /// Group ID (Sparkplug 3.0 §4.1.2): the second topic level.
    pub group_id: String,
    /// Edge node ID (§4.1.4): the fourth topic level; unique in the group.
    pub edge_node_id: String,
}

/// Checks an ID (§4.1.2, §4.1.4: UTF-8, no `+`, `#` or `/`).
fn check_id(diag: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<String> {
    match crate::names::check(v.get_ref()) {
        Ok(()) => Some(v.get_ref().clone()),
        Err(e) => {
            diag.error(v.span(), key, e);
            None
        }
    }
}

/// Parses the Sparkplug keys of sink `key` (`format = "sparkplug"`); `at`
/// locates the sink when `group_id` is missing.
pub fn parse(
    group: Option<&Spanned<String>>,
    edge: Option<&Spanned<String>>,
    diag: &mut Diag<'_>,
    key: &str,
    gateway: &str,
    at: Range<usize>,
) -> Option<SparkplugConfig> {
    let group_id = match group {
        Some(g) => check_id(diag, g, &format!("{key} / group_id")),
        None => {
            diag.error(at, &format!("{key} / group_id"), "format = \"sparkplug\" needs group_id (the Sparkplug group, e.g. \"plant1\")");
            None
        }
    };
    let edge_node_id = match edge {
        Some(e) => check_id(diag, e, &format!("{key} / edge_node_id")),
        None => Some(gateway.to_string()),
    };
    Some(SparkplugConfig { group_id: group_id?, edge_node_id: edge_node_id? })
}

/// Keys that only mean something with `format = "sparkplug"`.
pub const KEYS: &[&str] = &["group_id", "edge_node_id"];
