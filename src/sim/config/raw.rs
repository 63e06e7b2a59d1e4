//! The raw shape of a simulator config file: serde structs read section by
//! section, item by item (`crate::diag`), so every wrong key is reported with
//! its path and one mistake never hides the others.

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, array_items, array_items_of, de_item, peek_str, take_key};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSimSection {
    pub(super) tick: Option<Spanned<String>>,
    pub(super) expected_clients: Option<Spanned<Vec<String>>>,
}

/// The sections of a simulator config, each read on its own (errors name
/// their section, station and tag).
pub(super) struct RawSim {
    pub(super) sim: RawSimSection,
    pub(super) station: Vec<RawStation>,
    pub(super) opcua: Option<RawOpcUa>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOpcUa {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) namespace_uri: Option<Spanned<String>>,
    pub(super) security: Option<Spanned<Vec<String>>>,
    pub(super) pki_dir: Option<String>,
    pub(super) trust_client_certs: Option<bool>,
    pub(super) anonymous: Option<bool>,
    #[serde(default)]
    pub(super) users: Vec<RawUser>,
    pub(super) restart_after: Option<Spanned<String>>,
    pub(super) down_for: Option<Spanned<String>>,
    pub(super) scan: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) username: String,
    pub(super) password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStation {
    pub(super) name: Spanned<String>,
    pub(super) listen: Option<Spanned<String>>,
    pub(super) serial: Option<Spanned<String>>,
    pub(super) unit_id: Option<Spanned<i64>>,
    pub(super) tick: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) lockstep: bool,
    pub(super) unmapped: Option<Spanned<String>>,
    pub(super) faults: Option<RawFaults>,
    #[serde(default)]
    pub(super) tag: Vec<RawTag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFaults {
    pub(super) delay: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) silent: bool,
    #[serde(default)]
    pub(super) exceptions: Vec<RawException>,
    #[serde(default)]
    pub(super) refuse_functions: Vec<u8>,
    #[serde(default)]
    pub(super) refuse_single_fc16: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawException {
    pub(super) table: Spanned<String>,
    pub(super) start: Spanned<i64>,
    pub(super) count: Spanned<i64>,
    pub(super) code: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTag {
    pub(super) name: Spanned<String>,
    pub(super) table: Spanned<String>,
    pub(super) address: Spanned<i64>,
    #[serde(rename = "type")]
    pub(super) ty: Option<Spanned<String>>,
    pub(super) byte_order: Option<Spanned<String>>,
    pub(super) bit: Option<Spanned<i64>>,
    pub(super) scale: Option<f64>,
    pub(super) offset: Option<f64>,
    pub(super) signal: Spanned<RawSignal>,
    pub(super) opcua_status: Option<Spanned<i64>>,
}

/// A TOML number kept exact when it is an integer.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(super) fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawSignal {
    Lag {
        input: String,
        #[serde(default = "one")]
        gain: f64,
        #[serde(default)]
        offset: f64,
        tau: String,
        #[serde(default)]
        start: f64,
    },
    Constant {
        value: Option<Num>,
        text: Option<String>,
    },
    Sine {
        amplitude: f64,
        #[serde(default)]
        offset: f64,
        period: String,
        #[serde(default)]
        phase: f64,
    },
    Ramp {
        #[serde(default)]
        start: f64,
        slope: f64,
        min: f64,
        max: f64,
    },
    RandomWalk {
        start: f64,
        step: f64,
        min: f64,
        max: f64,
        seed: Option<u64>,
    },
    Counter {
        #[serde(default)]
        start: i64,
        #[serde(default = "one_int")]
        step: i64,
        wrap: Option<i64>,
    },
    Square {
        #[serde(default)]
        low: f64,
        #[serde(default = "one")]
        high: f64,
        period: String,
        #[serde(default = "half")]
        duty: f64,
    },
    Csv {
        file: String,
        column: String,
        delimiter: Option<String>,
        #[serde(default = "yes")]
        r#loop: bool,
    },
    Tick {},
}

fn one() -> f64 {
    1.0
}
fn one_int() -> i64 {
    1
}
fn half() -> f64 {
    0.5
}
fn yes() -> bool {
    true
}
/// (`crate::diag`): every wrong key is reported with its path; `None` on a
/// TOML syntax error.
pub(super) fn read_sections(text: &str, d: &mut Diag<'_>) -> Option<RawSim> {
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            d.toml(e, "", 0..0);
        }
        return None;
    }
    let mut raw = RawSim { sim: RawSimSection::default(), station: Vec::new(), opcua: None };
    for (k, v) in doc.into_inner() {
        match k.get_ref().as_ref() {
            "sim" => raw.sim = de_item(v, d, "sim").unwrap_or_default(),
            "opcua" => raw.opcua = de_item(v, d, "opcua"),
            "station" => {
                for (i, mut item) in array_items(v, d, "station").into_iter().enumerate() {
                    let key = peek_str(&item, "name").map_or_else(|| format!("station #{}", i + 1), |(n, _)| format!("station {n:?}"));
                    let tags = take_key(&mut item, "tag");
                    let Some(mut station) = de_item::<RawStation>(item, d, &key) else { continue };
                    for (j, t) in tags
                        .map(|t| array_items_of(t, d, &format!("{key} / tag"), "station.tag"))
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        let tkey =
                            peek_str(&t, "name").map_or_else(|| format!("{key} / tag #{}", j + 1), |(n, _)| format!("{key} / tag {n:?}"));
                        station.tag.extend(de_item::<RawTag>(t, d, &tkey));
                    }
                    raw.station.push(station);
                }
            }
            other => {
                d.error(k.span(), other, format!("unknown section `{other}`; a simulator configuration has [sim], [opcua] and [[station]]"))
            }
        }
    }
    Some(raw)
}
