//! The one sample schema every source produces and every sink consumes.
//!
//! Pure data: no I/O, no runtime. See `docs/payloads.md` for how a [`Sample`] is
//! rendered on MQTT, and `../shared/GUIDE.md` §2 for the field definitions.

pub mod clock;
mod event;
mod quality;
mod quarantined;
mod sample;
mod scale;
mod time;
mod value;

pub use event::{Event, EventSource, Record, Severity};
pub use quality::{Quality, reason};
pub use quarantined::Quarantined;
pub use sample::{Sample, TagMeta};
pub use scale::apply_scale;
pub use time::{Timestamp, format_rfc3339};
pub use value::Value;
