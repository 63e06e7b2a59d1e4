//! Naming rules for gateways, devices, tags and sinks.
//!
//! Names become MQTT topic levels (`site/area/line/device/tag`, ISA-95 unified
//! namespace style), so they may not contain the MQTT wildcards `+` and `#`,
//! the level separator `/`, or control characters (MQTT v3.1.1 §4.7).

/// Longest name, in bytes.
pub const MAX_LEN: usize = 128;

/// Checks a name; the error says what is wrong.
pub fn check(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("name is empty".into());
    }
    if name.len() > MAX_LEN {
        return Err(format!("name {name:?} is longer than 128 bytes"));
    }
    if name != name.trim() {
        return Err(format!("name {name:?} has leading or trailing spaces"));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '+' | '#' | '/') || c.is_control()) {
        return Err(format!(
            "name {name:?} contains {c:?}; names become MQTT topic levels and may not contain '+', '#', '/' or control characters"
        ));
    }
    Ok(())
}

/// Device name of the gateway's own health samples.
pub const HEALTH_DEVICE: &str = "_relais";

/// Checks a device name taken from data (a CSV column, a JSON field, an
/// MQTT topic level): the rules of [`check`], and not the gateway's own
/// health device (`_relais`), which data may not write into.
pub fn check_device(name: &str) -> Result<(), String> {
    check(name)?;
    if name == HEALTH_DEVICE {
        return Err(format!("device name {name:?} is reserved for the gateway's own health samples"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules() {
        assert!(super::check("pump-1.temp_A").is_ok());
        assert!(super::check("a/b").is_err());
        assert!(super::check("a+b").is_err());
        assert!(super::check("").is_err());
        assert!(super::check(" x").is_err());
    }
}
