//! Exit codes of the `relais` binary, and the mark of a start-up error that
//! restarting will not fix.
//!
//! | code | meaning | systemd (`deploy/relais.service`) |
//! |---|---|---|
//! | 0 | success (a clean stop on SIGTERM) | |
//! | 1 | an error that may pass (a broker or database briefly unavailable…) | restarted |
//! | 2 | the configuration is invalid (`relais check` says why) | not restarted |
//! | 3 | `relais import`: some records were quarantined | |
//! | 4 | a start-up error that will not fix itself: `data_dir` is a file or cannot be created, a `listen` address is in use or not available, a certificate or key cannot be read | not restarted |
//! | 130 | `relais import` interrupted (SIGINT/SIGTERM) | |

use std::fmt;
use std::io::ErrorKind;

/// An error that may pass: systemd restarts the service.
pub const FAILURE: u8 = 1;
/// The configuration is invalid.
pub const CONFIG: u8 = 2;
/// `relais import`: some records were quarantined.
pub const QUARANTINED: u8 = 3;
/// A start-up error that will not fix itself (see [`Permanent`]).
pub const PERMANENT: u8 = 4;
/// `relais import` interrupted (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// A start-up error that restarting will not fix: someone must change the
/// machine or the files first. Its message is the wrapped error's, chain
/// included.
#[derive(Debug)]
pub struct Permanent(pub anyhow::Error);

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Permanent {}

/// Marks `e` as permanent.
pub fn permanent(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Permanent(e))
}

/// I/O errors that a restart does not cure: the file system or the network
/// configuration must change first.
const PERMANENT_IO: &[ErrorKind] = &[
    ErrorKind::AddrInUse,
    ErrorKind::AddrNotAvailable,
    ErrorKind::PermissionDenied,
    ErrorKind::NotADirectory,
    ErrorKind::IsADirectory,
    ErrorKind::AlreadyExists,
    ErrorKind::ReadOnlyFilesystem,
];

/// True when `e` is marked [`Permanent`] or carries an I/O error of a kind
/// a restart does not cure (address in use, permission denied, a file where
/// a folder must be…).
pub fn is_permanent(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Permanent>() || c.downcast_ref::<std::io::Error>().is_some_and(|io| PERMANENT_IO.contains(&io.kind())))
}

/// The exit code of a failed command: [`PERMANENT`] or [`FAILURE`].
pub fn code_of(e: &anyhow::Error) -> u8 {
    if is_permanent(e) { PERMANENT } else { FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_and_marks_decide_the_code() {
        let busy = anyhow::Error::new(std::io::Error::from(ErrorKind::AddrInUse)).context("HTTP ingest cannot listen on 127.0.0.1:8080");
        assert_eq!(code_of(&busy), PERMANENT);
        assert_eq!(
            format!("{busy:#}"),
            format!("HTTP ingest cannot listen on 127.0.0.1:8080: {}", std::io::Error::from(ErrorKind::AddrInUse))
        );
        let refused = anyhow::Error::new(std::io::Error::from(ErrorKind::ConnectionRefused));
        assert_eq!(code_of(&refused), FAILURE);
        let marked = permanent(anyhow::anyhow!("ca_file /x: no certificate"));
        assert_eq!(code_of(&marked), PERMANENT);
        assert_eq!(format!("{marked:#}"), "ca_file /x: no certificate");
        assert_eq!(code_of(&anyhow::anyhow!("database is locked")), FAILURE);
    }
}
