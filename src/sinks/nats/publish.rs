//! The publisher of one connection: publishes in the order handed over,
//! many PubAcks in flight, each message chained to the stream sequence
//! before it and carrying relais's headers (see `headers.rs`).
//!
//! Message *i* of the connection (1, 2, …) is published with
//! `Nats-Expected-Last-Sequence` = `start + i − 1`, where `start` is the
//! stream's last sequence at connect: the server stores it, if at all, at
//! stream sequence `start + i` exactly. So the publisher knows where each
//! message lands before its PubAck, and `Relais-Scan-From` (the sequence of
//! the oldest message still waiting for its PubAck) is exact.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::encode::NatsMsg;
use super::headers;
use crate::sinks::driver::{Lost, Outcome, SeqSet, Token};

/// One connection's chain.
pub struct Chain {
    /// The JetStream context (its `max_ack_inflight` bounds the PubAcks awaited).
    pub js: jetstream::Context,
    /// The stream's name (`Nats-Expected-Stream`).
    pub stream: String,
    /// The stream's last sequence at connect.
    pub start: u64,
    /// Records known stored or needing no sending, shared with the sink.
    pub known: Arc<Mutex<SeqSet>>,
}

/// What a failed publish means for the connection.
pub fn failed(kind: PublishErrorKind, e: &dyn std::fmt::Display, stream: &str) -> Lost {
    Lost::new(match kind {
        PublishErrorKind::WrongLastSequence => {
            format!("stream {stream} did not store an earlier message (or another publisher wrote to it): {e}; reading it back again")
        }
        PublishErrorKind::TimedOut => format!("no PubAck in time: {e}"),
        PublishErrorKind::StreamNotFound => format!("no stream captures the subject (is {stream} configured for it?): {e}"),
        _ => format!("publish failed: {e}"),
    })
}

/// A PubAck awaited: the message's index in the chain, its token and records.
type Acked = (u64, Token, (u64, u64), Result<(), PublishError>);

async fn acked(i: u64, token: Token, seqs: (u64, u64), ack: PublishAckFuture) -> Acked {
    (i, token, seqs, ack.await.map(|_| ()))
}

impl Chain {
    fn publish(&self, m: &NatsMsg, i: u64, unacked: &BTreeSet<u64>) -> PublishMessage {
        let done = headers::render(&self.known.lock().unwrap_or_else(|p| p.into_inner()));
        let from = self.start + unacked.first().copied().unwrap_or(i);
        PublishMessage::build()
            .payload(m.payload.clone())
            .message_id(&m.id)
            .expected_stream(&self.stream)
            .expected_last_sequence(self.start + i - 1)
            .header(headers::DONE, done.as_str())
            .header(headers::SCAN_FROM, from.to_string().as_str())
    }

    /// Runs until the driver drops the connection or a publish fails.
    pub async fn run(self, mut rx: mpsc::Receiver<(NatsMsg, Token)>, out: mpsc::UnboundedSender<Outcome>) {
        let mut acks = FuturesUnordered::new();
        let mut unacked: BTreeSet<u64> = BTreeSet::new();
        let mut i = 0;
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some((m, token)) = m else { return };
                    let publish = self.publish(&m, i + 1, &unacked);
                    match self.js.send_publish(m.subject, publish).await {
                        Ok(ack) => {
                            i += 1;
                            unacked.insert(i);
                            acks.push(acked(i, token, m.seqs, ack));
                        }
                        Err(e) if matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded) => {
                            let _ = out.send(Outcome::Refused { token, reason: format!("{e} (lower max_message_bytes)") });
                        }
                        Err(e) => {
                            let _ = out.send(Outcome::Lost(failed(e.kind(), &e, &self.stream)));
                            return;
                        }
                    }
                }
                Some((i, token, (a, b), r)) = acks.next(), if !acks.is_empty() => {
                    unacked.remove(&i);
                    match r {
                        // A duplicate was stored before: delivered all the same.
                        Ok(()) => {
                            self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(a..=b);
                            let _ = out.send(Outcome::Acked(token));
                        }
                        Err(e) => {
                            let _ = out.send(Outcome::Lost(failed(e.kind(), &e, &self.stream)));
                            return;
                        }
                    }
                }
            }
        }
    }
}
