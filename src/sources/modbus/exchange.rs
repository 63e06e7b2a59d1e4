//! One request/answer exchange between tokio-modbus and the wire.
//!
//! tokio-modbus's client is attached to one end of an in-memory pipe; the
//! other end is pumped here. The pump takes the encoded request from the
//! pipe, gives it the link's own transaction id (Modbus TCP), writes it to the
//! port, then reads the port and passes back through the pipe only a frame
//! that answers this request ([`frame`](super::frame)). Everything else is
//! dropped and recorded in the [`Book`]: late answers to earlier requests and
//! mismatched frames, each charged to a unit id.
//!
//! Invariants:
//! - At most one request is outstanding per link; its answer is the only
//!   frame that ever reaches tokio-modbus.
//! - Modbus TCP transaction ids are the link's, not tokio-modbus's: they go
//!   on counting across connections (from a random start), so an answer to a
//!   request of an earlier connection can never match a later request.
//! - The client side (pipe and tokio-modbus context) is rebuilt after any
//!   request that did not end with its answer, so no half-read state of
//!   tokio-modbus survives into the next request.

use std::collections::VecDeque;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_modbus::client::Context;

use super::frame::{self, Discard, Expect, MbapHead, RtuStart, Verdict};

/// Unanswered requests remembered to recognise their late answers.
const RECENT: usize = 16;
/// Modbus TCP: consecutive mismatched frames (not late answers) before the
/// connection is closed as out of step.
pub const MISMATCHES_CLOSE: u32 = 8;

/// A byte stream to a device: a TCP socket or a serial port.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How frames are delimited on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Modbus TCP: MBAP header with transaction id and length.
    Mbap,
    /// RTU: unit id, PDU, CRC (serial lines and RTU over TCP).
    Rtu,
}

/// What outlives a connection: transaction ids, unanswered requests, and
/// what was dropped, for the poller to count.
#[derive(Debug)]
pub struct Book {
    /// Framing of the line.
    pub framing: Framing,
    /// Next Modbus TCP transaction id.
    pub next_tid: u16,
    /// The request waiting for its answer.
    pub outstanding: Option<Expect>,
    /// tokio-modbus's own transaction id of the outstanding request.
    lib_tid: [u8; 2],
    /// Requests that went unanswered, oldest first.
    pub recent: VecDeque<Expect>,
    /// Dropped frames, with the unit id they are charged to.
    pub discards: Vec<(u8, Discard)>,
    /// Mismatched frames dropped during the current request.
    pub mismatched_now: Vec<String>,
    /// Consecutive mismatched frames without an answer (Modbus TCP).
    pub mismatch_run: u32,
    /// Some byte arrived during the current request.
    pub received: bool,
    /// The whole request was handed to the port.
    pub tx_done: bool,
    /// RTU bytes dropped since the last sort.
    pub junk: Vec<u8>,
    /// Last byte sent or received (for the RTU silent interval).
    pub last_activity: Option<Instant>,
}

impl Book {
    /// A fresh book; transaction ids start at a random value.
    pub fn new(framing: Framing) -> Book {
        Book {
            framing,
            next_tid: fastrand::u16(..),
            outstanding: None,
            lib_tid: [0; 2],
            recent: VecDeque::new(),
            discards: Vec::new(),
            mismatched_now: Vec::new(),
            mismatch_run: 0,
            received: false,
            tx_done: false,
            junk: Vec::new(),
            last_activity: None,
        }
    }

    /// Remembers a request that ended without its answer.
    pub fn remember(&mut self, e: Expect) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
    }

    /// Records a dropped frame, charged to `unit`.
    fn discard(&mut self, unit: u8, d: Discard) {
        match &d {
            Discard::Late(e) => {
                if let Some(i) = self.recent.iter().position(|r| r == e) {
                    self.recent.remove(i);
                }
            }
            Discard::Mismatched(why) => self.mismatched_now.push(why.clone()),
        }
        tracing::debug!(unit, "modbus frame dropped: {d}");
        self.discards.push((unit, d));
    }

    /// Sorts the RTU bytes dropped so far into late answers and mismatched
    /// runs; mismatched bytes are charged to `unit`.
    pub fn sort_junk(&mut self, unit: u8) {
        if self.junk.is_empty() {
            return;
        }
        let junk = std::mem::take(&mut self.junk);
        let recent: Vec<Expect> = self.recent.iter().copied().collect();
        for d in frame::sort_rtu_junk(&junk, &recent) {
            let charge = match &d {
                Discard::Late(e) => e.unit,
                Discard::Mismatched(_) => unit,
            };
            self.discard(charge, d);
        }
    }
}

/// An open connection: the port, the bytes read from it and not used yet,
/// and tokio-modbus's client on its pipe.
pub struct Conn {
    /// The socket or serial port.
    pub port: Box<dyn Io>,
    /// Bytes read from the port, not consumed yet.
    pub rx: Vec<u8>,
    /// tokio-modbus's client (on `pipe`'s other end).
    pub ctx: Context,
    /// Our end of the pipe.
    pub pipe: DuplexStream,
}

impl Conn {
    /// Wraps an open port.
    pub fn new(port: Box<dyn Io>, framing: Framing) -> Conn {
        let (ctx, pipe) = client(framing);
        Conn { port, rx: Vec::new(), ctx, pipe }
    }

    /// Rebuilds tokio-modbus's side (after a request that did not end with
    /// its answer); the port and its unread bytes stay.
    pub fn reset_client(&mut self, framing: Framing) {
        (self.ctx, self.pipe) = client(framing);
    }
}

fn client(framing: Framing) -> (Context, DuplexStream) {
    let (theirs, ours) = tokio::io::duplex(1024);
    let ctx = match framing {
        Framing::Mbap => tokio_modbus::client::tcp::attach(theirs),
        Framing::Rtu => tokio_modbus::client::rtu::attach(theirs),
    };
    (ctx, ours)
}

/// Why a pump stopped.
#[derive(Debug)]
pub enum PumpError {
    /// The port failed.
    Io(io::Error),
    /// The peer closed the connection.
    Closed,
    /// The stream cannot be resynchronised (Modbus TCP): close it.
    Desync(String),
    /// The answer to this request (right transaction id) is wrong.
    Wrong(String),
    /// tokio-modbus's side of the pipe ended (a bug).
    Pipe,
}

/// Length of the request frame at the start of `req`, once known.
fn request_len(framing: Framing, req: &[u8]) -> Option<usize> {
    match framing {
        Framing::Mbap => req.get(4..6).map(|l| 6 + u16::from_be_bytes([l[0], l[1]]) as usize),
        // FC1–FC6: unit, 5 PDU bytes, CRC; FC15/FC16: unit, FC, address,
        // quantity, byte count, the bytes, CRC; FC22: unit, 7 PDU bytes, CRC.
        Framing::Rtu => match req.get(1)? {
            15 | 16 => req.get(6).map(|n| 9 + *n as usize),
            22 => Some(10),
            _ => Some(8),
        },
    }
}

/// Carries one request from tokio-modbus to the port and its answer back.
/// Never returns while the exchange goes on: the caller drops it once
/// tokio-modbus has its answer (or the timeout fired).
pub async fn pump(conn_port: &mut dyn Io, pipe: &mut DuplexStream, rx: &mut Vec<u8>, book: &mut Book) -> PumpError {
    let mut req = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    while request_len(book.framing, &req).is_none_or(|n| req.len() < n) {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return PumpError::Pipe,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let expect = match book.framing {
        Framing::Mbap => {
            book.lib_tid = [req[0], req[1]];
            let tid = book.next_tid;
            book.next_tid = tid.wrapping_add(1);
            req[..2].copy_from_slice(&tid.to_be_bytes());
            Expect::of_pdu(req[6], &req[7..], tid)
        }
        Framing::Rtu => Expect::of_pdu(req[0], &req[1..req.len() - 2], 0),
    };
    book.outstanding = expect;
    if let Err(e) = conn_port.write_all(&req).await {
        return PumpError::Io(e);
    }
    if let Err(e) = conn_port.flush().await {
        return PumpError::Io(e);
    }
    book.tx_done = true;
    book.last_activity = Some(Instant::now());
    loop {
        let sifted = match book.framing {
            Framing::Mbap => sift_mbap(rx, pipe, book).await,
            Framing::Rtu => sift_rtu(rx, pipe, book).await,
        };
        if let Err(e) = sifted {
            return e;
        }
        match conn_port.read(&mut buf).await {
            Ok(0) => return PumpError::Closed,
            Ok(n) => {
                rx.extend_from_slice(&buf[..n]);
                book.received = true;
                book.last_activity = Some(Instant::now());
            }
            Err(e) => return PumpError::Io(e),
        }
    }
}

/// Modbus TCP: passes on the answer to the outstanding request, drops the rest.
async fn sift_mbap(rx: &mut Vec<u8>, pipe: &mut DuplexStream, book: &mut Book) -> Result<(), PumpError> {
    loop {
        let (len, tid, unit, function) = match frame::mbap_head(rx) {
            MbapHead::Incomplete => return Ok(()),
            MbapHead::Invalid(why) => return Err(PumpError::Desync(why)),
            MbapHead::Frame { len, tid, unit, function } => (len, tid, unit, function),
        };
        if rx.len() < len {
            return Ok(());
        }
        let mut f: Vec<u8> = rx.drain(..len).collect();
        let recent: Vec<Expect> = book.recent.iter().copied().collect();
        match frame::judge_mbap(tid, unit, function, book.outstanding.as_ref(), &recent) {
            Verdict::Answer => {
                f[..2].copy_from_slice(&book.lib_tid);
                book.outstanding = None;
                book.mismatch_run = 0;
                if pipe.write_all(&f).await.is_err() {
                    return Err(PumpError::Pipe);
                }
            }
            Verdict::Wrong(why) => {
                book.outstanding = None;
                return Err(PumpError::Wrong(why));
            }
            Verdict::Discard(d) => {
                let charge = match (&d, &book.outstanding) {
                    (Discard::Late(e), _) => e.unit,
                    (_, Some(o)) => o.unit,
                    _ => unit,
                };
                let mismatched = matches!(d, Discard::Mismatched(_));
                book.discard(charge, d);
                if mismatched {
                    book.mismatch_run += 1;
                    if book.mismatch_run >= MISMATCHES_CLOSE {
                        return Err(PumpError::Desync(format!(
                            "{} mismatched answers in a row (last: {}): the device is out of step",
                            book.mismatch_run,
                            book.mismatched_now.last().map_or("", |s| s.as_str())
                        )));
                    }
                }
            }
        }
    }
}

/// RTU: passes on the answer to the outstanding request once it is whole;
/// bytes that cannot start it are dropped into the book's junk. A frame that
/// is complete wins over an earlier candidate still waiting for bytes (a
/// junk prefix that happens to look like the start of the answer).
async fn sift_rtu(rx: &mut Vec<u8>, pipe: &mut DuplexStream, book: &mut Book) -> Result<(), PumpError> {
    let Some(e) = book.outstanding else {
        book.junk.append(rx);
        return Ok(());
    };
    let mut hold = None;
    for k in 0..rx.len() {
        match frame::rtu_start(&e, &rx[k..]) {
            RtuStart::NoMatch => {}
            RtuStart::Incomplete => {
                hold.get_or_insert(k);
            }
            RtuStart::Complete(n) => {
                book.junk.extend(rx.drain(..k));
                let f: Vec<u8> = rx.drain(..n).collect();
                book.outstanding = None;
                if pipe.write_all(&f).await.is_err() {
                    return Err(PumpError::Pipe);
                }
                return Ok(());
            }
        }
    }
    let cut = hold.unwrap_or(rx.len());
    book.junk.extend(rx.drain(..cut));
    Ok(())
}
