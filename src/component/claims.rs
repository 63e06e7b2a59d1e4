//! Shared resources that components claim, and the clash rules the root
//! config applies to them (it knows no component's keys).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

/// A resource one component needs: alone, or shared only with compatible
/// settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A serial port. `key` identifies the port (its canonical path: one port
    /// may be named twice, `/dev/serial/by-id/…` and `/dev/ttyUSB0`), `port`
    /// is the name as written; every claimant must have the same `settings`
    /// (`("baud_rate", "9600")` …): then they share one line.
    SerialPort {
        /// Canonical path.
        key: String,
        /// As written.
        port: String,
        /// Line settings, compared by name.
        settings: Vec<(&'static str, String)>,
    },
    /// A TCP listen address: identical addresses share one server; two
    /// different addresses on one port clash when one is a wildcard (0.0.0.0
    /// takes the port on every IPv4 interface, `[::]` on every interface, IPv4
    /// included on Linux).
    Listen(SocketAddr),
    /// A TCP listen address held by one server that shares it with nobody
    /// (the admin listener): any other listen address of the same port
    /// clashes with it when one covers the other, identical ones included.
    ListenAlone(SocketAddr),
    /// An MQTT client id on a broker: two clients with one id kick each other off.
    MqttClient {
        /// `host:port` of the broker.
        broker: (String, u16),
        /// The client id.
        client_id: String,
    },
    /// A retained MQTT status topic (birth and Last Will).
    StatusTopic(String),
}

/// A claim: the resource, who claims it and where in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// What is claimed.
    pub resource: Resource,
    /// Who: `device "press"`, `source "esp"`, `sink "plant"`.
    pub owner: String,
    /// The config key an error is reported under: `device "press" / port`.
    pub key: String,
    /// Where the claiming key is in the file, when known (else the root uses
    /// the owner's name).
    pub span: Option<Range<usize>>,
}

/// One clash: the later claim's span (if known), key and message.
pub type Clash = (Option<Range<usize>>, String, String);

/// Every clash among `claims` (in file order), one per later claimant.
pub fn clashes(claims: &[Claim]) -> Vec<Clash> {
    let mut out = Vec::new();
    serial_clashes(claims, &mut out);
    listen_clashes(claims, &mut out);
    unique_clashes(claims, &mut out);
    out
}

fn serial_clashes(claims: &[Claim], out: &mut Vec<Clash>) {
    // The first claim of each port; later ones are compared with it.
    let mut first: Vec<&Claim> = Vec::new();
    for c in claims {
        let Resource::SerialPort { key, port, settings } = &c.resource else { continue };
        let found = first.iter().find_map(|o| match &o.resource {
            Resource::SerialPort { key: k, port: p, settings: s } if k == key => Some((p, *o, s)),
            _ => None,
        });
        let Some((other_port, other, theirs)) = found else {
            first.push(c);
            continue;
        };
        let diffs: Vec<String> = settings
            .iter()
            .filter_map(|(name, v)| {
                let w = theirs.iter().find(|(n, _)| n == name).map_or("", |(_, w)| w.as_str());
                (v != w).then(|| format!("{name} {v} vs {w}"))
            })
            .collect();
        if diffs.is_empty() {
            continue;
        }
        let same = if other_port != port { format!(" (as {other_port}: the same port)") } else { String::new() };
        out.push((
            c.span.clone(),
            c.key.clone(),
            format!("serial port {port} is also used by {}{same} with other settings: {}", other.owner, diffs.join(", ")),
        ));
    }
}

fn listen_clashes(claims: &[Claim], out: &mut Vec<Clash>) {
    let listens: Vec<(&Claim, SocketAddr)> = claims
        .iter()
        .filter_map(|c| match c.resource {
            Resource::Listen(a) | Resource::ListenAlone(a) => Some((c, a)),
            _ => None,
        })
        .collect();
    let alone = |c: &Claim| matches!(c.resource, Resource::ListenAlone(_));
    for (i, (c, b)) in listens.iter().enumerate() {
        let same = listens[..i].iter().find(|(o, a)| a == b && b.port() != 0 && (alone(o) || alone(c)));
        if let Some((other, _)) = same {
            out.push((c.span.clone(), c.key.clone(), format!("{b} is also the listen address of {}; use another port", other.owner)));
            continue;
        }
        if let Some((other, a)) =
            listens[..i].iter().find(|(_, a)| a != b && a.port() == b.port() && b.port() != 0 && listen_overlaps(a.ip(), b.ip()))
        {
            out.push((
                c.span.clone(),
                c.key.clone(),
                format!(
                    "{b} clashes with {a} of {}: a wildcard address takes the port on every interface; give both sources the same listen (they then share one server) or use another port",
                    other.owner
                ),
            ));
        }
    }
}

/// Two listen addresses of one port overlap when either is a wildcard
/// (and covers the other's family).
fn listen_overlaps(a: IpAddr, b: IpAddr) -> bool {
    let covers = |w: IpAddr, x: IpAddr| w.is_unspecified() && (w.is_ipv6() || x.is_ipv4());
    a == b || covers(a, b) || covers(b, a)
}

fn unique_clashes(claims: &[Claim], out: &mut Vec<Clash>) {
    let mut seen: Vec<(&Resource, &Claim)> = Vec::new();
    for c in claims {
        let msg = |other: &Claim| match &c.resource {
            Resource::MqttClient { client_id, .. } => {
                Some(format!("client_id {client_id:?} is also used by {} on the same broker; each MQTT client needs its own", other.owner))
            }
            Resource::StatusTopic(t) => Some(format!("status topic {t:?} is also used by {}", other.owner)),
            _ => None,
        };
        if !matches!(c.resource, Resource::MqttClient { .. } | Resource::StatusTopic(_)) {
            continue;
        }
        match seen.iter().find(|(r, _)| **r == c.resource) {
            Some((_, other)) => {
                if let Some(m) = msg(other) {
                    out.push((c.span.clone(), c.key.clone(), m));
                }
            }
            None => seen.push((&c.resource, c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(resource: Resource, owner: &str) -> Claim {
        Claim { resource, owner: owner.into(), key: format!("{owner} / x"), span: None }
    }

    #[test]
    fn serial_ports_share_with_equal_settings_only() {
        let port = |p: &str, baud: &str| Resource::SerialPort {
            key: "/dev/ttyUSB0".into(),
            port: p.into(),
            settings: vec![("baud_rate", baud.into()), ("parity", "None".into())],
        };
        let same = [claim(port("/dev/ttyUSB0", "9600"), "device \"a\""), claim(port("/dev/ttyUSB0", "9600"), "device \"b\"")];
        assert!(clashes(&same).is_empty());
        let other = [claim(port("/dev/ttyUSB0", "9600"), "device \"a\""), claim(port("/dev/by-id/x", "19200"), "device \"b\"")];
        let c = clashes(&other);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].2,
            "serial port /dev/by-id/x is also used by device \"a\" (as /dev/ttyUSB0: the same port) with other settings: baud_rate 19200 vs 9600"
        );
    }

    #[test]
    fn wildcard_listen_addresses_clash_and_identical_ones_share() {
        let l = |a: &str| Resource::Listen(a.parse().unwrap());
        assert!(clashes(&[claim(l("127.0.0.1:8080"), "source \"a\""), claim(l("127.0.0.1:8080"), "source \"b\"")]).is_empty());
        assert!(clashes(&[claim(l("127.0.0.1:8080"), "source \"a\""), claim(l("127.0.0.2:8080"), "source \"b\"")]).is_empty());
        let c = clashes(&[claim(l("127.0.0.1:8080"), "source \"a\""), claim(l("0.0.0.0:8080"), "source \"b\"")]);
        assert!(c[0].2.starts_with("0.0.0.0:8080 clashes with 127.0.0.1:8080 of source \"a\""), "{c:?}");
        assert_eq!(clashes(&[claim(l("[::]:8080"), "source \"a\""), claim(l("127.0.0.1:8080"), "source \"b\"")]).len(), 1);
        assert!(clashes(&[claim(l("0.0.0.0:8080"), "source \"a\""), claim(l("[::1]:8080"), "source \"b\"")]).is_empty());
    }

    #[test]
    fn a_listen_address_held_alone_is_shared_with_nobody() {
        let l = |a: &str| Resource::Listen(a.parse().unwrap());
        let alone = |a: &str| Resource::ListenAlone(a.parse().unwrap());
        let c = clashes(&[claim(l("127.0.0.1:9780"), "source \"a\""), claim(alone("127.0.0.1:9780"), "admin")]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].2.starts_with("127.0.0.1:9780 is also the listen address of source \"a\""), "{c:?}");
        assert_eq!(clashes(&[claim(alone("0.0.0.0:9780"), "admin"), claim(l("127.0.0.1:9780"), "source \"b\"")]).len(), 1);
        assert!(clashes(&[claim(alone("127.0.0.1:9780"), "admin"), claim(l("127.0.0.1:9781"), "source \"b\"")]).is_empty());
    }

    #[test]
    fn client_ids_and_status_topics_are_unique() {
        let id = |b: u16| Resource::MqttClient { broker: ("h".into(), b), client_id: "relais-gw".into() };
        assert!(clashes(&[claim(id(1883), "sink \"a\""), claim(id(1884), "source \"b\"")]).is_empty());
        let c = clashes(&[claim(id(1883), "sink \"a\""), claim(id(1883), "source \"b\"")]);
        assert_eq!(c[0].1, "source \"b\" / x");
        assert!(c[0].2.contains("also used by sink \"a\" on the same broker"));
        let st = |t: &str| Resource::StatusTopic(t.into());
        assert_eq!(
            clashes(&[claim(st("s"), "sink \"a\""), claim(st("s"), "sink \"b\"")])[0].2,
            "status topic \"s\" is also used by sink \"a\""
        );
    }
}
