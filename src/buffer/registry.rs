//! Tag ids: assigned by the writer, shared with the readers, so every tag's
//! names live once in memory whatever the number of sinks.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use crate::model::TagMeta;

/// A `TagMeta` compared and hashed by its names (device, tag, unit), so that
/// separately created metas of the same tag share one id.
#[derive(Clone)]
pub(crate) struct MetaKey(pub Arc<TagMeta>);

impl PartialEq for MetaKey {
    fn eq(&self, o: &Self) -> bool {
        *self.0 == *o.0
    }
}

impl Eq for MetaKey {}

impl Hash for MetaKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.device.hash(h);
        self.0.tag.hash(h);
        self.0.unit.hash(h);
    }
}

/// Tag id → names.
#[derive(Default, Debug)]
pub(crate) struct TagRegistry {
    by_id: RwLock<HashMap<i64, Arc<TagMeta>>>,
}

impl TagRegistry {
    pub(crate) fn insert(&self, id: i64, meta: Arc<TagMeta>) {
        if let Ok(mut m) = self.by_id.write() {
            m.insert(id, meta);
        }
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        self.by_id.read().map(|m| m.contains_key(&id)).unwrap_or(false)
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut m) = self.by_id.write() {
            m.clear();
        }
    }

    /// The metas of the ids of one read (one lock for the whole read).
    pub(crate) fn snapshot(&self, ids: impl Iterator<Item = i64>) -> HashMap<i64, Arc<TagMeta>> {
        let m = self.by_id.read().expect("tag registry lock");
        let mut local: HashMap<i64, Arc<TagMeta>> = HashMap::new();
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(e) = local.entry(id) {
                let meta = m.get(&id).cloned().unwrap_or_else(|| TagMeta::new("unknown-device", format!("unknown-tag-{id}"), None));
                e.insert(meta);
            }
        }
        local
    }
}
