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
/// the fault switches refuse (anyone on the host could then use them).
pub fn parse_lab(mut item: Item<'_>, diag: &mut Diag<'_>, admin: Option<bool>) -> Option<LabConfig> {
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
            Some(false) => {}
        }
    }
    Some(LabConfig { faults })
}
