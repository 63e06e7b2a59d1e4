//! Northbound sinks: each reads committed samples after its own cursor,
//! delivers them, and moves the cursor only once the far end acknowledged them.

pub mod driver;
pub mod http;
pub mod mqtt;
pub mod nats;
pub mod postgres;
pub mod record_json;
pub mod template;

use crate::component::{ParseCx, parse_by_type};
use crate::diag::{Diag, Item};

crate::component::family! {
    /// One `[[sink]]`, by type.
    pub enum SinkConfig {
        /// `type = "mqtt"`.
        Mqtt(mqtt::component::Mqtt),
        /// `type = "http"`.
        Http(http::component::Http),
        /// `type = "postgres"`.
        Postgres(postgres::component::Postgres),
        /// `type = "nats"`.
        Nats(nats::component::Nats),
    }
}

impl SinkConfig {
    /// The sink name.
    pub fn name(&self) -> &str {
        self.component().name()
    }
}

/// Types a `[[sink]]` may name.
pub const SINK_TYPES: &str = "mqtt, http, postgres, nats";

/// Parses one `[[sink]]` item by its `type`.
pub fn parse_sink(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<SinkConfig> {
    parse_by_type(item, d, cx, ("type", "sink type", SINK_TYPES), SinkConfig::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_list_matches_the_family() {
        assert_eq!(SinkConfig::type_list(), SINK_TYPES);
    }
}
