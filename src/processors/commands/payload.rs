//! Command and response payloads (pure). `docs/payloads.md` ("Commands")
//! has the reference.
//!
//! Command (a JSON object; unknown keys are refused, a typo must not pass
//! silently):
//!
//! | key | type | |
//! |---|---|---|
//! | `id` | string, 1–128 bytes | required; the deduplication key |
//! | `value` | bool, number or string | required for a write, absent for an acknowledgement |
//! | `ack` | `true` | required for an alarm acknowledgement |
//! | `ttl` | `"10s"` or seconds | optional (default `default_ttl`); at most `dedup_window` |
//! | `ts` | RFC 3339 text or epoch milliseconds | optional: when the command was issued; its age counts from here, else from its receipt |
//! | `response_topic` | topic | optional: where the result goes (default: the result topic) |
//! | `token` | string | required when a token is configured; never logged |
//! | `client` | string | optional: who sends it, as the sender says (shown in the audit) |

use std::time::Duration;

use serde_json::{Map, Value as J, json};

use super::topic::Target;
use crate::model::{Timestamp, Value, format_rfc3339};

/// Largest `id`, bytes.
pub const MAX_ID: usize = 128;

/// Keys a command may carry.
const KEYS: &[&str] = &["id", "value", "ack", "ttl", "ts", "response_topic", "token", "client"];

/// A well-formed command.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command id.
    pub id: String,
    /// The value to write (writes), `None` for acknowledgements.
    pub value: Option<Value>,
    /// Time to live: older commands are refused `expired`.
    pub ttl: Duration,
    /// When the sender issued it, if it said.
    pub ts: Option<Timestamp>,
    /// Where to answer, if not the default result topic.
    pub response_topic: Option<String>,
    /// The token it carries.
    pub token: Option<String>,
    /// Who sent it, as the sender says.
    pub client: Option<String>,
}

/// A payload that is not a command: why, and what could be read of it (to
/// answer to its id and response topic).
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// `bad_payload: …`.
    pub reason: String,
    /// The id, when readable.
    pub id: Option<String>,
    /// The response topic, when readable and valid.
    pub response_topic: Option<String>,
}

/// Reads a command for `target`; `default_ttl` when it gives none; a `ttl`
/// above `max_ttl` is refused.
pub fn parse(payload: &[u8], target: &Target, default_ttl: Duration, max_ttl: Duration) -> Result<Command, Malformed> {
    let bad = |reason: String, o: Option<&Map<String, J>>| Malformed {
        reason: format!("bad_payload: {reason}"),
        id: o.and_then(|o| o.get("id")).and_then(J::as_str).filter(|s| !s.is_empty() && s.len() <= MAX_ID).map(str::to_string),
        response_topic: o.and_then(|o| o.get("response_topic")).and_then(J::as_str).filter(|t| valid_topic(t)).map(str::to_string),
    };
    let v: J = serde_json::from_slice(payload).map_err(|e| bad(format!("not JSON: {e}"), None))?;
    let J::Object(o) = v else { return Err(bad("a command is a JSON object such as {\"id\": \"c-1\", \"value\": 42}".into(), None)) };
    let o = &o;
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(format!("unknown key {:?}; a command has {}", short(k), KEYS.join(", ")), Some(o)));
    }
    let id = match o.get("id") {
        Some(J::String(s)) if !s.is_empty() && s.len() <= MAX_ID => s.clone(),
        Some(J::String(_)) => return Err(bad(format!("`id` must be 1 to {MAX_ID} bytes"), Some(o))),
        Some(_) => return Err(bad("`id` must be a string".into(), Some(o))),
        None => return Err(bad("`id` is required (the command's unique id, the key that makes it run once)".into(), Some(o))),
    };
    let text = |k: &str| -> Result<Option<String>, Malformed> {
        match o.get(k) {
            None => Ok(None),
            Some(J::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("`{k}` must be a string"), Some(o))),
        }
    };
    let (token, client, response_topic) = (text("token")?, text("client")?, text("response_topic")?);
    if let Some(t) = &response_topic
        && !valid_topic(t)
    {
        return Err(bad(format!("`response_topic` {:?} is not a topic to publish to (no wildcards, not empty)", short(t)), Some(o)));
    }
    let value = body(o, target).map_err(|e| bad(e, Some(o)))?;
    let ttl = match o.get("ttl") {
        None => default_ttl,
        Some(t) => ttl_of(t).map_err(|e| bad(e, Some(o)))?,
    };
    if ttl > max_ttl {
        let m = format!("`ttl` {} is longer than dedup_window ({})", humantime::format_duration(ttl), humantime::format_duration(max_ttl));
        return Err(bad(m, Some(o)));
    }
    let ts = o.get("ts").map(ts_of).transpose().map_err(|e| bad(e, Some(o)))?;
    Ok(Command { id, value, ttl, ts, response_topic, token, client })
}

/// The value of a write, or the `ack` of an acknowledgement.
fn body(o: &Map<String, J>, target: &Target) -> Result<Option<Value>, String> {
    match target {
        Target::Tag { .. } => {
            if o.contains_key("ack") {
                return Err("`ack` belongs to alarm acknowledgements; a write has `value`".into());
            }
            match o.get("value") {
                None => Err("`value` is required".into()),
                Some(J::Bool(b)) => Ok(Some(Value::Bool(*b))),
                Some(J::String(s)) => Ok(Some(Value::Str(s.clone()))),
                Some(J::Number(n)) => Ok(Some(
                    n.as_i64().map(Value::I64).or_else(|| n.as_u64().map(Value::U64)).unwrap_or(Value::F64(n.as_f64().unwrap_or(f64::NAN))),
                )),
                Some(_) => Err("`value` must be a boolean, a number or a string".into()),
            }
        }
        Target::Alarm { .. } => {
            if o.contains_key("value") {
                return Err("an alarm acknowledgement has `\"ack\": true`, not `value`".into());
            }
            match o.get("ack") {
                Some(J::Bool(true)) => Ok(None),
                _ => Err("an alarm acknowledgement needs `\"ack\": true`".into()),
            }
        }
    }
}

fn ttl_of(t: &J) -> Result<Duration, String> {
    let d = match t {
        J::String(s) if s.len() > 64 => return Err("`ttl` is too long to be a duration such as \"10s\"".into()),
        J::String(s) => crate::units::parse_duration(s).map_err(|e| format!("`ttl`: {e}"))?,
        J::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("`ttl` {n} is not a number of seconds"))?,
        _ => return Err("`ttl` must be a duration such as \"10s\" or a number of seconds".into()),
    };
    if d.is_zero() {
        return Err("`ttl` must be above zero".into());
    }
    Ok(d)
}

fn ts_of(t: &J) -> Result<Timestamp, String> {
    match t {
        J::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|d| d.timestamp_nanos_opt())
            .map(Timestamp)
            .ok_or_else(|| format!("`ts` {:?} is not an RFC 3339 time such as \"2026-03-01T12:00:00Z\"", short(s))),
        J::Number(n) => n
            .as_i64()
            .filter(|ms| (0..=253_402_300_799_999).contains(ms))
            .map(Timestamp::from_millis)
            .ok_or_else(|| format!("`ts` {n} is not epoch milliseconds")),
        _ => Err("`ts` must be RFC 3339 text or epoch milliseconds".into()),
    }
}

/// `s` cut to 64 characters for a message (a payload may hold anything).
fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A topic a response may be published to.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= 65_535 && !t.contains(['+', '#', '\0'])
}

/// How old a command is at `now`: from its `ts` when given (a `ts` in the
/// future counts as age zero), else from `received`.
pub fn age(cmd: &Command, received: Timestamp, now: Timestamp) -> Duration {
    let from = cmd.ts.unwrap_or(received);
    Duration::from_nanos(now.as_nanos().saturating_sub(from.as_nanos()).max(0) as u64)
}

/// A response: `{"id", "result", "reason", target fields, "ts"}` plus `extra`
/// (`value`, `old`, `readback`, `state`).
pub fn response(id: Option<&str>, target: &Target, result: &str, reason: Option<&str>, extra: J) -> J {
    let mut r = json!({ "id": id, "result": result, "reason": reason });
    match target {
        Target::Tag { device, tag } => {
            r["device"] = json!(device);
            r["tag"] = json!(tag);
        }
        Target::Alarm { rule } => r["rule"] = json!(rule),
    }
    if let J::Object(m) = extra {
        for (k, v) in m {
            r[k] = v;
        }
    }
    r["ts"] = json!(format_rfc3339(Timestamp::now()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const S10: Duration = Duration::from_secs(10);
    const DAY: Duration = Duration::from_secs(86_400);

    fn tag() -> Target {
        Target::Tag { device: "pump".into(), tag: "sp".into() }
    }

    fn reason(p: &str, t: &Target) -> Malformed {
        parse(p.as_bytes(), t, S10, DAY).unwrap_err()
    }

    #[test]
    fn a_write_and_an_acknowledgement() {
        let c = parse(br#"{"id":"c1","value":42,"ttl":"5s","ts":1700000000000,"client":"hmi"}"#, &tag(), S10, DAY).unwrap();
        assert_eq!((c.id.as_str(), c.value, c.ttl), ("c1", Some(Value::I64(42)), Duration::from_secs(5)));
        assert_eq!(c.ts, Some(Timestamp::from_millis(1_700_000_000_000)));
        let c = parse(br#"{"id":"c2","value":2.5,"ttl":3}"#, &tag(), S10, DAY).unwrap();
        assert_eq!((c.value, c.ttl, c.ts), (Some(Value::F64(2.5)), Duration::from_secs(3), None));
        let a = parse(br#"{"id":"a1","ack":true,"ts":"2026-01-01T00:00:00Z"}"#, &Target::Alarm { rule: "r".into() }, S10, DAY).unwrap();
        assert_eq!((a.value, a.ttl), (None, S10));
    }

    #[test]
    fn malformed_payloads_say_why_and_keep_what_they_can() {
        let m = reason("not json", &tag());
        assert!(m.reason.starts_with("bad_payload: not JSON"), "{m:?}");
        assert_eq!(m.id, None);
        let m = reason(r#"{"value":1,"response_topic":"r/1"}"#, &tag());
        assert!(m.reason.contains("`id` is required"), "{m:?}");
        assert_eq!(m.response_topic.as_deref(), Some("r/1"));
        let m = reason(r#"{"id":"x","value":[1]}"#, &tag());
        assert!(m.reason.contains("boolean, a number or a string"), "{m:?}");
        assert_eq!(m.id.as_deref(), Some("x"));
        assert!(reason(r#"{"id":"x"}"#, &tag()).reason.contains("`value` is required"));
        assert!(reason(r#"{"id":"x","value":1,"valeu":2}"#, &tag()).reason.contains("unknown key \"valeu\""));
        let long = reason(&format!(r#"{{"id":"x","value":1,"{}":2}}"#, "k".repeat(10_000)), &tag()).reason;
        assert!(long.len() < 300, "a long key is cut in the reason: {} bytes", long.len());
        assert!(reason(r#"{"id":"x","value":1,"ttl":"soon"}"#, &tag()).reason.contains("`ttl`"));
        assert!(reason(r#"{"id":"x","value":1,"ttl":"2d"}"#, &tag()).reason.contains("longer than dedup_window"));
        assert!(reason(r#"{"id":"x","value":1,"ts":"yesterday"}"#, &tag()).reason.contains("RFC 3339"));
        assert!(reason(r#"{"id":"x","value":1,"response_topic":"a/#"}"#, &tag()).reason.contains("wildcards"));
        assert!(reason(r#"{"id":"x","value":1}"#, &Target::Alarm { rule: "r".into() }).reason.contains("\"ack\": true"));
        assert!(reason(r#"{"id":"x","ack":false}"#, &Target::Alarm { rule: "r".into() }).reason.contains("\"ack\": true"));
        assert!(reason(&format!(r#"{{"id":"{}","value":1}}"#, "x".repeat(129)), &tag()).reason.contains("1 to 128"));
    }

    #[test]
    fn age_counts_from_ts_or_receipt() {
        let c = parse(br#"{"id":"c","value":1,"ts":1000}"#, &tag(), S10, DAY).unwrap();
        let now = Timestamp::from_millis(21_000);
        assert_eq!(age(&c, Timestamp::from_millis(20_000), now), Duration::from_secs(20));
        let c = parse(br#"{"id":"c","value":1}"#, &tag(), S10, DAY).unwrap();
        assert_eq!(age(&c, Timestamp::from_millis(20_000), now), Duration::from_secs(1));
        let c = parse(br#"{"id":"c","value":1,"ts":99000}"#, &tag(), S10, DAY).unwrap();
        assert_eq!(age(&c, Timestamp::from_millis(20_000), now), Duration::ZERO, "a ts in the future");
    }
}
