//! The copy loop of one direction of one connection. With no toxic active
//! it is a plain copy (read, then `write_all` of what was read, as
//! `tokio::io::copy` does: nothing is added but a look at the toxic set per
//! chunk); the read also wakes when the toxic set changes, so a toxic acts on
//! an open connection at once. With toxics it takes the toxic path: latency,
//! pacing, slicing, budgets, Modbus framing and rewrites, dead directions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Protocol;
use super::modbus::{Framer, wrong_tid};
use super::toxic::{Active, Direction};

/// Why a connection must end at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Close both sockets with RST (`SO_LINGER` 0).
    Reset,
    /// Close both sockets (FIN).
    Close,
}

/// What one direction needs besides its two halves.
pub struct Way<'a> {
    /// `Upstream` (client → server) or `Downstream`.
    pub way: Direction,
    /// The protocol spoken (Modbus framing for the Modbus-aware toxics).
    pub protocol: Protocol,
    /// Jitter source, seeded per connection and direction.
    pub rng: fastrand::Rng,
    /// Modbus requests forwarded on this connection (the upstream way counts,
    /// the downstream way waits on it for `late_response`).
    pub requests: &'a watch::Sender<u64>,
    /// Bytes forwarded on this connection under `limit_data`, both ways.
    pub used: &'a AtomicU64,
}

/// Read buffer size (as `tokio::io::copy`'s 8 KiB, doubled).
const BUF: usize = 16 * 1024;

/// A unit waiting for its time (`latency`): reads go on meanwhile, as in
/// Toxiproxy, so a stream is delayed, not slowed down.
struct Item {
    due: Instant,
    bytes: Vec<u8>,
    /// 2 for `duplicate_response`.
    copies: u8,
    /// A Modbus request: counted when written (for `late_response`).
    request: bool,
}

/// Bytes waiting in the latency queue above which reading pauses.
const MAX_QUEUED: usize = 4 << 20;

/// The latency queue of one direction: due times never go backwards, so
/// jitter never reorders bytes.
#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    last_due: Option<Instant>,
}

impl Queue {
    fn push(&mut self, due: Instant, bytes: Vec<u8>, copies: u8, request: bool) {
        if bytes.is_empty() {
            return;
        }
        let due = self.last_due.map_or(due, |l| l.max(due));
        self.last_due = Some(due);
        self.bytes += bytes.len();
        self.items.push_back(Item { due, bytes, copies, request });
    }

    fn pop(&mut self) -> Option<Item> {
        let i = self.items.pop_front()?;
        self.bytes -= i.bytes.len();
        Some(i)
    }
}

/// Copies `src` to `dst` until `src` ends (then `dst` is shut down: a
/// half-close) or the connection must be cut.
pub async fn pump<R, W>(src: &mut R, dst: &mut W, mut w: Way<'_>, mut toxics: watch::Receiver<Arc<Active>>) -> Result<(), Cut>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    let mut framer = Framer::default();
    let mut requests = w.requests.subscribe();
    // late_response: the response held and the request count when it came.
    let mut held: Option<(Vec<u8>, u64)> = None;
    let mut queue = Queue::default();
    let mut pace = Instant::now();
    loop {
        let t = toxics.borrow_and_update().clone();
        if t.reset() {
            return Err(Cut::Reset);
        }
        if t.down() || (w.protocol == Protocol::Mqtt && t.refuse_connect()) {
            return Err(Cut::Close);
        }
        if t.is_empty() && framer.is_empty() && held.is_none() && queue.items.is_empty() {
            let n = tokio::select! {
                r = src.read(&mut buf) => r.map_err(read_cut)?,
                c = toxics.changed() => { c.map_err(|_| Cut::Close)?; continue }
            };
            if n == 0 {
                let _ = dst.shutdown().await;
                return Ok(());
            }
            dst.write_all(&buf[..n]).await.map_err(|_| Cut::Close)?;
            continue;
        }
        let (late, wrong, dup) = if w.protocol == Protocol::Modbus { t.modbus() } else { (false, false, false) };
        let framing = late || wrong || dup;
        let copies = if dup { 2 } else { 1 };
        let now = Instant::now();
        if !framing && !framer.is_empty() {
            queue.push(now, framer.take(), 1, false);
        }
        if !late && let Some((h, _)) = held.take() {
            queue.push(now, h, copies, false);
        }
        let cap = t.bandwidth().map_or(BUF, |r| usize::try_from(r / 20).unwrap_or(BUF).clamp(1, BUF));
        let held_at = held.as_ref().map(|h| h.1);
        let due = queue.items.front().map(|i| i.due);
        let n = tokio::select! {
            r = src.read(&mut buf[..cap]), if queue.bytes < MAX_QUEUED => r.map_err(read_cut)?,
            c = toxics.changed() => { c.map_err(|_| Cut::Close)?; continue }
            () = next_request(&mut requests, held_at), if held_at.is_some() => {
                if let Some((h, _)) = held.take() {
                    queue.push(Instant::now(), h, copies, false);
                }
                continue;
            }
            () = tokio::time::sleep_until(due.unwrap_or(now)), if due.is_some() => {
                if let Some(i) = queue.pop() {
                    deliver(dst, i, &t, &w, &mut pace).await?;
                }
                continue;
            }
        };
        let at = Instant::now();
        if n == 0 {
            while let Some(i) = queue.pop() {
                tokio::time::sleep_until(i.due).await;
                deliver(dst, i, &t, &w, &mut pace).await?;
            }
            return closed(dst, &mut toxics, w.way, framer.take(), held.take().map(|h| h.0), &mut pace).await;
        }
        if t.dead(w.way) {
            continue;
        }
        let due = at + t.latency(w.way).map_or(Duration::ZERO, |(l, j)| jittered(l, j, &mut w.rng));
        if !framing {
            queue.push(due, buf[..n].to_vec(), 1, false);
            continue;
        }
        for mut u in framer.push(&buf[..n]) {
            if w.way == Direction::Upstream {
                queue.push(due, u, 1, true);
                continue;
            }
            if wrong {
                wrong_tid(&mut u);
            }
            if late {
                if let Some((h, _)) = held.take() {
                    queue.push(due, h, copies, false);
                }
                held = Some((u, *w.requests.borrow()));
                continue;
            }
            queue.push(due, u, copies, false);
        }
    }
}

/// Writes a queued unit; a request is counted once written.
async fn deliver<W: AsyncWrite + Unpin>(dst: &mut W, i: Item, t: &Active, w: &Way<'_>, pace: &mut Instant) -> Result<(), Cut> {
    Out { t, used: w.used, copies: i.copies }.write(dst, &i.bytes, pace).await?;
    if i.request {
        w.requests.send_modify(|c| *c += 1);
    }
    Ok(())
}

/// `src` ended: a dead direction keeps the close to itself until the toxic is
/// cleared; then what is pending is written, `slow_close` waits, and `dst` is
/// shut down.
async fn closed<W: AsyncWrite + Unpin>(
    dst: &mut W,
    toxics: &mut watch::Receiver<Arc<Active>>,
    way: Direction,
    pending: Vec<u8>,
    held: Option<Vec<u8>>,
    pace: &mut Instant,
) -> Result<(), Cut> {
    let t = loop {
        let t = toxics.borrow_and_update().clone();
        if t.reset() {
            return Err(Cut::Reset);
        }
        if t.down() {
            return Err(Cut::Close);
        }
        if !t.dead(way) {
            break t;
        }
        toxics.changed().await.map_err(|_| Cut::Close)?;
    };
    let out = Out { t: &t, used: &AtomicU64::new(0), copies: 1 };
    for bytes in held.into_iter().chain([pending]) {
        out.write(dst, &bytes, pace).await?;
    }
    if let Some(d) = t.slow_close() {
        tokio::time::sleep(d).await;
    }
    let _ = dst.shutdown().await;
    Ok(())
}

/// How the toxic path writes one unit (a chunk or a Modbus ADU).
#[derive(Clone, Copy)]
struct Out<'a> {
    t: &'a Active,
    used: &'a AtomicU64,
    /// 2 for `duplicate_response`.
    copies: u8,
}

impl Out<'_> {
    /// Writes `bytes` `copies` times under `limit_data` (a cut once the
    /// budget is reached, after the bytes that still fit), `slicer` (segments
    /// with a pause between them) and `bandwidth` (each write waits for its
    /// turn at the rate).
    async fn write<W: AsyncWrite + Unpin>(&self, dst: &mut W, bytes: &[u8], pace: &mut Instant) -> Result<(), Cut> {
        if bytes.is_empty() {
            return Ok(());
        }
        for _ in 0..self.copies {
            let mut bytes = bytes;
            let mut spent = false;
            if let Some(limit) = self.t.limit_data() {
                let len = bytes.len() as u64;
                let before = self.used.fetch_add(len, Ordering::Relaxed);
                if before + len >= limit {
                    let fits = usize::try_from(limit.saturating_sub(before)).unwrap_or(0).min(bytes.len());
                    bytes = &bytes[..fits];
                    spent = true;
                }
            }
            let (seg, gap) = self.t.slicer().unwrap_or((bytes.len().max(1), Duration::ZERO));
            for (i, piece) in bytes.chunks(seg).enumerate() {
                if i > 0 && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                if let Some(rate) = self.t.bandwidth() {
                    tokio::time::sleep_until(*pace).await;
                    let cost = Duration::from_secs_f64(piece.len() as f64 / rate as f64);
                    *pace = (*pace).max(Instant::now()) + cost;
                }
                dst.write_all(piece).await.map_err(|_| Cut::Close)?;
            }
            if spent {
                let _ = dst.flush().await;
                return Err(Cut::Close);
            }
        }
        Ok(())
    }
}

/// Waits until more than `held_at` requests were forwarded (the guard of
/// the watch value is not held across the caller's awaits).
async fn next_request(requests: &mut watch::Receiver<u64>, held_at: Option<u64>) {
    let _ = requests.wait_for(|c| held_at.is_some_and(|h| *c > h)).await.map(|_| ());
}

/// A read error: a reset by the peer is passed on as a reset.
fn read_cut(e: std::io::Error) -> Cut {
    if e.kind() == std::io::ErrorKind::ConnectionReset { Cut::Reset } else { Cut::Close }
}

/// `latency` ± `jitter`, uniform, never below zero.
fn jittered(latency: Duration, jitter: Duration, rng: &mut fastrand::Rng) -> Duration {
    if jitter.is_zero() {
        return latency;
    }
    let j = jitter.as_secs_f64();
    let d = latency.as_secs_f64() + (rng.f64() * 2.0 - 1.0) * j;
    Duration::from_secs_f64(d.max(0.0))
}
