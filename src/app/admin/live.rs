//! `GET /api/live?match=GLOB`: committed samples and events as server-sent
//! events (`text/event-stream`), for the dashboard and `relais tail`.
//!
//! Messages (`event:` name, `data:` one JSON line):
//! - `hello` once: `{"coalesce_ms": 250, "last_seq": 1234}`;
//! - `samples`: a JSON array of tag entries shaped as in `/api/tags`
//!   ([`super::tags::sample_json`]), the newest sample of each tag changed
//!   since the previous `samples` message;
//! - `event`: one event shaped as in `/api/events` (alarms: kind `alarm`);
//! - `missed`: `{"samples": n, "events": n}` when this stream fell behind the
//!   committed data (a slow reader): some updates were skipped, reload
//!   `/api/tags` for the current values.
//!
//! # Invariants
//! - **Committed only, in order.** Fed by a subscription to the committed-data
//!   tap ([`crate::buffer::tap`]); a tag's entry only moves forward in `seq`.
//! - **Coalesced, never flooding.** At most one `samples` message per
//!   [`COALESCE`]: a tag that changed several times in that window is sent
//!   once, with its newest sample; 10,000 tags changing every 10 ms still give
//!   4 messages a second. A quiet stream sends a change at once (the window
//!   starts at the previous message, not at the change).
//! - **Bounded.** At most [`MAX_STREAMS`] streams at once (503 beyond);
//!   pending changes are one entry per tag; a client that does not read makes
//!   this task wait, and the tap (bounded) reports what was skipped.
//! - **Ends.** When the client goes away, the listener stops or the buffer
//!   closes, the task ends and its tap subscription with it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use globset::GlobMatcher;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::buffer::tap::{Tap, Tapped};
use crate::model::{Record, Sample, Timestamp};

/// Shortest time between two `samples` messages of one stream.
pub const COALESCE: Duration = Duration::from_millis(250);
/// Most live streams open at once.
pub const MAX_STREAMS: usize = 16;

/// Counts open streams; [`Streams::open`] refuses beyond [`MAX_STREAMS`].
#[derive(Debug, Default)]
pub struct Streams(Arc<AtomicUsize>);

/// One open stream (released on drop).
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Streams {
    /// A slot, or `None` when [`MAX_STREAMS`] are open.
    pub fn open(&self) -> Option<Slot> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.0.clone());
        (n < MAX_STREAMS).then_some(slot)
    }
}

/// What one stream has to send at the next flush.
#[derive(Default)]
struct Pending {
    samples: HashMap<(Arc<str>, Arc<str>), Sample>,
    events: Vec<serde_json::Value>,
    missed: (u64, u64),
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.events.is_empty() && self.missed == (0, 0)
    }

    fn absorb(&mut self, t: &Tapped, m: Option<&GlobMatcher>) {
        self.missed.0 += t.missed_samples;
        self.missed.1 += t.missed_events;
        for r in t.records() {
            match r {
                Record::Sample(s) if super::tags::matches(m, &s.meta.device, &s.meta.tag) => {
                    self.samples.insert((s.meta.device.clone(), s.meta.tag.clone()), s.clone());
                }
                Record::Event(e) => self.events.push(super::events::to_json(e)),
                _ => {}
            }
        }
    }

    /// The messages to send, emptying `self`.
    fn drain(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.missed != (0, 0) {
            let (s, e) = std::mem::take(&mut self.missed);
            out.push(SseEvent::default().event("missed").data(json!({"samples": s, "events": e}).to_string()));
        }
        if !self.samples.is_empty() {
            let now = Timestamp::now();
            let mut v: Vec<Sample> = self.samples.drain().map(|(_, s)| s).collect();
            v.sort_by_key(|s| s.seq);
            let arr: Vec<serde_json::Value> = v
                .iter()
                .map(|s| {
                    let (d, t) = (&s.meta.device, &s.meta.tag);
                    super::tags::sample_json(d, t, s.seq, &s.value, s.quality, s.reason.as_deref(), s.meta.unit.as_deref(), s.ts, now)
                })
                .collect();
            out.push(SseEvent::default().event("samples").data(serde_json::Value::Array(arr).to_string()));
        }
        out.extend(self.events.drain(..).map(|e| SseEvent::default().event("event").data(e.to_string())));
        out
    }
}

/// The SSE response of one client: follows `tap` until the client leaves or `stop`.
pub fn respond(
    tap: Arc<Tap>,
    m: Option<GlobMatcher>,
    slot: Slot,
    stop: CancellationToken,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel::<SseEvent>(16);
    let sub = tap.subscribe();
    let last_seq = *tap.committed().borrow();
    tokio::spawn(async move {
        let _slot = slot;
        let hello = json!({"coalesce_ms": COALESCE.as_millis() as u64, "last_seq": last_seq});
        if tx.send(SseEvent::default().event("hello").data(hello.to_string())).await.is_err() {
            return;
        }
        follow(sub, m, tx, stop).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn follow(mut sub: crate::buffer::tap::TapSubscription, m: Option<GlobMatcher>, tx: mpsc::Sender<SseEvent>, stop: CancellationToken) {
    let mut pending = Pending::default();
    let mut last_flush = Instant::now() - COALESCE;
    loop {
        let due = last_flush + COALESCE;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            t = sub.recv() => match t {
                Some(t) => pending.absorb(&t, m.as_ref()),
                None => return,
            },
            _ = tokio::time::sleep_until(due), if !pending.is_empty() => {}
        }
        if !pending.is_empty() && Instant::now() >= due {
            for e in pending.drain() {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            last_flush = Instant::now();
        }
    }
}

/// Query of `/api/live`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Query {
    /// Glob on `device/tag`, as in `/api/tags`.
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    /// The bearer token, for clients that cannot set headers (`EventSource`).
    pub token: Option<String>,
}

/// The handler of `GET /api/live`.
pub(super) async fn handler(
    axum::extract::State(a): axum::extract::State<Arc<super::Shared>>,
    headers: axum::http::HeaderMap,
    q: axum::extract::Query<Query>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    if let Err(r) = super::authorize_with(&a.settings.auth(), &headers, q.token.as_deref()) {
        return r;
    }
    let m = match super::tags::matcher(q.pattern.as_deref()) {
        Ok(m) => m,
        Err(e) => return super::error(StatusCode::BAD_REQUEST, e),
    };
    let Some(slot) = a.streams.open() else {
        return super::error(StatusCode::SERVICE_UNAVAILABLE, format!("{MAX_STREAMS} live streams are open already; close one"));
    };
    respond(a.reader.tap().clone(), m, slot, a.stop.clone()).into_response()
}
