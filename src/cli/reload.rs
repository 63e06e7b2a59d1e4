//! `relais reload --config FILE`: asks the running daemon to read its
//! configuration file again, through `POST /api/reload` on its admin
//! listener (address and token from `[admin]` in FILE), and prints what
//! changed or every error.
//!
//! Exit codes: 0 applied; 2 the file is invalid (the daemon's errors are
//! printed; the running configuration stays) or has no `[admin]` section;
//! 1 no daemon answers, the token is refused, a change needs a restart or a
//! component failed to start.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::{AdminAuth, AdminConfig, Config};
use crate::outln;
use crate::util::exit::{CONFIG, FAILURE};

/// `relais reload`.
pub(super) fn run(path: &Path) -> ExitCode {
    let admin = match admin_of(path) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(post(&admin)) {
        Ok((code, body)) => report(code, &body, &admin, path),
        Err(e) => {
            eprintln!(
                "no relais daemon answers on http://{}/ ([admin] listen in {}): {e}\nis it running (systemctl status relais)? Its configuration is only reloaded while it runs.",
                admin.listen,
                path.display()
            );
            ExitCode::from(FAILURE)
        }
    }
}

/// The `[admin]` section of `path`. When the file has errors elsewhere, its
/// `[admin]` section alone is read (the daemon then reports the errors);
/// when that fails too, the errors are printed here.
fn admin_of(path: &Path) -> Result<AdminConfig, ExitCode> {
    let found = match Config::load(path) {
        Ok(c) => c.admin,
        Err(errors) => match admin_only(path) {
            Some(a) => Some(a),
            None => {
                eprintln!("{errors}");
                eprintln!("\n{} error(s) in {}; nothing was sent to the daemon", errors.0.len(), path.display());
                return Err(ExitCode::from(CONFIG));
            }
        },
    };
    found.ok_or_else(|| {
        eprintln!(
            "{}: no [admin] section: relais reload talks to the daemon's admin listener; add [admin] (docs/configuration.md) or send SIGHUP (systemctl reload relais)",
            path.display()
        );
        ExitCode::from(CONFIG)
    })
}

/// Reads `[admin]` alone through the real parser (a configuration with only
/// a `[gateway]` id and that section).
fn admin_only(path: &Path) -> Option<AdminConfig> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    let admin = table.get("admin")?.clone();
    let mut doc = toml::Table::new();
    doc.insert("gateway".into(), toml::Value::Table(toml::Table::from_iter([("id".to_string(), toml::Value::from("reload"))])));
    doc.insert("admin".into(), admin);
    let base = path.parent().unwrap_or(Path::new("."));
    Config::parse(&toml::to_string(&doc).ok()?, &path.display().to_string(), base).ok()?.admin
}

async fn post(admin: &AdminConfig) -> anyhow::Result<(u16, Value)> {
    // The reload may stop sinks, which get their delivery grace: wait long enough.
    let addr = super::admin_client::connect_addr(admin.listen);
    let mut req = super::admin_client::client().post(format!("http://{addr}/api/reload")).timeout(Duration::from_secs(60));
    if let AdminAuth::Token(t) = &admin.auth {
        req = req.bearer_auth(t.expose());
    }
    let r = req.send().await?;
    let code = r.status().as_u16();
    let text = r.text().await?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// Prints the daemon's answer; the exit code.
fn report(code: u16, body: &Value, admin: &AdminConfig, path: &Path) -> ExitCode {
    let list = |k: &str| -> Vec<String> {
        body.get(k)
            .and_then(Value::as_array)
            .map(|v| v.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect())
            .unwrap_or_default()
    };
    let file = body.get("file").and_then(Value::as_str).unwrap_or("?");
    match code {
        200 | 500 => {
            outln!("reloaded {file}");
            for (what, k) in [
                ("changed (restarted)", "changed"),
                ("added", "added"),
                ("removed", "removed"),
                ("restarted with a changed one", "restarted_along"),
            ] {
                let v = list(k);
                if !v.is_empty() {
                    outln!("  {what}: {}", v.join(", "));
                }
            }
            outln!("  unchanged: {}", body.get("unchanged").and_then(Value::as_u64).unwrap_or(0));
            list("warnings").iter().for_each(|w| outln!("warning: {w}"));
            let failed = list("failed");
            failed.iter().for_each(|f| eprintln!("failed to start: {f}"));
            if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(FAILURE) }
        }
        422 => {
            let errors: Vec<String> = body
                .get("errors")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(|e| e.get("text").and_then(Value::as_str).map(str::to_string)).collect())
                .unwrap_or_default();
            errors.iter().for_each(|e| eprintln!("{e}"));
            eprintln!("\n{} error(s) in {file}; the daemon keeps its running configuration", errors.len());
            ExitCode::from(CONFIG)
        }
        401 => {
            eprintln!(
                "the daemon on http://{}/ refused the token (401): is [admin] token_file in {} the daemon's?",
                admin.listen,
                path.display()
            );
            ExitCode::from(FAILURE)
        }
        _ => {
            let msg = body.get("message").and_then(Value::as_str).map_or_else(|| body.to_string(), str::to_string);
            eprintln!("not reloaded (HTTP {code}): {msg}");
            list("errors").iter().for_each(|e| eprintln!("  {e}"));
            ExitCode::from(FAILURE)
        }
    }
}
