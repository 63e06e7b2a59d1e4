//! `[lab]`: the gateway's fault switches for the fault bench (issue 13).
//!
//! Off unless the file says `faults = true`: a production gateway never
//! exposes a way to move its clock or fake a full disk. With it, the admin
//! listener (`[admin]`, token required: `auth = "none"` is refused) serves
//! `PUT /api/lab/clock` and `PUT /api/lab/disk_full`
//! (`crate::app::admin::lab`). Documented in `docs/configuration.md#lab`.

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, de_item, reject_unknown_keys};

/// `[lab]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabConfig {
    /// `faults`: the lab routes exist (default false).
    pub faults: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLab {
    faults: Option<Spanned<bool>>,
}

/// Keys of `[lab]`.
pub const LAB_KEYS: &[&str] = &["faults"];

/// Reads `[lab]`; `admin_open` is true when `[admin] auth = "none"`, which
/// the fault switches refuse (anyone on the host could then use them), and
/// `admin_remote` when `[admin] listen` is not a loopback address, which they
/// refuse too (the clock and disk switches are for a bench, never for the network).
pub fn parse_lab(mut item: Item<'_>, diag: &mut Diag<'_>, admin: Option<bool>, admin_remote: bool) -> Option<LabConfig> {
    reject_unknown_keys(&mut item, LAB_KEYS, diag, "lab");
    let raw: RawLab = de_item(item, diag, "lab")?;
    let faults = raw.faults.as_ref().is_some_and(|f| *f.get_ref());
    if let Some(f) = raw.faults.as_ref().filter(|f| *f.get_ref()) {
        match admin {
            None => diag.warn(f.span(), "lab / faults", "faults = true has no effect without [admin]: the switches are admin API routes"),
            Some(true) => {
                diag.error(
                    f.span(),
                    "lab / faults",
                    "faults = true needs the admin token: [admin] auth = \"none\" would let anyone on this host move the clock",
                );
                return None;
            }
            Some(false) if admin_remote => {
                diag.error(
                    f.span(),
                    "lab / faults",
                    "faults = true needs [admin] listen on loopback (127.0.0.1 or [::1]): the clock and disk switches must not be reachable from the network",
                );
                return None;
            }
            Some(false) => {}
        }
    }
    Some(LabConfig { faults })
}

#[cfg(test)]
mod tests {
    /// The clock and disk switches are refused on an admin listener off loopback
    /// (bad-input pass: `0.0.0.0` was accepted), and accepted on loopback.
    #[test]
    fn lab_faults_need_a_loopback_admin_listener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("admin.token");
        std::fs::write(&token, "0123456789abcdef0123456789abcdef").expect("write");
        let cfg = |listen: &str| {
            format!(
                "[gateway]\nid = \"x\"\n[admin]\nlisten = \"{listen}\"\ntoken_file = {:?}\n[lab]\nfaults = true\n",
                token.display().to_string()
            )
        };
        let e = crate::config::Config::parse(&cfg("0.0.0.0:9781"), "gw.toml", dir.path()).err().map(|e| e.to_string());
        let e = e.expect("refused off loopback");
        assert!(e.contains("gw.toml:7:") && e.contains("loopback"), "{e}");
        let ok = crate::config::Config::parse(&cfg("127.0.0.1:9781"), "gw.toml", dir.path());
        assert!(ok.is_ok_and(|c| c.lab.faults), "accepted on loopback");
    }
}
