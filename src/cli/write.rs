//! `relais write --config FILE DEVICE TAG VALUE [--dry-run]`: one actuator
//! write through the same path as rules and MQTT commands
//! (`component::actuate`): the allow-list and limits of the configuration,
//! the device's function codes, the read-back, and a `write.audit` event
//! (with `security.write_refused` for a refusal) stored in the buffer and
//! forwarded by the configured sinks.
//!
//! It starts the gateway with only that device (and the sinks) on the
//! configured `data_dir`, so it cannot run beside a `relais run` on the same
//! folder (the buffer refuses a second instance). Exit code: 0 `ok`, 1
//! `refused`, `failed` or `unknown`, 2 configuration error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::load;
use crate::component::actuate::{Origin, WriteOutcome, WriteRequest, WriteResult};
use crate::config::Config;
use crate::model::Value;
use crate::outln;

/// The value as typed: `true`/`false`, an integer, a number, else text.
pub fn parse_value(s: &str) -> Value {
    match s.trim() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        t => t
            .parse::<i64>()
            .map(Value::I64)
            .or_else(|_| t.parse::<u64>().map(Value::U64))
            .or_else(|_| t.parse::<f64>().map(Value::F64))
            .unwrap_or_else(|_| Value::Str(s.to_string())),
    }
}

/// Refuses a typed value that would not be written as typed: a number
/// beyond the 64-bit float range (`1e400` reads as infinity) or an integer
/// beyond 64 bits (it would be rounded to a float).
pub fn check_exact(text: &str, v: &Value) -> Result<(), String> {
    let Value::F64(x) = v else { return Ok(()) };
    if !x.is_finite() {
        return Err(format!("{text:?} is not a finite 64-bit number (it reads as {x}); nothing was written"));
    }
    let t = text.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{t} does not fit a 64-bit integer ({}..={}) and would be rounded to {x}; nothing was written",
            i64::MIN,
            u64::MAX
        ));
    }
    Ok(())
}

/// Waits (at most `max`) until the live table holds a sample of
/// `device`/`tag`, so the write's bad-quality guard sees the device's first
/// answer (a device that is down is refused with the read's reason).
async fn first_read(live: &crate::component::live::LiveTable, device: &str, tag: &str, max: Duration) {
    let end = tokio::time::Instant::now() + max;
    while live.get(device, tag).is_none() && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A one-shot write's reason: the link's "not connected; next attempt in
/// 1.2s" (a retry this process will never make) becomes "DEVICE did not
/// answer (not connected)"; any other reason is kept as it is.
fn one_shot_reason(device: &str, why: &str) -> String {
    const LINK: &str = "not connected; next attempt in ";
    let Some(i) = why.find(LINK) else { return why.to_string() };
    let after = &why[i + LINK.len()..];
    // The wait: digits, a dot, then "s".
    let end = after.find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(after.len(), |e| e + usize::from(after[e..].starts_with('s')));
    format!("{}{device} did not answer (not connected){}", &why[..i], &after[end..])
}

/// The outcome in one line (and the reason on a second one).
pub fn render(device: &str, tag: &str, value: &Value, o: &WriteOutcome) -> String {
    let mut s = format!("{}: {device}/{tag} = {value}", o.result);
    if let Some(old) = &o.old {
        s += &format!(" (was {old}");
        s += &o.readback.as_ref().map_or(")".to_string(), |r| format!(", reads back {r})"));
    } else if let Some(r) = &o.readback {
        s += &format!(" (reads back {r})");
    }
    if let Some(why) = &o.reason {
        s += &format!("\n  {why}");
    }
    s
}

/// `relais write`.
pub(super) fn run(config: &Path, device: &str, tag: &str, value: &str, dry_run: bool) -> ExitCode {
    let mut cfg: Config = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !cfg.devices.iter().any(|d| d.component().name() == device) {
        let names: Vec<&str> = cfg.devices.iter().map(|d| d.component().name()).collect();
        eprintln!("{}: no device {device:?} (devices: {})", config.display(), names.join(", "));
        return ExitCode::from(2);
    }
    cfg.devices.retain(|d| d.component().name() == device);
    cfg.sources.clear();
    cfg.detectors.clear();
    cfg.rules.clear();
    // A one-shot command opens no admin listener.
    cfg.admin = None;
    let text = value;
    let value = parse_value(text);
    if let Err(e) = check_exact(text, &value) {
        eprintln!("refused: {device}/{tag} = {text}: {e}");
        return ExitCode::from(1);
    }
    // The first read: several poll periods, at least 3 s (a connection), at most 15 s.
    let wait = cfg.devices[0]
        .component()
        .poll_period()
        .map_or(Duration::from_secs(3), |p| p * 3)
        .clamp(Duration::from_secs(3), Duration::from_secs(15));
    let mut req = WriteRequest::new(device, tag, value.clone(), Origin::Cli);
    req.dry_run = dry_run;
    let outcome = super::block_on(async move {
        let gw = crate::app::Gateway::start(cfg, Default::default()).await?;
        first_read(gw.actuators.live(), &req.device, &req.tag, wait).await;
        let name = req.device.clone();
        let mut o = gw.actuators.write(req).await;
        o.reason = o.reason.map(|r| one_shot_reason(&name, &r));
        gw.shutdown().await?;
        anyhow::Ok(o)
    });
    match outcome {
        Ok(o) => {
            outln!("{}", render(device, tag, &value, &o));
            if o.result == WriteResult::Ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => super::fatal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_shot_write_says_the_device_did_not_answer_not_when_the_link_retries() {
        assert_eq!(
            one_shot_reason("d", "comm_failure: not connected; next attempt in 0.8s"),
            "comm_failure: d did not answer (not connected)"
        );
        assert_eq!(
            one_shot_reason("d", "invalid_frame: bad CRC; not connected; next attempt in 12.0s; nothing sent"),
            "invalid_frame: bad CRC; d did not answer (not connected); nothing sent"
        );
        assert_eq!(one_shot_reason("d", "comm_failure: connection refused"), "comm_failure: connection refused");
    }

    #[test]
    fn values_that_would_not_be_written_as_typed_are_refused() {
        let e = check_exact("1e400", &parse_value("1e400")).unwrap_err();
        assert!(e.contains("not a finite 64-bit number (it reads as inf)"), "{e}");
        let e = check_exact("99999999999999999999", &parse_value("99999999999999999999")).unwrap_err();
        assert!(e.contains("does not fit a 64-bit integer") && e.contains("would be rounded to 100000000000000000000"), "{e}");
        assert!(check_exact("-99999999999999999999", &parse_value("-99999999999999999999")).is_err());
        for ok in ["18446744073709551615", "-9223372036854775808", "21.5", "1e20", "true", "abc"] {
            assert_eq!(check_exact(ok, &parse_value(ok)), Ok(()), "{ok}");
        }
    }
}
