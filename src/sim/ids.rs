//! Simulator-side intrusion detection: the station is the viewpoint of an
//! IDS watching its Modbus TCP listener. Each detector raises one
//! [`SimDetection`] per episode (logged at WARN and broadcast by
//! `Sim::detections`). A *client* is one TCP connection (peer address and
//! port): on loopback the gateway and an attacker share the address.
//!
//! | detector | raised when (defaults: [`IdsThresholds`]) | episode |
//! |---|---|---|
//! | `unexpected_client` | at its first request, a client whose address is not in `[sim] expected_clients`; without the list, a client that sent a request while another one was connected, once that other one sends a request too (a reconnecting gateway closes its old connection without another request, so it is not taken for an intruder, even behind a proxy that keeps the old upstream open) | the connection |
//! | `function_code_scan` | ≥ 5 distinct function codes the simulator does not serve (not 1–6, 15, 16, 22, 43) from one client within 10 s | until 10 s without one |
//! | `unit_sweep` | ≥ 5 distinct unit ids no station of the listener answers, from one client within 10 s | until 10 s without one |
//! | `request_flood` | > 100 requests from one client within 1 s | until 1 s without a request |

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    next_id: AtomicU64,
    conns: Mutex<Conns>,
}

/// The connections of a listener, for `unexpected_client`.
#[derive(Default)]
struct Conns {
    /// Requests seen so far, by connection.
    requests: HashMap<u64, u64>,
    /// Clients that came while others were connected: raised when one of
    /// those others sends another request, dropped when they all close.
    pending: Vec<Pending>,
}

#[derive(Clone)]
struct Pending {
    peer: SocketAddr,
    station: String,
    /// Why, when raised at once (not in `expected_clients`).
    why: Option<String>,
    /// The other connections and their request counts at that moment.
    others: Vec<(u64, u64)>,
}

impl Watch {
    pub(crate) fn new(
        tx: broadcast::Sender<SimDetection>,
        expected: Option<Vec<IpAddr>>,
        names: HashMap<u8, String>,
        first: String,
    ) -> Watch {
        let conns = Mutex::new(Conns::default());
        Watch { tx, expected, thresholds: IdsThresholds::default(), names, first, next_id: AtomicU64::new(0), conns }
    }

    /// A connection was accepted from `peer`.
    pub(crate) fn connect(self: &Arc<Self>, peer: SocketAddr) -> Client {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.conns.lock() {
            g.requests.insert(id, 0);
        }
        let (codes, units, requests) = (VecDeque::new(), VecDeque::new(), VecDeque::new());
        Client { watch: self.clone(), id, peer, seen: false, fired: [false; 3], codes, units, requests }
    }

    fn raise(&self, detector: &'static str, station: &str, message: String, client: SocketAddr) {
        tracing::warn!(detector, station, %client, "simulator intrusion detection: {message}");
        let d = SimDetection { at: SystemTime::now(), detector, station: station.to_string(), message, client };
        let _ = self.tx.send(d);
    }

    /// `unexpected_client` on a request of connection `id` (`first`: its
    /// first one): the clients to raise it for now.
    fn concurrent(&self, id: u64, peer: SocketAddr, first: bool, station: &str) -> Vec<Pending> {
        let Ok(mut g) = self.conns.lock() else { return Vec::new() };
        let n = {
            let n = g.requests.entry(id).or_default();
            *n += 1;
            *n
        };
        let mut hits = Vec::new();
        g.pending.retain(|p| {
            let hit = p.others.iter().any(|(o, before)| *o == id && n > *before);
            if hit {
                hits.push(p.clone());
            }
            !hit
        });
        if first {
            match &self.expected {
                Some(list) if !list.contains(&peer.ip()) => {
                    let why = Some(format!("client {peer} is not in expected_clients"));
                    hits.push(Pending { peer, station: station.to_string(), why, others: Vec::new() });
                }
                Some(_) => {}
                None => {
                    let others: Vec<(u64, u64)> = g.requests.iter().filter(|(k, _)| **k != id).map(|(k, v)| (*k, *v)).collect();
                    if !others.is_empty() {
                        g.pending.push(Pending { peer, station: station.to_string(), why: None, others });
                    }
                }
            }
        }
        hits
    }
}

/// Events of one detector within its window: (when, what).
type Window = VecDeque<(Instant, u8)>;

/// One client's state (dropped when the connection ends).
pub(crate) struct Client {
    watch: Arc<Watch>,
    id: u64,
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
        if let Ok(mut g) = self.watch.conns.lock() {
            g.requests.remove(&self.id);
            // A client that came while this one was connected was its
            // replacement (a reconnect) unless another one still talks.
            g.pending.iter_mut().for_each(|p| p.others.retain(|(o, _)| *o != self.id));
            g.pending.retain(|p| !p.others.is_empty());
        }
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
        let first = !std::mem::replace(&mut self.seen, true);
        for p in w.concurrent(self.id, self.peer, first, &station) {
            let why =
                p.why.unwrap_or_else(|| format!("client {} sent requests while client {} was connected and polling", p.peer, self.peer));
            w.raise("unexpected_client", &p.station, why, p.peer);
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
        self.watch.raise(detector, station, message, self.peer);
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
        let mut gateway = w.connect("127.0.0.1:40000".parse().unwrap());
        gateway.request(1, 3);
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
        gateway.request(1, 3); // the gateway polls on: two clients talk at once
        gateway.request(1, 3);
        let got = kinds(&mut rx);
        let names: Vec<&str> = got.iter().map(|(d, _)| *d).collect();
        assert_eq!(names, vec!["function_code_scan", "unit_sweep", "request_flood", "unexpected_client"]);
        assert_eq!(got[0].1, "press", "named after the station of the request's unit");
        assert_eq!(got[1].1, "conveyor", "an unknown unit: the listener's first station");
        assert_eq!(got[3].1, "press", "the station of the intruder's first request");
    }

    #[test]
    fn a_reconnect_is_no_intruder_even_with_the_old_connection_still_open() {
        let (w, mut rx) = watch(None);
        let mut old = w.connect("127.0.0.1:40000".parse().unwrap());
        old.request(1, 3);
        // The gateway gave up on the old connection (no answers) and opened
        // a new one; the old one closes later, without another request.
        let mut new = w.connect("127.0.0.1:40002".parse().unwrap());
        new.request(1, 3);
        new.request(2, 3);
        drop(old);
        new.request(1, 3);
        assert_eq!(kinds(&mut rx), vec![]);
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
