//! Simulator-side intrusion detection: the station is the viewpoint of an
//! IDS watching its Modbus TCP listener. Each detector raises one
//! [`SimDetection`] per episode (logged at WARN and broadcast by
//! `Sim::detections`). A *client* is one TCP connection (peer address and
//! port): on loopback the gateway and an attacker share the address.
//!
//! | detector | raised when (defaults: [`IdsThresholds`]) | episode |
//! |---|---|---|
//! | `unexpected_client` | at its first request, a client whose address is not in `[sim] expected_clients`; without the list, a client while another one is connected (the first is expected) | the connection |
//! | `function_code_scan` | ≥ 5 distinct function codes the simulator does not serve (not 1–6, 15, 16, 22, 43) from one client within 10 s | until 10 s without one |
//! | `unit_sweep` | ≥ 5 distinct unit ids no station of the listener answers, from one client within 10 s | until 10 s without one |
//! | `request_flood` | > 100 requests from one client within 1 s | until 1 s without a request |

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

/// Function codes the simulator serves (Modbus Application Protocol
/// v1.1b3 §6): anything else counts towards a function-code scan.
pub const SERVED_FUNCTION_CODES: [u8; 10] = [1, 2, 3, 4, 5, 6, 15, 16, 22, 43];

/// One intrusion detection.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDetection {
    /// When it was raised.
    pub at: SystemTime,
    /// `unexpected_client`, `function_code_scan`, `unit_sweep` or `request_flood`.
    pub detector: &'static str,
    /// The station addressed (by the request's unit id), else the first
    /// station (config order) of the listener.
    pub station: String,
    /// What was seen, for people.
    pub message: String,
    /// The client (peer address and port).
    pub client: SocketAddr,
}

/// Thresholds of the detectors (the defaults are documented in the table
/// above and in `src/sim/README.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdsThresholds {
    /// Distinct unserved function codes that make a scan.
    pub scan_codes: usize,
    /// Window of a scan.
    pub scan_window: Duration,
    /// Distinct unknown unit ids that make a sweep.
    pub sweep_units: usize,
    /// Window of a sweep.
    pub sweep_window: Duration,
    /// Requests above which a client floods.
    pub flood_requests: usize,
    /// Window of a flood.
    pub flood_window: Duration,
}

impl Default for IdsThresholds {
    fn default() -> Self {
        IdsThresholds {
            scan_codes: 5,
            scan_window: Duration::from_secs(10),
            sweep_units: 5,
            sweep_window: Duration::from_secs(10),
            flood_requests: 100,
            flood_window: Duration::from_secs(1),
        }
    }
}

/// The watch over one Modbus TCP listener.
pub(crate) struct Watch {
    pub(crate) tx: broadcast::Sender<SimDetection>,
    pub(crate) expected: Option<Vec<IpAddr>>,
    pub(crate) thresholds: IdsThresholds,
    /// Station names by unit id, and the first station's name.
    pub(crate) names: HashMap<u8, String>,
    pub(crate) first: String,
    open: AtomicUsize,
}

impl Watch {
    pub(crate) fn new(
        tx: broadcast::Sender<SimDetection>,
        expected: Option<Vec<IpAddr>>,
        names: HashMap<u8, String>,
        first: String,
    ) -> Watch {
        Watch { tx, expected, thresholds: IdsThresholds::default(), names, first, open: AtomicUsize::new(0) }
    }

    /// A connection was accepted from `peer`.
    pub(crate) fn connect(self: &Arc<Self>, peer: SocketAddr) -> Client {
        self.open.fetch_add(1, Ordering::AcqRel);
        Client {
            watch: self.clone(),
            peer,
            seen: false,
            fired: [false; 3],
            codes: VecDeque::new(),
            units: VecDeque::new(),
            requests: VecDeque::new(),
        }
    }
}

/// Events of one detector within its window: (when, what).
type Window = VecDeque<(Instant, u8)>;

/// One client's state (dropped when the connection ends).
pub(crate) struct Client {
    watch: Arc<Watch>,
    peer: SocketAddr,
    /// Its first request was seen.
    seen: bool,
    /// Scan, sweep, flood raised in the current episode.
    fired: [bool; 3],
    codes: Window,
    units: Window,
    requests: Window,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.watch.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Drops the events older than `window`; true when none is left.
fn expire(w: &mut Window, now: Instant, window: Duration) -> bool {
    while w.front().is_some_and(|(t, _)| now.duration_since(*t) > window) {
        w.pop_front();
    }
    w.is_empty()
}

fn distinct(w: &Window) -> usize {
    let mut seen = [false; 256];
    w.iter().filter(|(_, x)| !std::mem::replace(&mut seen[*x as usize], true)).count()
}

impl Client {
    /// One request (unit id, function code) from this client.
    pub(crate) fn request(&mut self, unit: u8, function: u8) {
        let now = Instant::now();
        let w = self.watch.clone();
        let th = &w.thresholds;
        let station = w.names.get(&unit).unwrap_or(&w.first).clone();
        if !self.seen {
            self.seen = true;
            let others = w.open.load(Ordering::Acquire).saturating_sub(1);
            let why = match &w.expected {
                Some(list) if !list.contains(&self.peer.ip()) => Some(format!("client {} is not in expected_clients", self.peer)),
                None if others > 0 => Some(format!("client {} connected while {others} other client(s) were connected", self.peer)),
                _ => None,
            };
            if let Some(m) = why {
                self.raise("unexpected_client", &station, m);
            }
        }
        // Each window: events kept, an episode re-armed once its window is empty.
        for (k, (keep, window)) in [
            (!SERVED_FUNCTION_CODES.contains(&function), th.scan_window),
            (!w.names.contains_key(&unit), th.sweep_window),
            (true, th.flood_window),
        ]
        .into_iter()
        .enumerate()
        {
            let q = match k {
                0 => &mut self.codes,
                1 => &mut self.units,
                _ => &mut self.requests,
            };
            if expire(q, now, window) {
                self.fired[k] = false;
            }
            if keep {
                q.push_back((now, if k == 0 { function } else { unit }));
            }
        }
        if !self.fired[0] && distinct(&self.codes) >= th.scan_codes {
            self.fired[0] = true;
            let m = format!("client {} tried {} unserved function codes within {:?}", self.peer, distinct(&self.codes), th.scan_window);
            self.raise("function_code_scan", &station, m);
        }
        if !self.fired[1] && distinct(&self.units) >= th.sweep_units {
            self.fired[1] = true;
            let m = format!("client {} addressed {} unknown unit ids within {:?}", self.peer, distinct(&self.units), th.sweep_window);
            self.raise("unit_sweep", &station, m);
        }
        if !self.fired[2] && self.requests.len() > th.flood_requests {
            self.fired[2] = true;
            let m = format!("client {} sent more than {} requests within {:?}", self.peer, th.flood_requests, th.flood_window);
            self.raise("request_flood", &station, m);
        }
        // A flood keeps at most the threshold + 1 requests in memory.
        while self.requests.len() > th.flood_requests + 1 {
            self.requests.pop_front();
        }
    }

    fn raise(&self, detector: &'static str, station: &str, message: String) {
        tracing::warn!(detector, station, client = %self.peer, "simulator intrusion detection: {message}");
        let d = SimDetection { at: SystemTime::now(), detector, station: station.to_string(), message, client: self.peer };
        let _ = self.watch.tx.send(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(expected: Option<Vec<IpAddr>>) -> (Arc<Watch>, broadcast::Receiver<SimDetection>) {
        let (tx, rx) = broadcast::channel(64);
        let names = HashMap::from([(1, "conveyor".to_string()), (2, "press".to_string())]);
        (Arc::new(Watch::new(tx, expected, names, "conveyor".into())), rx)
    }

    fn kinds(rx: &mut broadcast::Receiver<SimDetection>) -> Vec<(&'static str, String)> {
        std::iter::from_fn(|| rx.try_recv().ok()).map(|d| (d.detector, d.station)).collect()
    }

    #[test]
    fn one_polling_client_raises_nothing() {
        let (w, mut rx) = watch(None);
        let mut c = w.connect("127.0.0.1:40000".parse().unwrap());
        for _ in 0..50 {
            c.request(1, 3);
            c.request(2, 4);
        }
        assert_eq!(kinds(&mut rx), vec![]);
    }

    #[test]
    fn each_detector_fires_once_per_episode() {
        let (w, mut rx) = watch(None);
        let _gateway = w.connect("127.0.0.1:40000".parse().unwrap());
        let mut c = w.connect("127.0.0.1:40001".parse().unwrap());
        for fc in 7..40 {
            c.request(2, fc);
        }
        for unit in 3..20 {
            c.request(unit, 3);
        }
        for _ in 0..200 {
            c.request(1, 3);
        }
        let got = kinds(&mut rx);
        let names: Vec<&str> = got.iter().map(|(d, _)| *d).collect();
        assert_eq!(names, vec!["unexpected_client", "function_code_scan", "unit_sweep", "request_flood"]);
        assert_eq!(got[0].1, "press", "named after the station of the request's unit");
        assert_eq!(got[2].1, "conveyor", "an unknown unit: the listener's first station");
    }

    #[test]
    fn expected_clients_list_names_the_addresses_allowed() {
        let (w, mut rx) = watch(Some(vec!["10.0.0.5".parse().unwrap()]));
        w.connect("10.0.0.5:1000".parse().unwrap()).request(1, 3);
        assert_eq!(kinds(&mut rx), vec![]);
        w.connect("10.0.0.6:1000".parse().unwrap()).request(1, 3);
        assert_eq!(kinds(&mut rx), vec![("unexpected_client", "conveyor".to_string())]);
    }
}
