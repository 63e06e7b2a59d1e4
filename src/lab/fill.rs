//! Placeholders in the simulator and gateway configs of a scenario and in
//! its `[[proxy]]` upstreams, filled by the runner:
//!
//! | placeholder | becomes |
//! |---|---|
//! | `${port.NAME}` | a free loopback TCP port (a number); the same NAME gives the same port in every file |
//! | `${proxy.NAME}` | `127.0.0.1:<port>`, where `[[proxy]]` NAME listens |
//! | `${broker}` | the broker's URL (`mqtt://127.0.0.1:1883`, or `--broker`) |
//! | `${broker_addr}` | the broker's `host:port` (a proxy's upstream) |
//! | `${data_dir}` | the gateway's data folder (`DIR/work/data`, fresh for every run) |
//! | `${prefix}` | the run's MQTT topic prefix (`relais-lab/<scenario>/<run id>`): the sink's `topic` must start with it |
//! | `${run_id}` | this run's id (8 hex digits), for an MQTT `client_id` of its own |
//! | `${scenario_dir}` | the scenario's folder, absolute (data files next to it) |
//! | `${work_dir}` | `DIR/work`, absolute |

use std::collections::BTreeMap;

/// The values of one run.
#[derive(Debug, Default)]
pub struct Vars {
    /// `${port.NAME}` already given.
    pub ports: BTreeMap<String, u16>,
    /// `${NAME}` fixed values (`broker`, `data_dir`, …).
    pub fixed: BTreeMap<String, String>,
    /// `${proxy.NAME}` → its listen port.
    pub proxies: BTreeMap<String, u16>,
}

/// A free TCP port on 127.0.0.1 (bound then released: the simulator or the gateway binds it
/// right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Vars {
    /// The port of `${port.NAME}` (allocated at first use).
    pub fn port(&mut self, name: &str) -> Result<u16, String> {
        if let Some(p) = self.ports.get(name) {
            return Ok(*p);
        }
        let p = free_port().map_err(|e| format!("no free port for ${{port.{name}}}: {e}"))?;
        self.ports.insert(name.to_string(), p);
        Ok(p)
    }

    /// `text` with every placeholder filled; `file` names it in errors.
    pub fn fill(&mut self, text: &str, file: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                let line = text[..text.len() - rest.len() + i].lines().count().max(1);
                return Err(format!("{file}:{line}: `${{` without a closing `}}`"));
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
                // Not a placeholder (`${…}` in a comment): kept as written.
                out.push_str("${");
                rest = after;
                continue;
            }
            let value = if let Some(p) = name.strip_prefix("port.") {
                self.port(p)?.to_string()
            } else if let Some(p) = name.strip_prefix("proxy.") {
                match self.proxies.get(p) {
                    Some(port) => format!("127.0.0.1:{port}"),
                    None => return Err(format!("{file}: ${{{name}}}: the scenario has no [[proxy]] named {p:?}")),
                }
            } else if let Some(v) = self.fixed.get(name) {
                v.clone()
            } else {
                let known: Vec<String> = self.fixed.keys().map(|k| format!("${{{k}}}")).collect();
                return Err(format!(
                    "{file}: unknown placeholder ${{{name}}} (known: ${{port.NAME}}, ${{proxy.NAME}}, {})",
                    known.join(", ")
                ));
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_shared_and_unknown_names_refused() {
        let mut v = Vars::default();
        v.fixed.insert("broker".into(), "mqtt://127.0.0.1:1883".into());
        v.proxies.insert("uplink".into(), 4000);
        let a = v.fill("listen = \"127.0.0.1:${port.line}\"\nurl = \"${broker}\"", "sim.toml").unwrap();
        let b = v.fill("endpoint = \"127.0.0.1:${port.line}\" via ${proxy.uplink}", "gw.toml").unwrap();
        let p = v.ports["line"];
        assert_eq!(a, format!("listen = \"127.0.0.1:{p}\"\nurl = \"mqtt://127.0.0.1:1883\""));
        assert_eq!(b, format!("endpoint = \"127.0.0.1:{p}\" via 127.0.0.1:4000"));
        let e = v.fill("x = \"${data}\"", "gw.toml").unwrap_err();
        assert!(e.contains("gw.toml") && e.contains("${data}") && e.contains("${broker}"), "{e}");
        let e = v.fill("x = \"${proxy.nope}\"", "gw.toml").unwrap_err();
        assert!(e.contains("no [[proxy]] named \"nope\""), "{e}");
        assert!(v.fill("a\nb ${port.x", "f.toml").unwrap_err().starts_with("f.toml:2:"));
        assert_eq!(v.fill("# the ${…} placeholders", "f.toml").unwrap(), "# the ${…} placeholders");
    }
}
