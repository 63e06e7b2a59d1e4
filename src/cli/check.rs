//! `relais check`: validate a configuration and print the plan.

use std::path::Path;
use std::process::ExitCode;

use super::load;
use crate::config::Config;
use crate::out;

/// `relais check`: errors (exit 2) or the plan (exit 0).
pub(super) fn run(path: &Path) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    out!("{}", render_plan(&cfg));
    ExitCode::SUCCESS
}

/// The plan printed by `relais check`.
pub fn render_plan(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for w in &cfg.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let b = &cfg.buffer;
    let _ = writeln!(
        s,
        "gateway {}: data_dir {}, buffer max {} / {}{}, durability {}",
        cfg.gateway.id,
        cfg.gateway.data_dir.display(),
        crate::units::format_size(b.max_bytes),
        crate::units::format_duration(b.max_age),
        if b.max_rows > 0 { format!(" / {} rows", b.max_rows) } else { String::new() },
        b.durability
    );
    // Every component describes itself; sinks list the devices' and detectors' tags.
    let tags: Vec<(String, String)> = cfg
        .devices
        .iter()
        .flat_map(|d| d.component().tags())
        .chain(cfg.detectors.iter().flat_map(crate::component::Component::tags))
        .collect();
    let cx = crate::component::DescribeCx { gateway: &cfg.gateway.id, tags: &tags };
    let components = cfg
        .devices
        .iter()
        .map(|d| d.component())
        .chain(cfg.sources.iter().map(|c| c.component()))
        .chain(cfg.sinks.iter().map(|c| c.component()))
        .chain(cfg.detectors.iter().map(|c| c as &dyn crate::component::Component))
        .chain(cfg.rules.iter().map(|c| c as &dyn crate::component::Component))
        .chain(cfg.commands.iter().map(|c| c as &dyn crate::component::Component));
    for c in components {
        let _ = write!(s, "\n{}", c.describe(&cx));
    }
    if let Some(a) = &cfg.admin {
        let auth = match a.auth {
            crate::config::AdminAuth::Token(_) => "bearer token",
            crate::config::AdminAuth::None => "no token",
        };
        let _ =
            writeln!(s, "\nadmin listener http://{}/ ({auth}): dashboard /, /metrics, /healthz, /readyz, /api/… (docs/api.md)", a.listen);
    }
    if let Some(h) = &cfg.history {
        let _ = writeln!(s, "\n{}", h.describe());
    }
    s
}
