//! The birth/death sequence number (`bdSeq`), persisted in the data folder.
//!
//! Sparkplug 3.0 §5.4 (tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq):
//! the Will of every MQTT CONNECT carries `bdSeq`, one more than in the
//! previous CONNECT, 255 wrapping to 0; the NBIRTH that follows carries the
//! same value. A host matches an NDEATH to its NBIRTH by it, so a value
//! used twice could make a host take the Will of a dead session for the
//! death of the live one.
//!
//! - The number is written to `{data_dir}/sparkplug-{sink}.bdseq` (written
//!   to a temporary file, synced, renamed) **before** the CONNECT that
//!   carries it, so a `kill -9` or a power cut right after a CONNECT never
//!   lets the next start reuse it.
//! - A connection attempt that failed before any CONNECT could leave
//!   (TCP connection refused, no route, name not found, TLS handshake
//!   refused) keeps its number for the next attempt: a broker that is down
//!   for an hour does not burn through the 256 values. Any other failure
//!   counts as a CONNECT sent.
//! - At start the stored number counts as sent (the last process may have
//!   sent it), so the first CONNECT carries the next one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The persisted counter.
#[derive(Debug)]
pub struct BdSeq {
    path: PathBuf,
    /// The last number that went out in a CONNECT (or may have).
    last: Option<u8>,
    /// A number written for an attempt that has not (yet) sent its CONNECT.
    pending: Option<u8>,
}

impl BdSeq {
    /// Opens the counter of sink `sink` in `data_dir`. A file that cannot be
    /// read as a number 0..=255 is reported (the second value) and the
    /// counter starts at 0.
    pub fn open(data_dir: &Path, sink: &str) -> (BdSeq, Option<String>) {
        let path = data_dir.join(format!("sparkplug-{sink}.bdseq"));
        let (last, problem) = match std::fs::read_to_string(&path) {
            Ok(s) => match s.trim().parse::<u8>() {
                Ok(n) => (Some(n), None),
                Err(_) => (None, Some(format!("{}: {:?} is not a bdSeq (0..=255); starting again at 0", path.display(), s.trim()))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => (None, Some(format!("cannot read {}: {e}; starting again at 0", path.display()))),
        };
        (BdSeq { path, last, pending: None }, problem)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number for the next CONNECT, written to disk first. The error
    /// (the number could not be stored) is the caller's to report; the number
    /// is valid either way.
    pub fn for_attempt(&mut self) -> (u8, std::io::Result<()>) {
        if let Some(p) = self.pending {
            return (p, Ok(()));
        }
        let n = self.last.map_or(0, |l| l.wrapping_add(1));
        self.pending = Some(n);
        (n, self.store(n))
    }

    /// The attempt sent its CONNECT (or may have): its number is used.
    pub fn connect_sent(&mut self) {
        if let Some(p) = self.pending.take() {
            self.last = Some(p);
        }
    }

    fn store(&self, n: u8) -> std::io::Result<()> {
        let tmp = self.path.with_extension("bdseq.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{n}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Whether a connection error (rumqttc's text) happened before a CONNECT
/// packet could be written: refused or unreachable TCP, an unknown name, a
/// TLS handshake that failed.
pub fn before_connect(error: &str) -> bool {
    const MARKS: &[&str] = &[
        "Connection refused (os error",
        "Network is unreachable",
        "No route to host",
        "failed to lookup address",
        "Name or service not known",
    ];
    error.starts_with("TLS:") || MARKS.iter().any(|m| error.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_on_each_connect_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, p) = BdSeq::open(dir.path(), "sp");
        assert!(p.is_none());
        assert_eq!(b.for_attempt().0, 0);
        // Refused before CONNECT: the same number again.
        assert_eq!(b.for_attempt().0, 0);
        b.connect_sent();
        assert_eq!(b.for_attempt().0, 1);
        b.connect_sent();
        // A restart (kill -9 after the CONNECT): the stored number counts as sent.
        let (mut b, _) = BdSeq::open(dir.path(), "sp");
        assert_eq!(b.for_attempt().0, 2);
        // Stored before the CONNECT: a crash now still moves on.
        let (mut b, _) = BdSeq::open(dir.path(), "sp");
        assert_eq!(b.for_attempt().0, 3);
        std::fs::write(b.path(), "255\n").unwrap();
        let (mut b, _) = BdSeq::open(dir.path(), "sp");
        assert_eq!(b.for_attempt().0, 0, "255 wraps to 0");
    }

    #[test]
    fn a_damaged_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sparkplug-sp.bdseq"), "banana").unwrap();
        let (mut b, p) = BdSeq::open(dir.path(), "sp");
        assert!(p.unwrap().contains("sparkplug-sp.bdseq"));
        assert_eq!(b.for_attempt().0, 0);
    }

    #[test]
    fn errors_before_connect() {
        assert!(before_connect("I/O: Connection refused (os error 111)"));
        assert!(before_connect("TLS: invalid peer certificate"));
        assert!(!before_connect("Network timeout"));
        assert!(!before_connect("I/O: connection reset by peer"));
    }
}
