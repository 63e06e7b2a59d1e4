//! Signals of the daemon: SIGTERM and SIGINT stop it (the ordered
//! shutdown), SIGHUP reloads the configuration of `relais run`
//! ([`super::reload`]), SIGUSR1 and SIGUSR2 are logged and ignored.

use tokio_util::sync::CancellationToken;
/// Cancels `token` on SIGTERM or SIGINT. SIGHUP reloads the configuration
/// when a gateway started from a file runs ([`super::reload::on_hangup`]);
/// otherwise it is logged and ignored, like SIGUSR1 and SIGUSR2 (their
/// default action would kill the process without its orderly shutdown).
pub fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, name) in
        [(SignalKind::hangup(), "SIGHUP"), (SignalKind::user_defined1(), "SIGUSR1"), (SignalKind::user_defined2(), "SIGUSR2")]
    {
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    match super::reload::hangup_target() {
                        Some(r) if name == "SIGHUP" => {
                            tracing::info!("SIGHUP received; reloading the configuration");
                            r.signal("SIGHUP");
                        }
                        _ => tracing::warn!("{name} ignored: this relais process does not reload a configuration file"),
                    }
                }
            });
        }
    }
    // Both handlers are installed before this returns (not when the task
    // first runs): a signal arriving right after start is never missed, nor
    // does it kill the process with the default action.
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::spawn(async move {
        tokio::select! {
            _ = wait_signal(int.as_mut()) => tracing::info!("SIGINT received; shutting down"),
            _ = wait_signal(term.as_mut()) => tracing::info!("SIGTERM received; shutting down"),
        }
        token.cancel();
    });
}

/// Waits for the next delivery of `s` (forever without a handler).
async fn wait_signal(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
