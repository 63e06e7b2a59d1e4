//! A fault's kind and parameters turned into what its target's owner takes:
//! a simulator fault, a proxy toxic, an attack, or a gateway fault. The
//! `[[fault]]` table minus the lab's own keys (`at`, `duration`, `target`,
//! `expect`) is deserialized into the target's type with serde (tagged by
//! `kind`, unknown parameters refused).

use serde::Deserialize;

use super::scenario::Target;
use crate::proxy::Toxic;
use crate::sim::{Attack, SimFault};

/// What a fault does, by target.
#[derive(Debug, Clone)]
pub enum Action {
    /// A simulator fault on a station or a tag (`Sim::inject`).
    Sim(SimFault),
    /// A toxic on a proxy (`Proxy::set`).
    Proxy(Toxic),
    /// An attack from a second Modbus client (`sim::attack`).
    Attack(Attack),
    /// A fault of the gateway process or its host.
    Gateway(GatewayFault),
}

/// Faults of the gateway process and its host (`target = "gateway"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GatewayFault {
    /// `kill -9` of the gateway; it is started again after the fault's `duration` (default 2 s).
    Kill,
    /// The buffer behaves as on ENOSPC (`PUT /api/lab/disk_full`) for the fault's duration.
    DiskFull,
    /// The gateway's clock is offset by `offset_s` seconds (`PUT /api/lab/clock`), 0 when cleared.
    ClockJump {
        /// Seconds, negative: back in time (e.g. -63072000 for two years back).
        offset_s: i64,
    },
}

impl Action {
    /// The kind and parameters of a fault on `target` (`t` still holds `kind`).
    pub fn parse(target: &Target, t: toml::Table) -> Result<Action, String> {
        let msg = |e: toml::de::Error| kind_hint(e.message().trim_end());
        for (k, v) in &t {
            if let toml::Value::Float(x) = v
                && !x.is_finite()
            {
                return Err(format!("{k}: {x} is not a finite number"));
            }
        }
        let kind = t.get("kind").and_then(toml::Value::as_str).unwrap_or("").to_string();
        let extra: Vec<String> = t.keys().filter(|k| *k != "kind").cloned().collect();
        if let Target::Proxy(_) = target {
            // The proxy's own strict reader (it refuses keys on kinds without parameters).
            return Toxic::from_table(t).map(Action::Proxy).map_err(|e| kind_hint(&e));
        }
        let v = toml::Value::Table(t);
        let a = match target {
            Target::Sim { .. } => v.try_into().map(Action::Sim).map_err(msg),
            Target::Proxy(_) => v.try_into().map(Action::Proxy).map_err(msg),
            Target::Attack(_) => v.try_into().map(Action::Attack).map_err(msg),
            Target::Gateway => v.try_into().map(Action::Gateway).map_err(msg),
        }?;
        // serde's deny_unknown_fields lets a kind without parameters ignore extra keys.
        let no_params = matches!(
            &a,
            Action::Sim(SimFault::Stuck | SimFault::Dropout | SimFault::ByteOrder | SimFault::CounterReset | SimFault::BadStatus)
                | Action::Gateway(GatewayFault::Kill | GatewayFault::DiskFull)
        );
        if no_params && let Some(k) = extra.first() {
            return Err(format!("{k}: `{kind}` takes no parameter"));
        }
        if let Action::Gateway(GatewayFault::ClockJump { offset_s }) = &a
            && offset_s.unsigned_abs() > 100 * 366 * 86_400
        {
            return Err(format!("offset_s: {offset_s} is beyond ±100 years (±3162240000 s)"));
        }
        Ok(a)
    }
}

/// serde's "unknown variant `stuk`, expected one of `stuck`, …" as "kind: unknown kind
/// "stuk" (did you mean "stuck"?); …": names the key and the likely typo.
fn kind_hint(m: &str) -> String {
    let Some(rest) = m.strip_prefix("unknown variant `") else { return m.to_string() };
    let Some((name, tail)) = rest.split_once('`') else { return m.to_string() };
    let known: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    let hint = crate::diag::closest(name, &known).map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default();
    format!("kind: unknown kind {name:?} for this target{hint}; known: {}", known.join(", "))
}
