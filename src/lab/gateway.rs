//! The gateway under test: its generated configuration, the child process
//! (`relais run --config <generated>`, so `kill -9` is real), and the lab
//! switches of its admin API (`PUT /api/lab/clock`, `PUT /api/lab/disk_full`).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the runner sets in the scenario's gateway config.
pub struct GatewaySetup {
    /// The data folder.
    pub data_dir: PathBuf,
    /// The admin listener's port on 127.0.0.1.
    pub admin_port: u16,
    /// The admin token.
    pub token: String,
    /// Switch `[lab] faults = true` on (host faults).
    pub lab_faults: bool,
}

/// The generated configuration: the filled template with `[gateway] data_dir`,
/// `[admin] listen` / `token_file` and `[lab] faults` set by the lab. Returns the TOML
/// text and the names of its sinks.
pub fn generate(filled: &str, file: &str, setup: &GatewaySetup, token_file: &Path) -> Result<(String, Vec<String>), String> {
    let mut t: toml::Table = toml::from_str(filled).map_err(|e| format!("{file} (placeholders filled): {e}"))?;
    let table = |t: &mut toml::Table, k: &str| -> Result<toml::Table, String> {
        match t.remove(k) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(x)) => Ok(x),
            Some(_) => Err(format!("{file}: `{k}` must be a table ([{k}])")),
        }
    };
    let mut gw = table(&mut t, "gateway")?;
    gw.insert("data_dir".into(), setup.data_dir.display().to_string().into());
    t.insert("gateway".into(), gw.into());
    let mut admin = table(&mut t, "admin")?;
    admin.insert("listen".into(), format!("127.0.0.1:{}", setup.admin_port).into());
    admin.insert("token_file".into(), token_file.display().to_string().into());
    admin.remove("token_env");
    admin.remove("auth");
    t.insert("admin".into(), admin.into());
    if setup.lab_faults {
        let mut lab = table(&mut t, "lab")?;
        lab.insert("faults".into(), true.into());
        t.insert("lab".into(), lab.into());
    }
    let sinks: Vec<String> = match t.get("sink") {
        Some(toml::Value::Array(a)) => a.iter().filter_map(|s| s.get("name")?.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    if !t
        .get("sink")
        .and_then(toml::Value::as_array)
        .is_some_and(|a| a.iter().any(|s| s.get("type").and_then(|v| v.as_str()) == Some("mqtt")))
    {
        return Err(format!(
            "{file}: the gateway needs an MQTT sink (type = \"mqtt\", url = \"${{broker}}\", topic = \"${{prefix}}/{{device}}/{{tag}}\"): the lab grades what it publishes"
        ));
    }
    let text = toml::to_string(&t).map_err(|e| format!("{file}: {e}"))?;
    Ok((text, sinks))
}

/// The gateway child process.
pub struct GatewayProcess {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    admin: String,
    token: String,
    http: reqwest::Client,
}

impl GatewayProcess {
    /// A gateway on `config`, logging to `log` (appended: every start), admin API on `admin_port`.
    pub fn new(config: PathBuf, log: PathBuf, admin_port: u16, token: String) -> GatewayProcess {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        GatewayProcess { config, log, child: None, admin: format!("http://127.0.0.1:{admin_port}"), token, http }
    }

    /// Starts `relais run --config <generated>` (this same executable).
    pub fn start(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe()?;
        let log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        tracing::info!(pid = child.id(), "lab: gateway started");
        self.child = Some(child);
        Ok(())
    }

    /// The gateway's exit status if it stopped by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// `kill -9`, and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            tracing::info!(pid = c.id(), "lab: gateway killed (SIGKILL)");
        }
    }

    /// SIGTERM (flush and exit), SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else { return };
        if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("lab: the gateway did not stop within {grace:?} of SIGTERM; killed");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// `PUT <path>` with `body` on the admin API; an error names the route and the answer.
    pub async fn put(&self, path: &str, body: serde_json::Value) -> Result<(), String> {
        let url = format!("{}{path}", self.admin);
        let r = self
            .http
            .put(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("PUT {path}: {e}"))?;
        if r.status().is_success() {
            return Ok(());
        }
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        Err(format!("PUT {path}: {status} {}", text.trim()))
    }

    /// The last lines of the gateway's log (for an error message).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
