//! Tag addresses: NodeIds as written in the config (OPC UA Part 6 §5.3.1.10),
//! with the namespace given by URI (`nsu=`) or by index (`ns=`).
//!
//! A namespace index is only valid for one server session: servers renumber
//! their namespace table after updates and restarts. `nsu=` tags are resolved
//! against the server's NamespaceArray on every (re)connect.

use std::fmt;
use std::str::FromStr;

use opcua::types::{Identifier, NamespaceMap, NodeId};

/// Which namespace a configured NodeId is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// By URI (`nsu=`): resolved on every connect.
    Uri(String),
    /// By index (`ns=`, or none for namespace 0).
    Index(u16),
}

/// A NodeId as configured: `nsu=<uri>;s=Line5.Press.Force`, `ns=2;i=1001`,
/// `i=2258` (namespace 0). Identifier types `i=` (numeric), `s=` (string),
/// `g=` (GUID), `b=` (base64 opaque).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef {
    /// The namespace.
    pub namespace: Namespace,
    /// The identifier within it.
    pub identifier: Identifier,
}

/// Why a configured NodeId or a namespace cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// The text is not a NodeId.
    Syntax(String),
    /// The server's NamespaceArray has no such URI.
    UnknownNamespace(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Syntax(m) => f.write_str(m),
            NodeError::UnknownNamespace(uri) => write!(f, "the server has no namespace {uri:?} in its NamespaceArray"),
        }
    }
}

const FORMS: &str = "expected \"nsu=<namespace URI>;s=<name>\", \"ns=<index>;i=<number>\" or \"i=<number>\" (identifier types i, s, g, b)";

fn identifier(text: &str, whole: &str) -> Result<Identifier, NodeError> {
    let kind = text.get(..2).unwrap_or("");
    if !matches!(kind, "i=" | "s=" | "g=" | "b=") {
        return Err(NodeError::Syntax(format!("NodeId {whole:?}: identifier {text:?} has no type prefix; {FORMS}")));
    }
    if text.len() == 2 {
        return Err(NodeError::Syntax(format!("NodeId {whole:?}: empty identifier")));
    }
    Identifier::from_str(text).map_err(|_| {
        let what = match kind {
            "i=" => "a numeric identifier must be an unsigned 32-bit number",
            "g=" => "a GUID identifier looks like 72962b91-fa75-4ae6-8d28-b404dc7daf63",
            "b=" => "an opaque identifier must be base64",
            _ => "invalid identifier",
        };
        NodeError::Syntax(format!("NodeId {whole:?}: {what}"))
    })
}

impl FromStr for NodeRef {
    type Err = NodeError;

    fn from_str(s: &str) -> Result<NodeRef, NodeError> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("nsu=") {
            // The URI ends at the first ";x=" that starts an identifier.
            let cut = rest
                .match_indices(';')
                .map(|(i, _)| i)
                .find(|&i| matches!(rest.get(i + 1..i + 3), Some("i=" | "s=" | "g=" | "b=")))
                .ok_or_else(|| NodeError::Syntax(format!("NodeId {s:?} has a namespace URI but no identifier; {FORMS}")))?;
            let uri = &rest[..cut];
            if uri.is_empty() {
                return Err(NodeError::Syntax(format!("NodeId {s:?}: empty namespace URI")));
            }
            if uri.contains(";ns=") {
                return Err(NodeError::Syntax(format!("NodeId {s:?} gives both a namespace URI (nsu=) and an index (ns=); keep one")));
            }
            return Ok(NodeRef { namespace: Namespace::Uri(uri.to_string()), identifier: identifier(&rest[cut + 1..], s)? });
        }
        if let Some(rest) = t.strip_prefix("ns=") {
            let (idx, id) = rest
                .split_once(';')
                .ok_or_else(|| NodeError::Syntax(format!("NodeId {s:?} has a namespace index but no identifier; {FORMS}")))?;
            let idx: u16 = idx
                .parse()
                .map_err(|_| NodeError::Syntax(format!("NodeId {s:?}: namespace index {idx:?} is not a number in 0..=65535")))?;
            return Ok(NodeRef { namespace: Namespace::Index(idx), identifier: identifier(id, s)? });
        }
        Ok(NodeRef { namespace: Namespace::Index(0), identifier: identifier(t, s)? })
    }
}

impl NodeRef {
    /// The NodeId for a session whose server has namespace table `ns`.
    pub fn resolve(&self, ns: &NamespaceMap) -> Result<NodeId, NodeError> {
        let idx = match &self.namespace {
            Namespace::Index(i) => *i,
            Namespace::Uri(uri) => ns.get_index(uri).ok_or_else(|| NodeError::UnknownNamespace(uri.clone()))?,
        };
        Ok(NodeId::new(idx, self.identifier.clone()))
    }

    /// The namespace URI, if given by URI.
    pub fn uri(&self) -> Option<&str> {
        match &self.namespace {
            Namespace::Uri(u) => Some(u),
            Namespace::Index(_) => None,
        }
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Namespace::Uri(u) => write!(f, "nsu={u};{}", self.identifier),
            Namespace::Index(0) => write!(f, "{}", self.identifier),
            Namespace::Index(i) => write!(f, "ns={i};{}", self.identifier),
        }
    }
}

/// `nsu=<uri>;<identifier>` for a NodeId of a session with namespace table
/// `uris` (index → URI), or `ns=` when the index is not in the table.
pub fn with_uri(id: &NodeId, uris: &[String]) -> String {
    match (id.namespace, uris.get(id.namespace as usize)) {
        (0, _) => format!("{}", id.identifier),
        (_, Some(u)) => format!("nsu={u};{}", id.identifier),
        (i, None) => format!("ns={i};{}", id.identifier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert!("nsu=urn:x;ns=2;s=y".parse::<NodeRef>().unwrap_err().to_string().contains("both a namespace URI"));
        let a: NodeRef = "nsu=urn:relais:sim;s=press.force".parse().unwrap();
        assert_eq!(a.namespace, Namespace::Uri("urn:relais:sim".into()));
        assert_eq!(a.identifier, Identifier::String("press.force".into()));
        assert_eq!(a.to_string(), "nsu=urn:relais:sim;s=press.force");
        let b: NodeRef = "ns=2;i=1001".parse().unwrap();
        assert_eq!(b.namespace, Namespace::Index(2));
        assert_eq!(b.identifier, Identifier::Numeric(1001));
        let c: NodeRef = "i=2258".parse().unwrap();
        assert_eq!(c.namespace, Namespace::Index(0));
        // A URI with ';' inside is cut at the identifier, not the first ';'.
        let d: NodeRef = "nsu=http://x/a;b;s=tag;1".parse().unwrap();
        assert_eq!(d.uri(), Some("http://x/a;b"));
        assert_eq!(d.identifier, Identifier::String("tag;1".into()));
    }

    #[test]
    fn rejects_bad_ids_with_a_reason() {
        for bad in ["", "2258", "ns=x;i=1", "ns=2", "nsu=urn:a", "nsu=;s=a", "i=abc", "i=", "ns=70000;i=1", "x=1"] {
            let e = bad.parse::<NodeRef>().unwrap_err();
            assert!(matches!(e, NodeError::Syntax(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn resolves_against_the_session_namespace_table() {
        let r: NodeRef = "nsu=urn:b;s=x".parse().unwrap();
        let mut ns = NamespaceMap::new();
        ns.add_namespace("urn:a");
        ns.add_namespace("urn:b");
        assert_eq!(r.resolve(&ns).unwrap(), NodeId::new(2, "x"));
        let mut other = NamespaceMap::new();
        other.add_namespace("urn:b");
        assert_eq!(r.resolve(&other).unwrap(), NodeId::new(1, "x"));
        assert_eq!(r.resolve(&NamespaceMap::new()), Err(NodeError::UnknownNamespace("urn:b".into())));
    }
}
