//! The simulator's Modbus RTU lines, each on a pseudo-terminal.
//!
//! ```text
//!  master ──pty──► line task ──(valid requests tokio-modbus decodes)──► inner pty ─► tokio-modbus RTU server ─► SimService
//!                     │  ◄──────────────────────── answers ◄──────────────────────────┘
//!                     └─ exception 01 / 03 answered itself; garbage dropped and counted
//! ```
//!
//! tokio-modbus's RTU server cuts frames by the length its function code
//! implies, so it never answers a function code it does not know (FC8,
//! FC20, a lone FC43: the master sees a dead device) and, after about 20
//! bytes it cannot parse, stops serving for good ("Too many retries"). The
//! line task in front of it cuts requests by CRC and silence instead
//! ([`frames`]), hands tokio-modbus only requests it decodes, and answers
//! the others like the TCP side does (issue 9 items 20, 21).
//!
//! Should the line still fail (an I/O error, the inner server ending), it is
//! started again on a new pseudo-terminal linked at the same path, with a
//! warning `simulator RTU line restarted`; a master reopens the path as it
//! would after a USB adapter was replugged.

pub mod frames;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

use super::Station;
use super::front::Triage;
use super::server::SimService;
use frames::MAX_FRAME;

/// Silence that ends a frame that is not complete on its own (3.5
/// characters at 9600 baud are 4 ms; a pseudo-terminal has no baud rate).
const SILENCE: Duration = Duration::from_millis(10);

/// Counters of one RTU line (for tests and instructors).
#[derive(Debug, Default)]
pub struct LineStats {
    /// Bytes dropped because they formed no request.
    pub dropped_bytes: AtomicU64,
    /// Requests answered with an exception by the line itself (01 or 03).
    pub line_exceptions: AtomicU64,
    /// Times the line was started again after a failure.
    pub restarts: AtomicU64,
}

impl LineStats {
    /// `(dropped_bytes, line_exceptions, restarts)`.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (l(&self.dropped_bytes), l(&self.line_exceptions), l(&self.restarts))
    }
}

#[allow(unsafe_code)] // SAFETY: see the call site
unsafe extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}

#[allow(unsafe_code)]
fn unlock(fd: i32) {
    const LOCK_UN: i32 = 8;
    // SAFETY: flock only changes the advisory lock of a descriptor we own.
    unsafe {
        flock(fd, LOCK_UN);
    }
}

/// A pseudo-terminal pair whose serial end is linked at `link`: (our end,
/// the serial end kept open, its name).
pub fn open_pty(link: &Path) -> anyhow::Result<(SerialStream, SerialStream, String)> {
    use tokio_serial::SerialPort;
    let (master, mut slave) = SerialStream::pair().map_err(|e| anyhow::anyhow!("simulator cannot create a pseudo-terminal: {e}"))?;
    let _ = slave.set_exclusive(false);
    // Release our lock on the serial end so a client can open it
    // exclusively, as it would a real port.
    unlock(std::os::fd::AsRawFd::as_raw_fd(&slave));
    let name = slave.name().ok_or_else(|| anyhow::anyhow!("the pseudo-terminal has no name"))?;
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(&name, link).map_err(|e| anyhow::anyhow!("simulator cannot link {} to {name}: {e}", link.display()))?;
    Ok((master, slave, name))
}

/// Serves `stations` on the line linked at `link`, from the pseudo-terminal
/// `first` ([`open_pty`]), until aborted; restarts the line after a failure.
pub async fn run(link: PathBuf, stations: Arc<HashMap<u8, Arc<Station>>>, first: (SerialStream, SerialStream), stats: Arc<LineStats>) {
    let (mut master, mut slave) = first;
    loop {
        let error = match serve(master, &stations, &stats).await {
            Ok(()) => "the line ended".to_string(),
            Err(e) => e.to_string(),
        };
        drop(slave);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let restarts = stats.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        match open_pty(&link) {
            Ok((m, s, name)) => {
                tracing::warn!(serial = %link.display(), pty = %name, %error, restarts, "simulator RTU line restarted");
                (master, slave) = (m, s);
            }
            Err(e) => {
                tracing::error!(serial = %link.display(), error = %e, "simulator RTU line stopped: cannot reopen it");
                return;
            }
        }
    }
}

/// One life of a line: the inner tokio-modbus server, and the loop cutting
/// requests out of what the masters write.
async fn serve(mut master: SerialStream, stations: &Arc<HashMap<u8, Arc<Station>>>, stats: &LineStats) -> anyhow::Result<()> {
    let (inner_server, mut inner) = SerialStream::pair()?;
    let service = SimService { stations: stations.clone(), serial: true, watch: None };
    let mut server = tokio::spawn(tokio_modbus::server::rtu::Server::new(inner_server).serve_forever(service.clone()));
    let _abort = AbortOnDrop(server.abort_handle());
    let mut units: Vec<u8> = stations.keys().copied().collect();
    units.sort_unstable();
    let mut pending: Vec<u8> = Vec::new();
    let (mut rx, mut back) = ([0u8; 512], [0u8; 512]);
    loop {
        let quiet = tokio::time::sleep(SILENCE);
        tokio::select! {
            n = master.read(&mut rx) => {
                let n = n?;
                if n == 0 {
                    anyhow::bail!("the pseudo-terminal closed");
                }
                pending.extend_from_slice(&rx[..n]);
                if crate::sources::modbus::frame::crc_ok(&pending) || pending.len() > 2 * MAX_FRAME {
                    let bytes = std::mem::take(&mut pending);
                    handle(&bytes, &units, &mut master, &mut inner, &service, stats).await?;
                }
            }
            n = inner.read(&mut back) => {
                let n = n?;
                master.write_all(&back[..n]).await?;
            }
            r = &mut server => {
                anyhow::bail!("the RTU server ended: {}", r.map_or_else(|e| e.to_string(), |r| r.err().map_or("no error".into(), |e| e.to_string())));
            }
            _ = quiet, if !pending.is_empty() => {
                let bytes = std::mem::take(&mut pending);
                handle(&bytes, &units, &mut master, &mut inner, &service, stats).await?;
            }
        }
    }
}

/// Serves the request found in `bytes` (if any) and counts what was dropped.
async fn handle(
    bytes: &[u8],
    units: &[u8],
    master: &mut SerialStream,
    inner: &mut SerialStream,
    service: &SimService,
    stats: &LineStats,
) -> std::io::Result<()> {
    if crate::sources::modbus::frame::crc_ok(bytes) && !units.contains(&bytes[0]) {
        // A request for a unit elsewhere on the bus (or a broadcast): not ours.
        return Ok(());
    }
    let found = frames::salvage(bytes, units);
    let dropped = found.as_ref().map_or(bytes.len(), |f| f.dropped);
    if dropped > 0 {
        stats.dropped_bytes.fetch_add(dropped as u64, Ordering::Relaxed);
        tracing::debug!(dropped, "simulator RTU line: dropped bytes that form no request for a unit of the line");
    }
    let Some(f) = found else { return Ok(()) };
    match frames::triage(&f.frame) {
        Triage::Serve => inner.write_all(&f.frame).await,
        Triage::Ignore => Ok(()),
        Triage::Exception(code) => {
            let (unit, fc) = (f.frame[0], f.frame[1]);
            let Some(code) = service.refusal(unit, code).await else { return Ok(()) };
            stats.line_exceptions.fetch_add(1, Ordering::Relaxed);
            master.write_all(&frames::exception_frame(unit, fc, code)).await
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
