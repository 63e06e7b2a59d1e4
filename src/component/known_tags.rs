//! What a gateway configuration supplies (devices, their tags, writable
//! tags, the devices sources name), to check the tags that rules and
//! interlocks name. Built by `sources::known_tags`.

/// What a gateway configuration supplies, to check the tags that rules and
/// interlocks name (from `relais check` and `relais run`; a rules-only file
/// has none).
#[derive(Debug, Clone, Default)]
pub struct KnownTags {
    /// `[[device]]` names with their tags.
    pub devices: Vec<(String, Vec<String>)>,
    /// `device/tag` of every tag with `writable = true`.
    pub writable: Vec<String>,
    /// Devices that other inputs name: each `[[source]]`'s `device`, the
    /// gateway's own health device.
    pub other_devices: Vec<String>,
    /// True when some `[[source]]` takes device names from its data (a CSV
    /// column, a JSON path, an MQTT topic level): any device may appear.
    pub open: bool,
}

impl KnownTags {
    /// The tags of configured `[[device]]` `dev`, if it is one.
    pub fn tags_of(&self, dev: &str) -> Option<&[String]> {
        self.devices.iter().find(|(d, _)| d == dev).map(|(_, t)| t.as_slice())
    }

    /// True when samples of `dev` may come: a `[[device]]`, a source's
    /// device, or any device when a source names them from data.
    pub fn supplies(&self, dev: &str) -> bool {
        self.open || self.tags_of(dev).is_some() || self.other_devices.iter().any(|d| d == dev)
    }

    /// The `[[device]]` names, for messages.
    pub fn device_names(&self) -> String {
        let v: Vec<&str> = self.devices.iter().map(|(d, _)| d.as_str()).collect();
        if v.is_empty() { "none".into() } else { v.join(", ") }
    }
}
