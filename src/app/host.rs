//! The gateway's host events: `gateway.started` (with whether the previous
//! run stopped cleanly) and the clock guard's `clock.suspect` /
//! `clock.trusted` (see [`crate::model::clock`]).

use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ingest::Events;
use crate::model::clock::{self, Status};
use crate::model::{EventSource, Severity, Timestamp};

/// The marker of a running gateway in `data_dir`: made at start, removed at
/// a clean shutdown. Found at start, it says the previous run did not stop
/// cleanly (`kill -9`, a crash, a power cut).
const MARKER: &str = "relais.running";

/// How often the clock's state is read for events.
const CLOCK_POLL: Duration = Duration::from_millis(200);

/// Marks this run in `data_dir` (the caller holds the data_dir lock);
/// returns true when the previous run did not stop cleanly.
pub(crate) fn mark_running(data_dir: &Path) -> bool {
    let path = data_dir.join(MARKER);
    let unclean = path.exists();
    if let Err(e) = std::fs::write(&path, format!("{}\n", std::process::id())) {
        tracing::warn!(file = %path.display(), error = %e, "cannot write the running marker; the next start cannot tell a clean stop");
    }
    unclean
}

/// Removes the marker after a clean shutdown.
pub(crate) fn mark_stopped(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(MARKER));
}

/// Emits `gateway.started`: `details.unclean_shutdown` true (warning,
/// `details.detector = "unclean_shutdown"`) when the previous run did not
/// stop cleanly, else info.
pub(crate) fn emit_started(events: &Events, gateway: &str, unclean: bool) {
    let version = env!("CARGO_PKG_VERSION");
    if unclean {
        events.emit_now(
            "gateway.started",
            Severity::Warning,
            EventSource::Gateway,
            format!("gateway {gateway} started (relais {version}); the previous run did not stop cleanly (killed, crashed or power lost)"),
            serde_json::json!({"detector": "unclean_shutdown", "unclean_shutdown": true, "version": version}),
        );
    } else {
        events.emit_now(
            "gateway.started",
            Severity::Info,
            EventSource::Gateway,
            format!("gateway {gateway} started (relais {version})"),
            serde_json::json!({"unclean_shutdown": false, "version": version}),
        );
    }
}

fn suspect_event(events: &Events, st: &Status) {
    let Some(d) = st.detection else { return };
    let (wall, trusted) = (Timestamp(d.wall), Timestamp(d.trusted));
    events.emit_now(
        "clock.suspect",
        Severity::Warning,
        EventSource::Gateway,
        format!("the wall clock reads {wall}, the gateway's clock {trusted}: stamping from monotonic time, samples flagged clock_suspect"),
        serde_json::json!({"detector": "clock", "wall": wall.to_string(), "trusted": trusted.to_string(), "offset_s": d.offset_s}),
    );
}

fn trusted_event(events: &Events, st: &Status) {
    let Some(r) = st.recovery else { return };
    let wall = Timestamp(r.wall);
    let msg = match r.accepted {
        "forward_correction" => format!("the wall clock jumped ahead to {wall} and was accepted as a correction"),
        _ => format!("the wall clock agrees again ({wall})"),
    };
    events.emit_now(
        "clock.trusted",
        Severity::Info,
        EventSource::Gateway,
        msg,
        serde_json::json!({"detector": "clock", "wall": wall.to_string(), "accepted": r.accepted, "offset_s": r.offset_s}),
    );
}

/// Emits `clock.suspect` once per episode of the guarded clock and
/// `clock.trusted` when it ends, until `stop`.
pub(crate) fn spawn_clock_events(events: Events, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Episodes before this task started (a start below the floor) are reported too.
        let (mut seen, mut open) = (0u64, false);
        loop {
            // Stamping drives the state machine; a quiet gateway still ticks.
            let _ = Timestamp::now();
            if clock::episodes() != seen || open {
                let st = clock::status();
                if st.episodes != seen {
                    seen = st.episodes;
                    suspect_event(&events, &st);
                    open = true;
                }
                if open && !st.suspect {
                    trusted_event(&events, &st);
                    open = false;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(CLOCK_POLL) => {}
            }
        }
    })
}
