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
    let value = parse_value(value);
    let mut req = WriteRequest::new(device, tag, value.clone(), Origin::Cli);
    req.dry_run = dry_run;
    let outcome = super::block_on(async move {
        let gw = crate::app::Gateway::start(cfg, Default::default()).await?;
        let o = gw.actuators.write(req).await;
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
