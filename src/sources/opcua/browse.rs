//! `relais browse`: the address space of an OPC UA server as a tree, and a
//! ready `[[device.tag]]` snippet for the variables found.
//!
//! Follows hierarchical references forward (Part 4 §5.8.2 Browse, Part 3
//! §7.2 HierarchicalReferences) from a start node (default: the Objects
//! folder, `i=85`), to a depth. Each line shows the browse name, the NodeId
//! with its namespace URI (`nsu=`, stable across server restarts), and for
//! variables the data type and access level.

use std::fmt::Write as _;
use std::sync::Arc;

use opcua::client::Session;
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, ByteString, NodeClass, NodeClassMask, NodeId, ReadValueId,
    ReferenceTypeId, TimestampsToReturn, Variant,
};

use super::client::Pki;
use super::config::OpcUaDevice;
use super::node::with_uri;

/// One node found by the browse.
#[derive(Debug, Clone)]
pub struct Found {
    /// Depth below the start node (1 = direct child).
    pub depth: usize,
    /// Browse name (without namespace index).
    pub name: String,
    /// NodeId, with `nsu=` when the namespace is in the table.
    pub node_id: String,
    /// Object, Variable, Method…
    pub class: NodeClass,
    /// Data type name of a variable.
    pub data_type: Option<String>,
    /// `read`, `write`, `read/write` or `none` for a variable.
    pub access: Option<String>,
    /// Path of browse names from the start node, joined with `.`.
    pub path: String,
}

/// Connects as `dev` (its endpoint, security and identity; tags unused),
/// browses from `start` to `depth` levels, and disconnects.
/// Below the Objects folder, standard (namespace 0) objects such as `Server`
/// are listed but not expanded unless `all`.
pub async fn browse(dev: &OpcUaDevice, pki: &Pki, gateway_id: &str, start: &str, depth: usize, all: bool) -> anyhow::Result<Vec<Found>> {
    let s = super::oneshot::OneShot::open(dev, pki, gateway_id).await?;
    let result = async {
        let uris = s.namespaces().await?;
        walk(&s.session, &uris, start, depth, all).await
    }
    .await;
    s.close().await;
    result
}

async fn walk(session: &Arc<Session>, uris: &[String], start: &str, depth: usize, all: bool) -> anyhow::Result<Vec<Found>> {
    let start_ref: super::node::NodeRef = start.parse().map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let map = super::session::namespace_map(uris);
    let start_id = start_ref.resolve(&map).map_err(|e| anyhow::anyhow!("--node {start}: {e}"))?;

    // The start node itself: it must exist, and it heads the tree.
    let attrs = session
        .read(
            &[ReadValueId::new(start_id.clone(), AttributeId::BrowseName), ReadValueId::new(start_id.clone(), AttributeId::NodeClass)],
            TimestampsToReturn::Neither,
            0.0,
        )
        .await
        .map_err(|e| anyhow::anyhow!("reading --node {start}: {}", e.status()))?;
    let name = match attrs.first().and_then(|d| d.value.as_ref()) {
        Some(Variant::QualifiedName(q)) => q.name.value().clone().unwrap_or_default(),
        _ => {
            let code = attrs.first().and_then(|d| d.status).map_or(String::new(), |c| format!(" ({c})"));
            anyhow::bail!("--node {start}: no such node on the server{code}");
        }
    };
    let class = match attrs.get(1).and_then(|d| d.value.as_ref()) {
        Some(Variant::Int32(c)) => NodeClass::try_from(*c).unwrap_or(NodeClass::Unspecified),
        _ => NodeClass::Unspecified,
    };
    let mut out =
        vec![Found { depth: 0, name, node_id: with_uri(&start_id, uris), class, data_type: None, access: None, path: String::new() }];
    if class == NodeClass::Variable {
        describe(session, &mut out, &[0], uris).await;
    }
    let mut seen = std::collections::HashSet::new();
    if !all && start_id == opcua::types::ObjectId::ObjectsFolder {
        // Mark the standard objects as seen: listed, not expanded.
        for (id, _, _) in children_of(session, &start_id).await? {
            if id.namespace == 0 {
                seen.insert(id);
            }
        }
    }
    out.extend(Box::pin(walk_from(session, start_id, 0, String::new(), depth, uris, &mut seen)).await?);
    Ok(out)
}

async fn walk_from(
    session: &Arc<Session>,
    node: NodeId,
    d: usize,
    path: String,
    depth: usize,
    uris: &[String],
    seen: &mut std::collections::HashSet<NodeId>,
) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    if d >= depth || !seen.insert(node.clone()) {
        return Ok(out);
    }
    let children = children_of(session, &node).await?;
    let mut vars = Vec::new();
    let mut next = Vec::new();
    for (id, name, class) in children {
        let p = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        if class == NodeClass::Variable {
            vars.push(out.len());
        }
        let found = Found { depth: d + 1, name, node_id: with_uri(&id, uris), class, data_type: None, access: None, path: p.clone() };
        out.push(found);
        if matches!(class, NodeClass::Object | NodeClass::Variable) {
            next.push((id, p, out.len() - 1));
        }
    }
    describe(session, &mut out, &vars, uris).await;
    for (id, p, idx) in next.into_iter().rev() {
        let sub = Box::pin(walk_from(session, id, d + 1, p, depth, uris, seen)).await?;
        let tail = out.split_off(idx + 1);
        out.extend(sub);
        out.extend(tail);
    }
    Ok(out)
}

/// Forward hierarchical references of `node` to objects, variables and methods.
async fn children_of(session: &Arc<Session>, node: &NodeId) -> anyhow::Result<Vec<(NodeId, String, NodeClass)>> {
    let desc = BrowseDescription {
        node_id: node.clone(),
        browse_direction: BrowseDirection::Forward,
        reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
        include_subtypes: true,
        node_class_mask: (NodeClassMask::OBJECT | NodeClassMask::VARIABLE).bits(),
        result_mask: BrowseResultMask::All as u32,
    };
    let mut out = Vec::new();
    let mut results = session.browse(&[desc], 1000, None).await.map_err(|e| anyhow::anyhow!("Browse {node}: {}", e.status()))?;
    while let Some(r) = results.pop() {
        if !r.status_code.is_good() {
            anyhow::bail!("Browse {node}: {}", r.status_code);
        }
        for rd in r.references.unwrap_or_default() {
            if rd.node_id.server_index != 0 {
                continue;
            }
            out.push((rd.node_id.node_id.clone(), rd.browse_name.name.value().clone().unwrap_or_default(), rd.node_class));
        }
        let cp: ByteString = r.continuation_point;
        if cp.is_null() || cp.is_empty() {
            break;
        }
        results = session.browse_next(false, &[cp]).await.map_err(|e| anyhow::anyhow!("BrowseNext {node}: {}", e.status()))?;
    }
    Ok(out)
}

/// Reads DataType and AccessLevel of the variables at `idx` in `out`.
async fn describe(session: &Arc<Session>, out: &mut [Found], idx: &[usize], uris: &[String]) {
    if idx.is_empty() {
        return;
    }
    let mut req = Vec::new();
    let map = super::session::namespace_map(uris);
    for &i in idx {
        let Ok(r) = out[i].node_id.parse::<super::node::NodeRef>() else { continue };
        let Ok(id) = r.resolve(&map) else { continue };
        req.push(ReadValueId::new(id.clone(), AttributeId::DataType));
        req.push(ReadValueId::new(id, AttributeId::AccessLevel));
    }
    let Ok(values) = session.read(&req, TimestampsToReturn::Neither, 0.0).await else { return };
    for (k, &i) in idx.iter().enumerate() {
        if let Some(Variant::NodeId(t)) = values.get(2 * k).and_then(|d| d.value.as_ref()) {
            out[i].data_type = Some(type_name(t));
        }
        if let Some(Variant::Byte(a)) = values.get(2 * k + 1).and_then(|d| d.value.as_ref()) {
            out[i].access = Some(
                match (a & 1 != 0, a & 2 != 0) {
                    (true, true) => "read/write",
                    (true, false) => "read",
                    (false, true) => "write",
                    _ => "none",
                }
                .to_string(),
            );
        }
    }
}

/// Name of a built-in data type (Part 6 §5.1.2), else its NodeId.
fn type_name(t: &NodeId) -> String {
    if t.namespace == 0
        && let opcua::types::Identifier::Numeric(n) = t.identifier
    {
        let name = match n {
            1 => "Boolean",
            2 => "SByte",
            3 => "Byte",
            4 => "Int16",
            5 => "UInt16",
            6 => "Int32",
            7 => "UInt32",
            8 => "Int64",
            9 => "UInt64",
            10 => "Float",
            11 => "Double",
            12 => "String",
            13 => "DateTime",
            14 => "Guid",
            15 => "ByteString",
            19 => "StatusCode",
            20 => "QualifiedName",
            21 => "LocalizedText",
            26 => "Number",
            _ => "",
        };
        if !name.is_empty() {
            return name.to_string();
        }
    }
    t.to_string()
}

/// The tree, one node per line, indented by depth.
pub fn render_tree(found: &[Found]) -> String {
    let mut s = String::new();
    for f in found {
        let _ = write!(s, "{}{}  {}  {:?}", "  ".repeat(f.depth), f.name, f.node_id, f.class);
        if let Some(t) = &f.data_type {
            let _ = write!(s, "  {t}");
        }
        if let Some(a) = &f.access {
            let _ = write!(s, "  {a}");
        }
        s.push('\n');
    }
    s
}

/// A `[[device]]` block with one `[[device.tag]]` per readable variable
/// outside namespace 0 (the server's own diagnostics are left out).
pub fn render_snippet(found: &[Found], device: &str, endpoint: &str) -> String {
    let mut s = format!("[[device]]\nname = {device:?}\nprotocol = \"opcua\"\nendpoint = {endpoint:?}\n");
    let mut names = std::collections::HashSet::new();
    let standard = |id: &str| id.starts_with("i=") || id.starts_with("s=") || id.starts_with("g=") || id.starts_with("b=");
    for f in found.iter().filter(|f| {
        f.depth > 0 && f.class == NodeClass::Variable && !standard(&f.node_id) && f.access.as_deref().is_none_or(|a| a.starts_with("read"))
    }) {
        let mut name: String = f.path.chars().map(|c| if matches!(c, '+' | '#' | '/' | ' ') || c.is_control() { '_' } else { c }).collect();
        let stem = name.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{stem}_{n}");
            n += 1;
        }
        let _ = write!(s, "\n  [[device.tag]]\n  name = {name:?}\n  node_id = {:?}\n", f.node_id);
    }
    s
}
