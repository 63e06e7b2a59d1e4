//! `relais lab run`: starts the simulator and the proxies in this process and
//! the gateway as a child, subscribes to the gateway's MQTT output, plays the
//! timeline, stops everything and grades the run.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::attribute::Played;
use super::fill::{Vars, free_port};
use super::gateway::{GatewayProcess, GatewaySetup, generate};
use super::observe::{Collector, unix_ms};
use super::play::{Bench, KILL_DEFAULT, Undo, clear, fault_seed, inject};
use super::report::{Report, rfc3339};
use super::scenario::Scenario;
use crate::sim::{Sim, SimConfig};

/// Options of `relais lab run`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Where the report goes (created; `work/` inside holds the run's files).
    pub report: PathBuf,
    /// The MQTT broker, `mqtt://host:port`.
    pub broker: String,
}

/// One step of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Step {
    at: Duration,
    /// Clearings before injections at the same instant.
    inject: bool,
    fault: usize,
}

fn timeline(s: &Scenario) -> Vec<Step> {
    let mut v = Vec::new();
    for (i, f) in s.faults.iter().enumerate() {
        v.push(Step { at: f.at, inject: true, fault: i });
        let d =
            f.duration.or(matches!(f.action, super::action::Action::Gateway(super::action::GatewayFault::Kill)).then_some(KILL_DEFAULT));
        if let Some(d) = d {
            v.push(Step { at: (f.at + d).min(s.duration), inject: false, fault: i });
        }
    }
    v.sort();
    v
}

/// Appends one line to `injections.jsonl`.
fn audit(file: &mut std::fs::File, t0: SystemTime, action: &str, f: &super::scenario::FaultSpec, result: &Result<(), String>) {
    let now = SystemTime::now();
    let line = serde_json::json!({
        "at": rfc3339(unix_ms(now)),
        "t_ms": now.duration_since(t0).map_or(0, |d| d.as_millis() as u64),
        "action": action,
        "fault": f.index,
        "kind": f.kind,
        "target": f.target.to_string(),
        "params": f.params,
        "result": match result { Ok(()) => "ok".to_string(), Err(e) => format!("error: {e}") },
    });
    let _ = writeln!(file, "{line}");
}

/// Every `sim:` target names a station of the simulator, and a tag of it: a typo is an
/// error before the run, not a failed fault after it.
fn check_sim_targets(file: &Path, sc: &Scenario, sim: &Sim) -> Result<(), String> {
    for f in &sc.faults {
        let super::scenario::Target::Sim { station, tag } = &f.target else { continue };
        let names: Vec<&str> = sim.stations().iter().map(|s| s.cfg.name.as_str()).collect();
        let Some(st) = sim.station(station) else {
            let hint = crate::diag::closest(station, &names).map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default();
            return Err(format!(
                "{}: fault #{} ({}) / target: no station {station:?} in the simulator{hint}; stations: {}",
                file.display(),
                f.index,
                f.kind,
                names.join(", ")
            ));
        };
        if let Some(tag) = tag {
            let tags: Vec<&str> = st.cfg.tags.iter().map(|t| t.name.as_str()).collect();
            if !tags.contains(&tag.as_str()) {
                let hint = crate::diag::closest(tag, &tags).map(|c| format!(" (did you mean {c:?}?)")).unwrap_or_default();
                return Err(format!(
                    "{}: fault #{} ({}) / target: station {station:?} has no tag {tag:?}{hint}; its tags: {}",
                    file.display(),
                    f.index,
                    f.kind,
                    tags.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Runs a scenario and writes its report; the report says whether every fault passed.
pub async fn run(o: &LabOptions) -> anyhow::Result<Report> {
    let sc = Scenario::load(&o.scenario).map_err(anyhow::Error::msg)?;
    let url = crate::mqtt::BrokerUrl::parse(&o.broker).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
    std::fs::create_dir_all(&o.report).map_err(|e| anyhow::anyhow!("--report {}: {e}", o.report.display()))?;
    let dir = std::path::absolute(&o.report)?;
    let work = dir.join("work");
    let marker = work.join(".relais-lab");
    if work.exists() {
        if !marker.exists() {
            anyhow::bail!("{}: exists and was not made by relais lab run; give --report a new or former report folder", work.display());
        }
        std::fs::remove_dir_all(&work).map_err(|e| anyhow::anyhow!("{}: {e}", work.display()))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| anyhow::anyhow!("{}: {e}", work.display()))?;
    std::fs::write(&marker, "made by relais lab run; removed and made again by the next run with this --report\n")
        .map_err(|e| anyhow::anyhow!("{}: {e}", marker.display()))?;
    let run_id = format!("{:08x}", fastrand::u32(..));
    let name: String = sc.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let prefix = format!("relais-lab/{name}/{run_id}");
    let mut vars = Vars::default();
    for (k, v) in [
        ("broker", url.to_string()),
        ("broker_addr", format!("{}:{}", url.host, url.port)),
        ("data_dir", work.join("data").display().to_string()),
        ("prefix", prefix.clone()),
        ("run_id", run_id.clone()),
        ("scenario_dir", sc.dir.display().to_string()),
        ("work_dir", work.display().to_string()),
    ] {
        vars.fixed.insert(k.into(), v);
    }
    for p in &sc.proxies {
        let port = free_port()?;
        vars.proxies.insert(p.name.clone(), port);
    }
    // The simulator, in this process.
    let sim = match &sc.sim {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let text = vars.fill(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?;
            let cfg = SimConfig::parse(&text, &path.display().to_string(), &sc.dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(Sim::start(cfg).await?)
        }
        None => None,
    };
    // The proxies, in this process.
    let mut proxies = BTreeMap::new();
    for (i, p) in sc.proxies.iter().enumerate() {
        let upstream =
            vars.fill(&p.upstream, &format!("{} [[proxy]] {:?} / upstream", o.scenario.display(), p.name)).map_err(anyhow::Error::msg)?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], vars.proxies[&p.name]));
        let proxy = crate::proxy::Proxy::start(listen, upstream, p.protocol, fault_seed(sc.seed, 1000 + i)).await?;
        proxies.insert(p.name.clone(), proxy);
    }
    // The gateway's configuration.
    let gw_file = sc.gateway.display().to_string();
    let template = std::fs::read_to_string(&sc.gateway).map_err(|e| anyhow::anyhow!("{gw_file}: {e}"))?;
    let filled = vars.fill(&template, &gw_file).map_err(anyhow::Error::msg)?;
    // Placeholders are filled in place, so the lines are the user's: check the file as the
    // gateway will read it, before anything runs, and name the user's file and line.
    if let Err(e) = crate::config::Config::parse(&filled, &gw_file, &sc.dir) {
        anyhow::bail!("{e}");
    }
    if let Some(sim) = &sim {
        check_sim_targets(&o.scenario, &sc, sim).map_err(anyhow::Error::msg)?;
    }
    let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let token_file = work.join("admin.token");
    write_private(&token_file, &token)?;
    let lab_faults = sc
        .faults
        .iter()
        .any(|f| matches!(f.action, super::action::Action::Gateway(ref g) if !matches!(g, super::action::GatewayFault::Kill)));
    let setup = GatewaySetup { data_dir: work.join("data"), admin_port: free_port()?, token: token.clone(), lab_faults };
    let (text, sinks) = generate(&filled, &gw_file, &setup, &token_file).map_err(anyhow::Error::msg)?;
    let gw_config = work.join("gateway.toml");
    std::fs::write(&gw_config, text)?;
    // Listen first, then start the gateway.
    let collector = Collector::start(&url.host, url.port, &format!("{prefix}/#")).await?;
    let sim_watch = sim.as_ref().map(|s| {
        let (mut rx, observed) = (s.detections(), collector.observed.clone());
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(d) => Collector::add_sim_detection(&observed, d.at, d.detector, &d.station, &d.message),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "lab: simulator detections missed")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    });
    let mut gateway = GatewayProcess::new(gw_config, dir.join("gateway.log"), setup.admin_port, setup.token.clone());
    gateway.start()?;
    let mut first = collector.first_sample.clone();
    let warm = tokio::time::timeout(sc.warmup, async {
        // Stop waiting as soon as the gateway exits (a configuration it refuses).
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                r = first.wait_for(|v| *v) => return r.is_ok(),
                _ = tick.tick() => {
                    if gateway.exited().is_some() {
                        return false;
                    }
                }
            }
        }
    })
    .await;
    if !matches!(warm, Ok(true)) {
        let exited = gateway.exited();
        let tail = gateway.log_tail(20);
        gateway.stop(Duration::from_secs(5)).await;
        anyhow::bail!(
            "no sample from the gateway on {prefix}/# within {:?}{}; does its MQTT sink publish to url = \"${{broker}}\" with topic = \"${{prefix}}/{{device}}/{{tag}}\"? gateway log:\n{tail}",
            sc.warmup,
            exited.map(|s| format!(" (it exited: {s})")).unwrap_or_default()
        );
    }
    let (t0, t0_wall) = (Instant::now(), SystemTime::now());
    let mut audit_file = std::fs::File::create(dir.join("injections.jsonl"))?;
    let mut played: BTreeMap<usize, (i64, Option<i64>)> = BTreeMap::new();
    let mut errors: BTreeMap<usize, String> = BTreeMap::new();
    let mut active: BTreeMap<usize, Undo> = BTreeMap::new();
    {
        let mut bench = Bench { sim: sim.as_ref(), proxies: &proxies, gateway: &mut gateway, seed: sc.seed };
        for step in timeline(&sc) {
            tokio::time::sleep_until(t0 + step.at).await;
            let f = &sc.faults[step.fault];
            if step.inject {
                let now = unix_ms(SystemTime::now());
                let r = inject(f, &mut bench).await;
                audit(&mut audit_file, t0_wall, "inject", f, &r.as_ref().map(|_| ()).map_err(Clone::clone));
                played.insert(step.fault, (now, None));
                match r {
                    Ok(u) => {
                        active.insert(step.fault, u);
                    }
                    Err(e) => {
                        tracing::warn!(fault = f.index, error = %e, "lab: injection failed");
                        errors.insert(step.fault, format!("injection failed: {e}"));
                    }
                }
            } else if let Some(u) = active.remove(&step.fault) {
                let r = clear(u, &mut bench).await;
                audit(&mut audit_file, t0_wall, "clear", f, &r);
                if let Some(p) = played.get_mut(&step.fault) {
                    p.1 = Some(unix_ms(SystemTime::now()));
                }
                if let Err(e) = r {
                    errors.insert(step.fault, format!("clearing failed: {e}"));
                }
            }
        }
        tokio::time::sleep_until(t0 + sc.duration).await;
        // Faults without a duration last to the end: cleared now, not judged as cleared.
        for (i, u) in std::mem::take(&mut active) {
            let r = clear(u, &mut bench).await;
            audit(&mut audit_file, t0_wall, "clear (end of scenario)", &sc.faults[i], &r);
        }
    }
    let end_ms = unix_ms(SystemTime::now());
    tokio::time::sleep(sc.drain).await;
    gateway.stop(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let observed = collector.snapshot();
    drop(collector);
    if let Some(t) = sim_watch {
        t.abort();
    }
    drop(proxies);
    drop(sim);
    let mut plays: Vec<Played> = sc
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (inj, clr) = played.get(&i).copied().unwrap_or((end_ms, None));
            Played {
                injected_ms: inj,
                cleared_ms: clr,
                subject: super::grade::subject(f, &sc, &sinks),
                next_ms: None,
                expect: f.expect.clone(),
            }
        })
        .collect();
    super::grade::link_next(&mut plays, &sc);
    let report = super::grade::report(&sc, &plays, &errors, &observed, unix_ms(t0_wall), end_ms);
    report.write(&dir)?;
    Ok(report)
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}
