//! The scenario file (TOML): what to start, and the timeline of faults with
//! their expectations. Format: `src/lab/README.md` and `docs/lab-guide.md`.
//!
//! Parsing is strict (unknown keys are errors) and every error names the
//! file, and for a fault its index (`fault #3`, counted from 1 in file order),
//! its kind and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::action::Action;

/// A parsed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `name`: the exercise's name (the report's `scenario`).
    pub name: String,
    /// `description`: one paragraph for the students (shown in the report).
    pub description: String,
    /// `seed`: drives every random choice of the simulator, the proxies and the attacks.
    pub seed: u64,
    /// `duration`: how long the timeline runs from time 0 (the first sample of the gateway).
    pub duration: Duration,
    /// `warmup`: longest wait for the gateway's first sample before time 0 (default 30 s).
    pub warmup: Duration,
    /// `drain`: how long the collector keeps listening after the timeline ends (default 3 s).
    pub drain: Duration,
    /// The simulator config (absolute path), `sim`, relative to the scenario.
    pub sim: Option<PathBuf>,
    /// The gateway config template (absolute path), `gateway`, relative to the scenario.
    pub gateway: PathBuf,
    /// `[[proxy]]` entries, in file order.
    pub proxies: Vec<ProxySpec>,
    /// `[[fault]]` entries, in file order (the report keeps this order).
    pub faults: Vec<FaultSpec>,
    /// The folder of the scenario file (`${scenario_dir}`).
    pub dir: PathBuf,
}

/// A `[[proxy]]`: a TCP fault proxy between the gateway and a device or the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// Its name: `proxy:<name>` in a fault's target, `${proxy.<name>}` (its `127.0.0.1:port`) in the configs.
    pub name: String,
    /// Where it forwards to, `host:port`, placeholders allowed (`127.0.0.1:${port.line}`, `${broker_addr}`).
    pub upstream: String,
    /// `tcp` (default), `modbus` (Modbus-aware toxics) or `mqtt` (MQTT-aware toxics).
    #[serde(default)]
    pub protocol: crate::proxy::Protocol,
    /// The gateway device or sink whose events and samples judge the faults of this proxy
    /// (default: the proxy's name).
    pub serves: Option<String>,
}

/// What a fault acts on (`target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `sim:<station>` or `sim:<station>/<tag>`.
    Sim {
        /// Station name of the simulator config.
        station: String,
        /// Tag of the station, or the whole station.
        tag: Option<String>,
    },
    /// `proxy:<name>`: a `[[proxy]]` of the scenario.
    Proxy(String),
    /// `attack:<proxy or station>`: a second Modbus client attacking that address.
    Attack(String),
    /// `gateway`: the gateway process (kill, disk full, clock jump).
    Gateway,
}

impl Target {
    /// Parses `sim:press/force`, `proxy:uplink`, `attack:press`, `gateway`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad = || format!("target {s:?}: expected `sim:<station>[/<tag>]`, `proxy:<name>`, `attack:<proxy or station>` or `gateway`");
        if s == "gateway" {
            return Ok(Target::Gateway);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "sim" => {
                let (station, tag) = match rest.split_once('/') {
                    Some((st, t)) if !st.is_empty() && !t.is_empty() => (st.to_string(), Some(t.to_string())),
                    Some(_) => return Err(bad()),
                    None => (rest.to_string(), None),
                };
                Ok(Target::Sim { station, tag })
            }
            "proxy" => Ok(Target::Proxy(rest.into())),
            "attack" => Ok(Target::Attack(rest.into())),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Sim { station, tag: Some(t) } => write!(f, "sim:{station}/{t}"),
            Target::Sim { station, tag: None } => write!(f, "sim:{station}"),
            Target::Proxy(n) => write!(f, "proxy:{n}"),
            Target::Attack(n) => write!(f, "attack:{n}"),
            Target::Gateway => f.write_str("gateway"),
        }
    }
}

/// What a fault is expected to produce (`expect = { … }`); every given key must hold for `pass`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Expect {
    /// `detected = false`: no detection may be attributed to the fault (e.g. a latency below
    /// the device's timeout); `true`: some detection is required. Default: required when
    /// `detector` or `detect_within` is given, else not judged.
    pub detected: Option<bool>,
    /// The detector that must detect it (`flat_line`, `device_down`, …; table in docs/lab-guide.md).
    pub detector: Option<String>,
    /// Longest time from injection to detection, ms.
    pub detect_within_ms: Option<u64>,
    /// Longest time from the end of the fault (its clearing) to recovery, ms.
    pub recover_within_ms: Option<u64>,
    /// Most samples lost (seq gaps) in the fault's window (default 0).
    pub samples_lost: u64,
    /// Most duplicates (a seq received twice) in the fault's window; unchecked when absent.
    pub duplicates: Option<u64>,
    /// `source`: the event source the fault is judged on (`device`, `device/tag`, a sink's
    /// name), when it is not the one the target implies.
    pub source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    detected: Option<bool>,
    detector: Option<String>,
    detect_within: Option<String>,
    recover_within: Option<String>,
    samples_lost: Option<u64>,
    duplicates: Option<u64>,
    source: Option<String>,
}

/// One `[[fault]]`.
#[derive(Debug, Clone)]
pub struct FaultSpec {
    /// Index in the file, from 1.
    pub index: usize,
    /// `at`: when it is injected, from time 0.
    pub at: Duration,
    /// `duration`: how long it lasts; none: until the end of the scenario (an attack: until it
    /// finishes). For `kill`, the time the gateway stays dead.
    pub duration: Option<Duration>,
    /// `kind`.
    pub kind: String,
    /// `target`.
    pub target: Target,
    /// The kind and its parameters, turned into what the target's owner takes.
    pub action: Action,
    /// The parameters as written (kind excluded), for the audit file and the report.
    pub params: serde_json::Value,
    /// `expect`.
    pub expect: Option<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    seed: u64,
    duration: String,
    warmup: Option<String>,
    drain: Option<String>,
    sim: Option<String>,
    gateway: String,
    #[serde(default)]
    proxy: Vec<ProxySpec>,
    #[serde(default)]
    fault: Vec<toml::Table>,
}

/// A humantime duration (`"30s"`, `"1m 30s"`), the key named in the error.
pub fn duration(text: &str, key: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{key} = {text:?}: {e} (write e.g. \"30s\", \"1m 30s\", \"500ms\")"))
}

impl Scenario {
    /// Reads and checks a scenario file; paths in it resolve against its folder.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read the scenario: {e}", path.display()))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string(), &dir)
    }

    /// Parses a scenario's text; `file` names it in errors, `dir` is its folder.
    pub fn parse(text: &str, file: &str, dir: &Path) -> Result<Scenario, String> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let top = |r: Result<Duration, String>| r.map_err(|e| format!("{file}: {e}"));
        let duration = top(duration(&raw.duration, "duration"))?;
        let warmup = top(raw.warmup.as_deref().map_or(Ok(Duration::from_secs(30)), |w| duration_key(w, "warmup")))?;
        let drain = top(raw.drain.as_deref().map_or(Ok(Duration::from_secs(3)), |w| duration_key(w, "drain")))?;
        let mut names = std::collections::HashSet::new();
        for p in &raw.proxy {
            if !names.insert(p.name.clone()) {
                return Err(format!("{file}: [[proxy]] {:?} / name: defined twice", p.name));
            }
        }
        let mut faults = Vec::new();
        for (i, t) in raw.fault.into_iter().enumerate() {
            let f = parse_fault(i + 1, t, &names).map_err(|e| format!("{file}: {e}"))?;
            if f.at > duration {
                return Err(format!("{file}: fault #{} ({}) / at: {:?} is after the scenario's duration", f.index, f.kind, f.at));
            }
            if f.duration == Some(Duration::ZERO) {
                return Err(format!(
                    "{file}: fault #{} ({}) / duration: 0s; leave it out (until the end, or 2 s for kill) or give a length",
                    f.index, f.kind
                ));
            }
            if let Some(d) = f.duration
                && f.at + d > duration
            {
                return Err(format!(
                    "{file}: fault #{} ({}) / duration: ends at {:?}, after the scenario's duration {:?}",
                    f.index,
                    f.kind,
                    f.at + d,
                    duration
                ));
            }
            faults.push(f);
        }
        // Gateway faults share one switch each (the clock offset, the disk switch) and a kill
        // restarts the gateway with none: they must not overlap.
        let spans: Vec<(usize, Duration, Duration)> = faults
            .iter()
            .filter(|f| matches!(f.target, Target::Gateway))
            .map(|f| (f.index, f.at, f.at + f.duration.unwrap_or(duration.saturating_sub(f.at))))
            .collect();
        for (i, a) in spans.iter().enumerate() {
            if let Some(b) = spans[i + 1..].iter().find(|b| b.1 < a.2 && a.1 < b.2) {
                return Err(format!(
                    "{file}: fault #{} / at: overlaps fault #{} on the gateway; gateway faults must follow each other",
                    b.0, a.0
                ));
            }
        }
        Ok(Scenario {
            name: raw.name,
            description: raw.description,
            seed: raw.seed,
            duration,
            warmup,
            drain,
            sim: raw.sim.map(|s| dir.join(s)),
            gateway: dir.join(raw.gateway),
            proxies: raw.proxy,
            faults,
            dir: dir.to_path_buf(),
        })
    }
}

fn duration_key(text: &str, key: &str) -> Result<Duration, String> {
    duration(text, key)
}

/// One `[[fault]]` table: the lab's own keys are taken out, the rest (`kind` and the
/// parameters) is handed to the target's fault type.
fn parse_fault(index: usize, mut t: toml::Table, proxies: &std::collections::HashSet<String>) -> Result<FaultSpec, String> {
    let kind = match t.get("kind") {
        Some(toml::Value::String(k)) => k.clone(),
        Some(_) => return Err(format!("fault #{index} / kind: a string expected")),
        None => return Err(format!("fault #{index}: `kind` is missing")),
    };
    let ctx = format!("fault #{index} ({kind})");
    let take_str = |key: &str, t: &mut toml::Table| -> Result<Option<String>, String> {
        match t.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(format!("{ctx} / {key}: a string expected, found {}", v.type_str())),
        }
    };
    let at = take_str("at", &mut t)?.ok_or_else(|| format!("{ctx}: `at` is missing (e.g. at = \"30s\")"))?;
    let at = duration(&at, "at").map_err(|e| format!("{ctx} / {e}"))?;
    let dur = take_str("duration", &mut t)?.map(|d| duration(&d, "duration")).transpose().map_err(|e| format!("{ctx} / {e}"))?;
    let target = take_str("target", &mut t)?.ok_or_else(|| format!("{ctx}: `target` is missing (e.g. target = \"sim:press/force\")"))?;
    let target = Target::parse(&target).map_err(|e| format!("{ctx} / {e}"))?;
    if let Target::Proxy(n) = &target
        && !proxies.contains(n)
    {
        return Err(format!("{ctx} / target: no [[proxy]] named {n:?}"));
    }
    let expect = match t.remove("expect") {
        None => None,
        Some(v) => Some(
            parse_expect(v)
                .map_err(|e| if e.starts_with("unknown field") { format!("{ctx} / expect: {e}") } else { format!("{ctx} / expect.{e}") })?,
        ),
    };
    let mut params = t.clone();
    params.remove("kind");
    let params = serde_json::to_value(&params).map_err(|e| format!("{ctx}: {e}"))?;
    let action = Action::parse(&target, t).map_err(|e| format!("{ctx} on {target}: {e}"))?;
    Ok(FaultSpec { index, at, duration: dur, kind, target, action, params, expect })
}

/// Every detector name an `expect.detector` may give (docs/lab-guide.md's table): the
/// gateway's (tag checks, device, sink, host, clock, security) and the simulator's.
pub const DETECTORS: &[&str] = &[
    "gross_range",
    "flat_line",
    "spike",
    "rate_of_change",
    "counter_reset",
    "stale",
    "bad_quality",
    "response_injection",
    "device_down",
    "device_degraded",
    "sink_down",
    "sink_backlog",
    "clock",
    "disk_full",
    "disk_low",
    "unclean_shutdown",
    "rogue_write",
    "token_burst",
    "command_refused",
    "unexpected_client",
    "function_code_scan",
    "unit_sweep",
    "request_flood",
];

fn parse_expect(v: toml::Value) -> Result<Expect, String> {
    let raw: RawExpect = v.try_into().map_err(|e: toml::de::Error| e.message().trim_end().to_string())?;
    let ms = |s: Option<String>, key: &str| -> Result<Option<u64>, String> {
        s.map(|s| duration(&s, key).map(|d| d.as_millis() as u64).map_err(|e| e.trim_start_matches('`').replacen('`', "", 1))).transpose()
    };
    let e = Expect {
        detected: raw.detected,
        detector: raw.detector,
        detect_within_ms: ms(raw.detect_within, "detect_within")?,
        recover_within_ms: ms(raw.recover_within, "recover_within")?,
        samples_lost: raw.samples_lost.unwrap_or(0),
        duplicates: raw.duplicates,
        source: raw.source,
    };
    if let Some(d) = &e.detector
        && !DETECTORS.contains(&d.as_str())
    {
        let hint = crate::diag::closest(d, DETECTORS).map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default();
        return Err(format!("detector: unknown detector {d:?}{hint}; known: {}", DETECTORS.join(", ")));
    }
    if e.detected == Some(false) && (e.detector.is_some() || e.detect_within_ms.is_some()) {
        return Err("detected: `detected = false` with `detector` or `detect_within` contradicts itself".into());
    }
    Ok(e)
}

impl Expect {
    /// Whether a detection is expected (`Some(true)`), forbidden (`Some(false)`) or not judged.
    pub fn wants_detection(&self) -> Option<bool> {
        self.detected.or((self.detector.is_some() || self.detect_within_ms.is_some()).then_some(true))
    }
}

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;
