//! The `[[device.tag]]` list of an OPC UA device.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::super::node::{Namespace, NodeRef};
use super::acquisition::{AcqDefaults, acquisition, raw_acq, warn_poll_keys};
use super::{Acquisition, OpcUaTag, TAG_KEYS};
use crate::diag::{FirstSeen, Item, Reader, de_item, entries, reject_unknown_keys};
use crate::names;
use crate::sources::writable::{RawTagWrite, read_tag_write, with_write_keys};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    name: Spanned<String>,
    node_id: Spanned<String>,
    unit: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    mode: Option<Spanned<String>>,
    publishing_interval: Option<Spanned<String>>,
    sampling_interval: Option<Spanned<String>>,
    queue_size: Option<Spanned<i64>>,
    poll_interval: Option<Spanned<String>>,
    deadband: Option<Spanned<f64>>,
    deadband_type: Option<Spanned<String>>,
}

/// Reads the tags of the device `r` reads (`endpoint` for the namespace
/// warning), over the device's acquisition defaults; a device without tags
/// is warned at `name_span` (its name, when it was read).
pub(super) fn read_tags(
    r: &mut Reader<'_, '_>,
    list: Option<Item<'_>>,
    defaults: AcqDefaults,
    (endpoint, timeout): (&str, std::time::Duration),
    name_span: Option<Range<usize>>,
) -> Vec<OpcUaTag> {
    let key = r.table().to_string();
    let items = entries(list, r.diag(), &key, "tag", "device.tag");
    if items.is_empty()
        && let Some(span) = name_span
    {
        r.warn(span, "", "device has no [[device.tag]]; nothing will be read");
    }
    let mut seen = FirstSeen::new();
    let mut tags = Vec::new();
    let mut by_index: Vec<(String, u16, Range<usize>)> = Vec::new();
    for e in items {
        let mut t = e.item;
        reject_unknown_keys(&mut t, &with_write_keys(TAG_KEYS), r.diag(), &e.key);
        let raw_write = RawTagWrite::take(&mut t, r.diag(), &e.key);
        let Some(rt) = de_item::<RawTag>(t, r.diag(), &e.key) else { continue };
        let mut tr = Reader::new(r.diag(), &e.key);
        let tname = rt.name.get_ref().clone();
        if let Err(e) = names::check(&tname) {
            tr.error(rt.name.span(), "name", e);
        }
        seen.insert(tr.diag(), &tname, rt.name.span(), &format!("{} / name", e.key), "tag name");
        let node = match rt.node_id.get_ref().parse::<NodeRef>() {
            Ok(n) => Some(n),
            Err(err) => {
                tr.error(rt.node_id.span(), "node_id", err.to_string());
                None
            }
        };
        let acq = acquisition(&mut tr, &raw_acq!(rt), defaults);
        warn_poll_keys(&mut tr, &raw_acq!(rt), &acq);
        if let Some(NodeRef { namespace: Namespace::Index(ns), .. }) = &node
            && *ns >= 2
        {
            by_index.push((tname.clone(), *ns, rt.node_id.span()));
        }
        // The node's DataType is only known from the server: min/max are
        // checked for numbers, and a value of another kind is refused at write time.
        let write = read_tag_write(&mut tr, raw_write, None, true, "the node's type", timeout);
        if let Some(node) = node {
            let unit = rt.unit.filter(|u| !u.is_empty());
            tags.push(OpcUaTag { name: tname, node, acquisition: resolve(&acq), unit, write });
        }
    }
    warn_namespace_indexes(r, endpoint, &by_index);
    tags
}

/// The tag's acquisition from its resolved keys.
fn resolve(acq: &AcqDefaults) -> Acquisition {
    if acq.poll {
        Acquisition::Poll { interval: acq.poll_interval }
    } else {
        Acquisition::Subscription {
            publishing_interval: acq.publishing_interval,
            sampling_interval: acq.sampling_interval.unwrap_or(acq.publishing_interval),
            queue_size: acq.queue_size,
            deadband: acq.deadband,
        }
    }
}

/// One warning per device for its tags addressed by namespace index
/// (`ns=2;…` and above; `tags`: name, index, span of `node_id`): a server
/// renumbers its namespace table after updates and restarts, and a stale
/// index reads another node, or none, without any error. Indexes 0 (the
/// OPC UA namespace) and 1 (the server's own) are fixed by OPC UA Part 3
/// §8.2.1 and are not warned.
fn warn_namespace_indexes(r: &mut Reader<'_, '_>, endpoint: &str, tags: &[(String, u16, Range<usize>)]) {
    let Some((_, _, span)) = tags.first() else { return };
    let listed: Vec<String> = tags.iter().take(3).map(|(n, i, _)| format!("{n:?} (ns={i})")).collect();
    let more = if tags.len() > 3 { format!(" and {} more", tags.len() - 3) } else { String::new() };
    r.warn(
        span.clone(),
        "tag / node_id",
        format!(
            "{} tag{} address{} a namespace by index: {}{more}. Servers renumber their namespaces after updates and restarts, and a \
             renumbered index reads another node (or none) without any error: write nsu=<namespace URI> instead \
             (`relais browse {endpoint}` prints every NodeId with nsu=)",
            tags.len(),
            if tags.len() == 1 { "" } else { "s" },
            if tags.len() == 1 { "es" } else { "" },
            listed.join(", ")
        ),
    );
}
