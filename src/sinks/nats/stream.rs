//! The stream on connect: found (or created), and read back.
//!
//! What the stream holds of this gateway is read from its last message `L`
//! and the few before it: `L`'s `Relais-Done` header names the ranges
//! stored (or needing no sending) when `L` was published, and every record
//! stored since then is in a message between `L`'s `Relais-Scan-From` and
//! `L` (see the invariants in `sink.rs`). Those messages are read (at most
//! [`READ_AHEAD`] requests at once) and their `Nats-Msg-Id`s added. A last
//! message without the header (written by relais before 2026-12, when the
//! stream was a gap-free prefix) means: every record up to its `seq`.

use async_nats::jetstream::{self, stream};
use futures::StreamExt;

use super::config::NatsSinkConfig;
use super::encode::seqs_of_id;
use super::headers;
use crate::sinks::driver::{Lost, SeqSet};

/// Messages requested at once when reading the stream back.
pub const READ_AHEAD: usize = 32;

fn lost(reason: impl Into<String>) -> Lost {
    Lost::new(reason)
}

/// The stream, created when missing and allowed.
async fn find(cfg: &NatsSinkConfig, gateway: &str, js: &jetstream::Context) -> Result<stream::Stream, Lost> {
    let name = &cfg.stream;
    match (js.get_stream(name).await, &cfg.create) {
        (Ok(s), _) => Ok(s),
        (Err(e), Some(spec)) if e.to_string().contains("not found") => {
            let config = stream::Config {
                name: name.clone(),
                subjects: spec.subjects.clone(),
                num_replicas: spec.replicas,
                max_age: spec.max_age,
                duplicate_window: spec.duplicate_window,
                storage: stream::StorageType::File,
                ..Default::default()
            };
            js.create_stream(config).await.map_err(|e| lost(format!("cannot create stream {name}: {e}")))
        }
        (Err(e), None) if e.to_string().contains("not found") => Err(Lost {
            reason: format!(
                "stream {name} does not exist; create it (subjects {}) or set create_stream = true",
                cfg.subject.filter(gateway)
            ),
            retry_after: Some(cfg.reconnect_max),
        }),
        (Err(e), _) => Err(lost(format!("cannot read stream {name}: {e}"))),
    }
}

/// The message at stream sequence `seq`, `None` when it is gone (max_age, a purge).
async fn message(s: &stream::Stream, seq: u64) -> Result<Option<jetstream::message::StreamMessage>, Lost> {
    match s.get_raw_message(seq).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(lost(format!("cannot read back message {seq} of the stream: {e}"))),
    }
}

/// The `seq` range of a message of this gateway; an error naming the other publisher otherwise.
fn range_of(cfg: &NatsSinkConfig, gateway: &str, m: &jetstream::message::StreamMessage) -> Result<(u64, u64), Lost> {
    let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str()).unwrap_or_default();
    seqs_of_id(gateway, id).ok_or_else(|| Lost {
        reason: format!(
            "stream {} holds a message of another publisher (Nats-Msg-Id {id:?}, subject {}, stream sequence {}): give each gateway a stream of its own",
            cfg.stream, m.subject, m.sequence
        ),
        retry_after: Some(cfg.reconnect_max),
    })
}

/// The stream's last sequence and the records of `gateway` it holds.
pub async fn state(cfg: &NatsSinkConfig, gateway: &str, js: &jetstream::Context) -> Result<(u64, SeqSet), Lost> {
    let mut s = find(cfg, gateway, js).await?;
    let name = &cfg.stream;
    let info = s.info().await.map_err(|e| lost(format!("cannot read stream {name}: {e}")))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut held = SeqSet::new();
    if info.state.messages == 0 || last == 0 {
        return Ok((last, held));
    }
    let Some(m) = message(&s, last).await? else { return Ok((last, held)) };
    let (a, b) = range_of(cfg, gateway, &m)?;
    let done = m.headers.get(headers::DONE).map(|v| v.as_str().to_string());
    let from = m.headers.get(headers::SCAN_FROM).and_then(|v| v.as_str().parse::<u64>().ok());
    let (Some(done), Some(from)) = (done, from) else {
        // Written before relais published live records during a replay:
        // the stream is a gap-free prefix, its last message ends it.
        held.insert(0..=b);
        return Ok((last, held));
    };
    held =
        headers::parse(&done).ok_or_else(|| lost(format!("stream {name}: message {last} has a bad {} header {done:?}", headers::DONE)))?;
    held.insert(a..=b);
    let from = from.max(first);
    let s = &s;
    let mut reads = futures::stream::iter(from..last).map(|q| message(s, q)).buffer_unordered(READ_AHEAD);
    while let Some(m) = reads.next().await {
        if let Some(m) = m? {
            let (a, b) = range_of(cfg, gateway, &m)?;
            held.insert(a..=b);
        }
    }
    if last > from {
        tracing::debug!(stream = %name, from, last, "read back the messages that may hold records not yet acknowledged");
    }
    Ok((last, held))
}
