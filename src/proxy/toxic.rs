//! The toxics (Toxiproxy's vocabulary: latency, bandwidth, timeout as black
//! hole, reset_peer, slow_close, slicer, limit_data; plus half open, down and
//! the Modbus- and MQTT-aware ones), their serde shape (the lab's scenario
//! `[[fault]]` table and `relais proxy --toxic`) and the set of active ones a
//! connection reads.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Which way a toxic acts. `upstream` is client → server (requests, MQTT
/// PUBLISH from the gateway), `downstream` server → client (responses, PUBACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both ways (the default).
    #[default]
    Both,
    /// Client → server.
    Upstream,
    /// Server → client.
    Downstream,
}

impl Direction {
    /// True when a toxic with this direction acts on traffic flowing `way`
    /// (`Upstream` or `Downstream`).
    pub fn covers(self, way: Direction) -> bool {
        self == Direction::Both || self == way
    }
}

/// A network fault of the proxy. Serde: tagged by `kind` (snake_case),
/// durations as humantime strings (`"50ms"`), unknown fields refused. Every
/// toxic acts on the connections open when it is set and on new ones, and
/// stops when cleared; `src/proxy/README.md` says what the gateway sees.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Toxic {
    /// Each chunk is held `latency` ± `jitter` (uniform, seeded) before it is
    /// forwarded, in `direction` (default both).
    Latency {
        /// Added delay.
        #[serde(deserialize_with = "duration")]
        latency: Duration,
        /// Half-width of the uniform spread around `latency` (default 0).
        #[serde(default, deserialize_with = "duration")]
        jitter: Duration,
        /// Which way (default both).
        #[serde(default)]
        direction: Direction,
    },
    /// At most `bytes_per_s` bytes per second each way.
    Bandwidth {
        /// Rate cap in bytes per second, per direction (0 is taken as 1).
        bytes_per_s: u64,
    },
    /// Connections are accepted and kept open, nothing is forwarded (bytes are
    /// dropped), nothing is closed.
    BlackHole,
    /// Every connection is reset (RST: `SO_LINGER` 0, then close), existing
    /// and new ones, while set.
    Reset,
    /// When one end closes, the close reaches the other end `delay` later.
    SlowClose {
        /// Delay before the close is passed on.
        #[serde(deserialize_with = "duration")]
        delay: Duration,
    },
    /// Data is written in segments of `bytes` with `delay` between them.
    Slicer {
        /// Segment size in bytes (0 is taken as 1).
        bytes: usize,
        /// Pause between segments.
        #[serde(default, deserialize_with = "duration")]
        delay: Duration,
    },
    /// A connection is closed (FIN, both ways) once `bytes` bytes in all were
    /// forwarded on it while the toxic is set.
    LimitData {
        /// Bytes, both directions together.
        bytes: u64,
    },
    /// The downstream way is dead (the server's bytes are dropped, its close
    /// is not passed on), the upstream way alive: requests arrive, answers
    /// never come back.
    HalfOpen,
    /// The service is down: new connections are refused (the listener is
    /// closed) and existing ones cut (FIN).
    Down,
    /// Modbus TCP: each response is held and delivered right after the next
    /// request was forwarded (one request late).
    LateResponse,
    /// Modbus TCP: the transaction id of each response is changed (bit 15
    /// flipped).
    WrongTid,
    /// Modbus TCP: each response is sent twice.
    DuplicateResponse,
    /// MQTT: a CONNECT is answered with CONNACK return code 5 "not authorized"
    /// (MQTT 3.1.1 §3.2.2.3) and the connection closed; open connections are
    /// closed so their clients reconnect and meet the refusal.
    RefuseConnect,
}

impl Toxic {
    /// The toxic's `kind` as written in TOML.
    pub fn kind(&self) -> &'static str {
        match self {
            Toxic::Latency { .. } => "latency",
            Toxic::Bandwidth { .. } => "bandwidth",
            Toxic::BlackHole => "black_hole",
            Toxic::Reset => "reset",
            Toxic::SlowClose { .. } => "slow_close",
            Toxic::Slicer { .. } => "slicer",
            Toxic::LimitData { .. } => "limit_data",
            Toxic::HalfOpen => "half_open",
            Toxic::Down => "down",
            Toxic::LateResponse => "late_response",
            Toxic::WrongTid => "wrong_tid",
            Toxic::DuplicateResponse => "duplicate_response",
            Toxic::RefuseConnect => "refuse_connect",
        }
    }

    /// Parses the command line form `KIND[,key=value…]`, e.g.
    /// `latency,latency=50ms,jitter=10ms,direction=downstream`: values that
    /// read as integers are numbers, the others strings.
    ///
    /// # Errors
    /// An unknown kind or key, a missing parameter or a bad value, as text.
    pub fn parse_cli(s: &str) -> Result<Toxic, String> {
        let mut parts = s.split(',').map(str::trim);
        let kind = parts.next().filter(|k| !k.is_empty()).ok_or("empty toxic")?;
        let mut table = toml::Table::new();
        table.insert("kind".into(), toml::Value::String(kind.replace('-', "_")));
        for kv in parts.filter(|p| !p.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("{kv:?}: write key=value"))?;
            let v = v.trim();
            let value = v.parse::<i64>().map_or_else(|_| toml::Value::String(v.into()), toml::Value::Integer);
            table.insert(k.trim().into(), value);
        }
        Toxic::from_table(table).map_err(|e| format!("toxic {s:?}: {e}"))
    }

    /// Reads a toxic from a TOML table (`kind` and the parameters), strictly:
    /// serde's `deny_unknown_fields` lets a kind without parameters
    /// (`black_hole`, `reset`…) ignore extra keys; this refuses them too.
    ///
    /// # Errors
    /// An unknown kind or key, a missing parameter or a bad value, as text.
    pub fn from_table(table: toml::Table) -> Result<Toxic, String> {
        let extra: Vec<String> = table.keys().filter(|k| *k != "kind").cloned().collect();
        let t = Toxic::deserialize(toml::Value::Table(table)).map_err(|e| e.message().to_string())?;
        let unit = matches!(
            t,
            Toxic::BlackHole
                | Toxic::Reset
                | Toxic::HalfOpen
                | Toxic::Down
                | Toxic::LateResponse
                | Toxic::WrongTid
                | Toxic::DuplicateResponse
                | Toxic::RefuseConnect
        );
        match extra.first() {
            Some(k) if unit => Err(format!("unknown field `{k}`: {} takes no parameter", t.kind())),
            _ => Ok(t),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::units::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The handle of a toxic set on a proxy, for [`Proxy::clear`](super::Proxy::clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToxicId(pub(super) u64);

/// The toxics active at one instant, as the connections see them (a new value
/// on every set or clear). When several toxics of one kind are set, the last
/// one set wins (per direction for latency).
#[derive(Debug, Default)]
pub struct Active {
    pub(super) list: Vec<(ToxicId, Toxic)>,
}

impl Active {
    /// No toxic: connections take the plain copy.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn find<T>(&self, f: impl Fn(&Toxic) -> Option<T>) -> Option<T> {
        self.list.iter().rev().find_map(|(_, t)| f(t))
    }

    fn has(&self, want: &Toxic) -> bool {
        self.list.iter().any(|(_, t)| t == want)
    }

    /// (latency, jitter) acting on `way`.
    pub fn latency(&self, way: Direction) -> Option<(Duration, Duration)> {
        self.find(|t| match t {
            Toxic::Latency { latency, jitter, direction } if direction.covers(way) => Some((*latency, *jitter)),
            _ => None,
        })
    }

    /// Bytes per second (at least 1).
    pub fn bandwidth(&self) -> Option<u64> {
        self.find(|t| match t {
            Toxic::Bandwidth { bytes_per_s } => Some((*bytes_per_s).max(1)),
            _ => None,
        })
    }

    /// (segment bytes ≥ 1, delay).
    pub fn slicer(&self) -> Option<(usize, Duration)> {
        self.find(|t| match t {
            Toxic::Slicer { bytes, delay } => Some(((*bytes).max(1), *delay)),
            _ => None,
        })
    }

    /// Delay before a close is passed on.
    pub fn slow_close(&self) -> Option<Duration> {
        self.find(|t| match t {
            Toxic::SlowClose { delay } => Some(*delay),
            _ => None,
        })
    }

    /// Byte budget of a connection.
    pub fn limit_data(&self) -> Option<u64> {
        self.find(|t| match t {
            Toxic::LimitData { bytes } => Some(*bytes),
            _ => None,
        })
    }

    /// Nothing flows on `way` (black hole both ways, half open downstream).
    pub fn dead(&self, way: Direction) -> bool {
        self.has(&Toxic::BlackHole) || (way == Direction::Downstream && self.has(&Toxic::HalfOpen))
    }

    /// Every connection must be reset now.
    pub fn reset(&self) -> bool {
        self.has(&Toxic::Reset)
    }

    /// The service is down.
    pub fn down(&self) -> bool {
        self.has(&Toxic::Down)
    }

    /// MQTT connections are refused.
    pub fn refuse_connect(&self) -> bool {
        self.has(&Toxic::RefuseConnect)
    }

    /// The Modbus-aware toxics: (late_response, wrong_tid, duplicate_response).
    pub fn modbus(&self) -> (bool, bool, bool) {
        (self.has(&Toxic::LateResponse), self.has(&Toxic::WrongTid), self.has(&Toxic::DuplicateResponse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_command_line_form() {
        let t = Toxic::parse_cli("latency,latency=50ms,jitter=10ms,direction=downstream").expect("valid");
        let want =
            Toxic::Latency { latency: Duration::from_millis(50), jitter: Duration::from_millis(10), direction: Direction::Downstream };
        assert_eq!(t, want);
        assert_eq!(Toxic::parse_cli("bandwidth,bytes_per_s=1000"), Ok(Toxic::Bandwidth { bytes_per_s: 1000 }));
        assert_eq!(Toxic::parse_cli("black-hole"), Ok(Toxic::BlackHole));
        assert_eq!(Toxic::parse_cli("wrong_tid").map(|t| t.kind()), Ok("wrong_tid"));
        assert!(Toxic::parse_cli("latency").is_err(), "latency needs its parameter");
        assert!(Toxic::parse_cli("reset,delay=1s").is_err(), "unknown field");
        assert!(Toxic::parse_cli("teleport").is_err());
        assert!(Toxic::parse_cli("slow_close,delay=soon").is_err());
    }

    #[test]
    fn parses_the_scenario_table_and_last_set_wins() {
        let t: Toxic = toml::from_str("kind = \"slicer\"\nbytes = 1\ndelay = \"1ms\"").expect("valid");
        let mut a = Active::default();
        a.list.push((ToxicId(1), t));
        a.list.push((ToxicId(2), Toxic::Slicer { bytes: 0, delay: Duration::ZERO }));
        a.list.push((
            ToxicId(3),
            Toxic::Latency { latency: Duration::from_millis(5), jitter: Duration::ZERO, direction: Direction::Upstream },
        ));
        assert_eq!(a.slicer(), Some((1, Duration::ZERO)));
        assert!(a.latency(Direction::Downstream).is_none());
        assert_eq!(a.latency(Direction::Upstream).map(|l| l.0), Some(Duration::from_millis(5)));
        assert!(!a.dead(Direction::Upstream));
    }
}
