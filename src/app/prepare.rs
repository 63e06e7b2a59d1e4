//! Start-up checks whose failure a restart cannot cure (exit code 4): the
//! data folder, and the TLS files of the sinks and MQTT sources (checked
//! again by a configuration reload before anything changes).

use std::path::Path;

use anyhow::Context as _;

use crate::config::{SinkConfig, SourceConfig};
use crate::util::exit::permanent;

/// Creates `data_dir` (and its parents). A file in its place, or a folder
/// that cannot be created, fails with the I/O error in the chain, so
/// [`crate::util::exit::is_permanent`] tells it apart.
pub(super) fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(permanent(anyhow::anyhow!("cannot create data_dir {}: a file of that name exists", dir.display())));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data_dir {}", dir.display()))
}

/// Reads the TLS files (CA, client certificate and key) of every MQTT sink
/// and MQTT ingest source once, so an unreadable one stops the start
/// (permanent) instead of failing every reconnection.
pub(super) fn check_tls_files(sinks: &[SinkConfig], sources: &[SourceConfig]) -> anyhow::Result<()> {
    for s in sinks {
        // The cloud sinks' TLS files (CA, client certificate and key).
        let files = match s {
            SinkConfig::Http(h) => Some(&h.tls),
            _ => None,
        };
        if let Some(f) = files {
            f.client_config().map_err(|e| permanent(e.context(format!("sink {:?}: TLS", s.name()))))?;
        }
    }
    let sink_conns = sinks.iter().filter_map(|s| match s {
        SinkConfig::Mqtt(m) => Some((format!("sink {:?}", m.name), &m.conn)),
        _ => None,
    });
    let source_conns = sources.iter().filter_map(|s| match s {
        SourceConfig::MqttIn(m) => Some((format!("source {:?}", m.common.name), &m.conn)),
        _ => None,
    });
    for (who, conn) in sink_conns.chain(source_conns) {
        if conn.broker.tls {
            crate::mqtt::options(conn).map_err(|e| permanent(e.context(format!("{who}: TLS"))))?;
        }
    }
    Ok(())
}
