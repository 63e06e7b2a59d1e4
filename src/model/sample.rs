use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Quality, Timestamp, Value};

/// What names a tag: the device, the tag and its engineering unit.
///
/// Sources build one `Arc<TagMeta>` per configured tag and share it by every
/// sample, so the hot path copies a pointer, not strings. The tag path is
/// `device/tag`.
#[derive(Debug)]
pub struct TagMeta {
    /// Device name from the config (shared by the device's tags).
    pub device: Arc<str>,
    /// Tag name from the config.
    pub tag: Arc<str>,
    /// Engineering unit (UCUM style: `Cel`, `bar`, `m3/h`), if configured.
    pub unit: Option<Arc<str>>,
    /// Buffer-assigned id cache: high 32 bits = buffer instance, low 32 = tag id.
    /// Only the buffer writer reads and sets it.
    pub(crate) interned: AtomicU64,
}

impl TagMeta {
    /// A new tag identity. Pass the same `Arc<str>` for the device of many
    /// tags to share it.
    pub fn new(device: impl Into<Arc<str>>, tag: impl Into<Arc<str>>, unit: Option<&str>) -> Arc<TagMeta> {
        Arc::new(TagMeta { device: device.into(), tag: tag.into(), unit: unit.map(Arc::from), interned: AtomicU64::new(0) })
    }

    /// `device/tag`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.device, self.tag)
    }

    pub(crate) fn cached_id(&self, instance: u32) -> Option<i64> {
        let v = self.interned.load(Ordering::Relaxed);
        if v != 0 && (v >> 32) as u32 == instance { Some((v & 0xFFFF_FFFF) as i64) } else { None }
    }

    pub(crate) fn cache_id(&self, instance: u32, id: i64) {
        if (0..=u32::MAX as i64).contains(&id) {
            self.interned.store(((instance as u64) << 32) | id as u64, Ordering::Relaxed);
        }
    }
}

impl PartialEq for TagMeta {
    fn eq(&self, o: &Self) -> bool {
        self.device == o.device && self.tag == o.tag && self.unit == o.unit
    }
}

/// One value of one tag at one instant: the schema of GUIDE.md §2.
///
/// `seq` is 0 until the buffer writer accepts the sample; from then on it is
/// strictly increasing per gateway and, with the gateway id, the key consumers
/// use to drop the duplicates that at-least-once delivery allows.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Acceptance sequence number (0 before acceptance).
    pub seq: u64,
    /// Device, tag and unit.
    pub meta: Arc<TagMeta>,
    /// The value; [`Value::Null`] whenever `quality` is bad.
    pub value: Value,
    /// Good, uncertain or bad.
    pub quality: Quality,
    /// Why the quality is not good (see [`crate::model::reason`]).
    pub reason: Option<Arc<str>>,
    /// Source timestamp when the device gives one, else acquisition time (UTC).
    pub ts: Timestamp,
    /// The gateway's own acquisition time (UTC).
    pub recv_ts: Timestamp,
    /// The server's timestamp, when the source gives one besides `ts`
    /// (OPC UA ServerTimestamp, Part 4 §7.11).
    pub server_ts: Option<Timestamp>,
    /// The source's full status code when it has one (the 32-bit OPC UA
    /// StatusCode, Part 4 §7.39), kept for diagnostics beside `quality`.
    pub status: Option<u32>,
}

impl Sample {
    /// A good sample acquired at `ts`.
    pub fn good(meta: Arc<TagMeta>, value: Value, ts: Timestamp) -> Sample {
        Sample { seq: 0, meta, value, quality: Quality::Good, reason: None, ts, recv_ts: ts, server_ts: None, status: None }
    }

    /// A bad sample: no value, a reason.
    pub fn bad(meta: Arc<TagMeta>, reason: Arc<str>, ts: Timestamp) -> Sample {
        Sample {
            seq: 0,
            meta,
            value: Value::Null,
            quality: Quality::Bad,
            reason: Some(reason),
            ts,
            recv_ts: ts,
            server_ts: None,
            status: None,
        }
    }
}
