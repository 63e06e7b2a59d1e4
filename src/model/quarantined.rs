//! A record kept aside: what could not become samples, with where and why.

/// A record that could not be ingested, kept aside with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    /// Source name from the config.
    pub source: String,
    /// File (or topic, or `http`) the record came from.
    pub origin: String,
    /// Where in it: `line 12`, `byte 4096`, `record 3`.
    pub location: String,
    /// Why, starting with a machine-readable code (`parse_error: …`).
    pub reason: String,
    /// The raw record (truncated to 64 KiB).
    pub raw: String,
}
