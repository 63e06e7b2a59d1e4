//! What every `[[source]]` has: a name, a device name for its samples, and
//! how its input is parsed. Each source type adds its own keys.

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, de_item, reject_unknown_keys};
use crate::parse::ParseSpec;
use crate::parse::spec::{PARSE_KEYS, RawParse};

/// The common part of a `[[source]]`.
#[derive(Debug, Clone)]
pub struct SourceCommon {
    /// Source name: used in quarantine records, HTTP routes and cursors.
    pub name: String,
    /// Device name of the samples (default: the source name), unless the
    /// input names one (`device_column`, `device_path`, MQTT topic level).
    pub device: String,
    /// Parsing.
    pub parse: ParseSpec,
}

#[derive(Deserialize)]
struct RawCommon {
    name: Spanned<String>,
    #[serde(rename = "type")]
    #[allow(dead_code)]
    ty: String,
    device: Option<Spanned<String>>,
}

/// Checks the keys of a source item (common + parse + `type_keys`), then
/// reads the common part and the parse part. Returns them with the item,
/// for the type-specific keys.
pub fn parse_common<'i>(mut item: Item<'i>, diag: &mut Diag<'_>, key: &str, type_keys: &[&str]) -> Option<(SourceCommon, Item<'i>)> {
    let mut known: Vec<&str> = vec!["name", "type", "device"];
    known.extend_from_slice(PARSE_KEYS);
    known.extend_from_slice(type_keys);
    reject_unknown_keys(&mut item, &known, diag, key);
    let span = item.span();
    let raw: RawCommon = de_item(item.clone(), diag, key)?;
    let name = raw.name.get_ref().clone();
    let key = format!("source {name:?}");
    if let Err(e) = crate::names::check(&name) {
        diag.error(raw.name.span(), &format!("{key} / name"), e);
    }
    let device = match &raw.device {
        Some(d) => {
            if let Err(e) = crate::names::check(d.get_ref()) {
                diag.error(d.span(), &format!("{key} / device"), e);
            }
            d.get_ref().clone()
        }
        None => name.clone(),
    };
    let rp: RawParse = de_item(item.clone(), diag, &key)?;
    let parse = rp.validate(diag, &key, span);
    Some((SourceCommon { name, device, parse }, item))
}
