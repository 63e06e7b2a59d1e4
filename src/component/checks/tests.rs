use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ingest::{Entry, Ingest};
use crate::model::{Event, Timestamp, Value};

const S: i64 = 1_000_000_000;

fn checks(toml: &str) -> (Checks, Arc<Ingest>) {
    let text = format!("{toml}\n");
    let mut d = crate::diag::Diag::new("t.toml", &text);
    let (doc, _) = toml::de::DeTable::parse_recoverable(&text);
    let item = doc.into_inner().into_iter().find(|(k, _)| k.get_ref().as_ref() == "check").map(|(_, v)| v).unwrap();
    let cfg = parse_checks(item, &mut d, None);
    d.finish().unwrap();
    let ingest = Arc::new(Ingest::new(1024));
    (Checks::new(cfg, Some(ingest.events())), ingest)
}

fn events(ingest: &Ingest) -> Vec<Event> {
    std::iter::from_fn(|| ingest.pop())
        .filter_map(|e| match e {
            Entry::Event(e) => Some(*e),
            _ => None,
        })
        .collect()
}

fn sample(meta: &Arc<TagMeta>, x: f64, t: i64) -> Sample {
    Sample::good(meta.clone(), Value::F64(x), Timestamp(t))
}

#[test]
fn one_event_per_transition_and_the_value_is_kept() {
    let (c, ingest) = checks("[[check]]\nmatch = \"press/*\"\nmax = 150.0\nsuspect_max = 120.0");
    let mut k = c.checker();
    let m = TagMeta::new("press", "pressure", Some("bar"));
    let mut out = Vec::new();
    for (i, x) in [100.0, 130.0, 181.0, 182.0, 183.0, 125.0, 100.0, 101.0].into_iter().enumerate() {
        let mut s = sample(&m, x, i as i64 * S);
        k.apply(&mut s, None);
        out.push((s.value.as_f64().unwrap(), s.quality, s.reason.as_deref().unwrap_or("").to_string()));
    }
    assert_eq!(out[2], (181.0, Quality::Bad, "gross_range: 181.0 above max 150.0".to_string()), "value kept");
    assert_eq!(out[1].1, Quality::Uncertain);
    assert_eq!(out[6].1, Quality::Good);
    let ev: Vec<(String, String)> =
        events(&ingest).iter().map(|e| (e.kind.to_string(), e.details["reason"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(
        ev,
        [
            ("tag.flagged".to_string(), "gross_range: 130.0 above suspect_max 120.0".to_string()),
            ("tag.flagged".to_string(), "gross_range: 181.0 above max 150.0".to_string()),
            ("tag.cleared".to_string(), "gross_range: cleared".to_string()),
        ]
    );
}

#[test]
fn a_flat_line_of_an_hour_is_one_event() {
    let (c, ingest) = checks("[[check]]\nmatch = \"**\"\nflat_line = \"30s\"");
    let mut k = c.checker();
    let m = TagMeta::new("pump", "flow", None);
    let mut flagged = 0;
    for i in 0..3600 {
        let mut s = sample(&m, 7.0, i * S);
        k.apply(&mut s, None);
        flagged += usize::from(s.quality == Quality::Uncertain);
    }
    assert_eq!(flagged, 3600 - 30);
    let ev = events(&ingest);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(&*ev[0].kind, "tag.flagged");
    assert_eq!(ev[0].details["detector"], "flat_line");
    assert_eq!(ev[0].details["value"], 7.0);
    assert_eq!(ev[0].source.name(), "pump/flow");
}

#[test]
fn a_bad_sample_is_never_upgraded_nor_reflagged() {
    let (c, ingest) = checks("[[check]]\nmatch = \"**\"\nmax = 1.0\nbad_quality = true");
    let mut k = c.checker();
    let m = TagMeta::new("d", "t", None);
    let mut s = Sample::bad(m.clone(), "timeout: no answer within 1s".into(), Timestamp(0));
    k.apply(&mut s, None);
    assert_eq!((s.quality, s.reason.as_deref()), (Quality::Bad, Some("timeout: no answer within 1s")));
    assert!(events(&ingest).is_empty(), "a comm failure is device.down's business");
    let mut s = Sample::bad(m.clone(), "device_exception(2): modbus exception 0x02 illegal data address".into(), Timestamp(S));
    k.apply(&mut s, None);
    assert!(s.reason.as_deref().unwrap().starts_with("device_exception(2)"));
    let mut again = Sample::bad(m.clone(), "device_exception(2): modbus exception 0x02 illegal data address".into(), Timestamp(2 * S));
    k.apply(&mut again, None);
    let mut good = sample(&m, 0.5, 3 * S);
    k.apply(&mut good, None);
    assert_eq!(good.quality, Quality::Good);
    let ev: Vec<(String, String)> = events(&ingest).iter().map(|e| (e.kind.to_string(), e.details["detector"].to_string())).collect();
    assert_eq!(ev, [("tag.flagged".into(), "\"bad_quality\"".into()), ("tag.cleared".into(), "\"bad_quality\"".into())]);
    // An uncertain sample keeps its own reason when a check only suspects it.
    let (c, _) = checks("[[check]]\nmatch = \"**\"\nsuspect_max = 1.0");
    let mut k = c.checker();
    let mut u = sample(&m, 5.0, 0);
    u.quality = Quality::Uncertain;
    u.reason = Some("uncertain_last_usable".into());
    k.apply(&mut u, None);
    assert_eq!(u.reason.as_deref(), Some("uncertain_last_usable"));
}

#[test]
fn the_envelope_is_a_security_event() {
    let (c, ingest) = checks("[[check]]\nmatch = \"**\"\nenvelope = { min = 0.0, max = 200.0 }");
    let mut k = c.checker();
    let m = TagMeta::new("press", "pressure", None);
    let mut s = sample(&m, 9999.0, 0);
    k.apply(&mut s, None);
    assert_eq!(s.quality, Quality::Bad);
    assert_eq!(s.value, Value::F64(9999.0));
    let mut s = sample(&m, 50.0, S);
    k.apply(&mut s, None);
    let ev = events(&ingest);
    assert_eq!((&*ev[0].kind, ev[0].severity), ("security.response_injection", Severity::Error));
    assert_eq!(ev[0].details["detector"], "response_injection");
    assert_eq!((&*ev[1].kind, ev[1].details["detector"].as_str()), ("tag.cleared", Some("response_injection")));
}

#[test]
fn merged_limits_first_set_wins_and_unmatched_tags_cost_nothing() {
    let (c, _) = checks("[[check]]\nmatch = \"press/pressure\"\nmax = 10.0\n[[check]]\nmatch = \"press/*\"\nmax = 99.0\nmin = 0.0");
    let l = config::limits_for(c.configs(), "press/pressure");
    assert_eq!((l.min, l.max), (Some(0.0), Some(10.0)));
    let mut k = c.checker();
    let other = TagMeta::new("pump", "x", None);
    let mut s = sample(&other, -5.0, 0);
    k.apply(&mut s, None);
    assert_eq!(s.quality, Quality::Good);
}

#[test]
fn stale_slots_open_one_episode_until_a_sample_comes() {
    let board = StaleBoard::default();
    let m = TagMeta::new("d", "t", None);
    let slot = board.register(m, Duration::from_millis(50), "2 poll periods of 25ms".into());
    assert!(board.scan(Duration::from_millis(5)).is_empty());
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(board.scan(Duration::from_millis(5)).len(), 1);
    assert!(board.scan(Duration::from_millis(5)).is_empty(), "one per episode");
    assert!(slot.seen(&board), "the next sample closes it");
    assert!(!slot.seen(&board));
}
