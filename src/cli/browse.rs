//! `relais browse`: walk an OPC UA server's address space.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::runtime;
use crate::config::{Config, DeviceConfig};
use crate::out;

/// The OPC UA server of `relais browse` and `relais probe opcua`: a URL with security and
/// identity on the command line, or a configured device (`--config`, `--device`).
#[derive(clap::Args, Debug)]
pub struct OpcUaTarget {
    /// Server URL, `opc.tcp://host:port[/path]` (or use --config and --device).
    pub url: Option<String>,
    /// Take endpoint, security and identity from this configuration's device.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The `protocol = "opcua"` device of --config.
    #[arg(long)]
    pub device: Option<String>,
    /// Security policy: None (default), Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss.
    #[arg(long)]
    pub security_policy: Option<String>,
    /// Security mode: None, Sign, SignAndEncrypt (default: SignAndEncrypt with a policy).
    #[arg(long)]
    pub security_mode: Option<String>,
    /// User name (the password is read from the environment variable of --password-env).
    #[arg(long)]
    pub username: Option<String>,
    /// Environment variable holding the password.
    #[arg(long, default_value = "RELAIS_OPCUA_PASSWORD")]
    pub password_env: String,
    /// PKI folder (the gateway's certificate and trust list).
    #[arg(long, default_value = "relais-data/pki")]
    pub pki_dir: PathBuf,
}

/// The device to browse (from --config/--device or the command line), its
/// PKI folder and the gateway id of its certificate.
pub(super) fn browse_target(a: OpcUaTarget) -> Result<(crate::sources::opcua::config::OpcUaDevice, PathBuf, String), String> {
    if let Some(path) = &a.config {
        if a.security_policy.is_some() || a.security_mode.is_some() || a.username.is_some() {
            return Err(
                "--security-policy, --security-mode and --username go without --config: with --config the device's own settings are used"
                    .into(),
            );
        }
        let cfg = Config::load(path).map_err(|e| e.to_string())?;
        let devs: Vec<_> = cfg
            .devices
            .iter()
            .filter_map(|d| match d {
                DeviceConfig::OpcUa(o) => Some(o),
                _ => None,
            })
            .collect();
        let dev = match (&a.device, devs.as_slice()) {
            (Some(n), _) => devs.iter().find(|d| d.name == *n).ok_or_else(|| {
                if cfg.devices.iter().any(|d| d.name() == n.as_str()) {
                    format!(
                        "device {n:?} in {} is not an OPC UA device (protocol = \"opcua\"); browse reads OPC UA servers only",
                        path.display()
                    )
                } else {
                    format!("{} has no device {n:?}", path.display())
                }
            })?,
            (None, [one]) => one,
            (None, []) => return Err(format!("{} has no device with protocol = \"opcua\"", path.display())),
            (None, _) => return Err(format!("{} has several opcua devices; choose one with --device", path.display())),
        };
        let mut dev = (*dev).clone();
        if let Some(u) = a.url {
            dev.endpoint = u;
        }
        let pki = dev.pki_dir.clone().unwrap_or_else(|| cfg.gateway.data_dir.join("pki"));
        return Ok((dev, pki, cfg.gateway.id.clone()));
    }
    let url = a.url.ok_or("give the server URL (opc.tcp://host:port) or --config with an opcua device")?;
    let mode = a.security_mode.as_deref().map_or(String::new(), |m| format!("security_mode = {m:?}\n"));
    let user = match &a.username {
        Some(u) => format!("username = {u:?}\npassword_env = {:?}\n", a.password_env),
        None => String::new(),
    };
    let toml = format!(
        "[gateway]\nid = \"relais\"\n[[device]]\nname = \"server\"\nprotocol = \"opcua\"\nendpoint = {url:?}\nsecurity_policy = {:?}\n{mode}{user}",
        a.security_policy.as_deref().unwrap_or("None")
    );
    // Errors of this made-up config name the argument, not a line of it.
    let cfg = Config::parse(&toml, "command line", Path::new(".")).map_err(|errs| {
        errs.0
            .iter()
            .map(|e| {
                let arg = match e.key.rsplit(" / ").next().unwrap_or("") {
                    "endpoint" => "the URL",
                    "security_policy" => "--security-policy",
                    "security_mode" => "--security-mode",
                    "username" | "password" | "password_env" => "--username/--password-env",
                    _ => "browse",
                };
                format!("{arg}: {}", e.message)
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    match cfg.devices.into_iter().next() {
        Some(DeviceConfig::OpcUa(d)) => Ok((d, a.pki_dir, "relais".to_string())),
        _ => Err("bad browse arguments".into()),
    }
}

/// Browses from `node` down `depth` levels; prints the tree, or with
/// `snippet` the `[[device.tag]]` entries to paste.
pub(super) fn run(args: OpcUaTarget, node: &str, depth: usize, snippet: bool, all: bool) -> ExitCode {
    let configured = args.device.is_some();
    let (dev, pki_dir, gateway_id) = match browse_target(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let run = async {
        let pki = crate::sources::opcua::client::Pki::open(&pki_dir, &gateway_id)?;
        pki.trust(&dev.trust)?;
        crate::sources::opcua::browse::browse(&dev, &pki, &gateway_id, node, depth, all).await
    };
    match runtime().block_on(run) {
        Ok(found) if snippet => {
            // Without a configured device, name it after a string --node (`s=robot` → robot).
            let name = match (configured, node.rsplit_once(";s=").map(|(_, id)| id).or_else(|| node.strip_prefix("s="))) {
                (false, Some(id)) if !id.is_empty() => {
                    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
                }
                _ => dev.name.clone(),
            };
            out!("{}", crate::sources::opcua::browse::render_snippet(&found, &name, &dev.endpoint));
            ExitCode::SUCCESS
        }
        Ok(found) => {
            out!("{}", crate::sources::opcua::browse::render_tree(&found));
            if found.is_empty() {
                eprintln!("no objects or variables below {node}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("browse failed: {e:#}");
            ExitCode::from(1)
        }
    }
}
