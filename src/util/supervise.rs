//! Supervised tasks: a long-running task that panics (a bug, or a library
//! assertion on a malformed answer) is logged and started again, never lost
//! silently and never restarted in a tight loop.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Wait before a panicked task is started again.
pub const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Spawns the task `make` builds and restarts it [`RESTART_AFTER`] after a
/// panic, until it returns normally, `make` returns `None` (it cannot be
/// built again) or `cancel` fires. `what` names the task in the log
/// (`"modbus poller for 10.0.0.5:502"`).
pub fn supervise<F, Fut>(what: String, cancel: CancellationToken, mut make: F) -> JoinHandle<()>
where
    F: FnMut() -> Option<Fut> + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Some(task) = make() else { return };
            match tokio::spawn(task).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    tracing::error!(task = %what, "{what} crashed; restarting it in {}s", RESTART_AFTER.as_secs());
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(RESTART_AFTER) => {}
                    }
                }
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_until_it_returns() {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let h = supervise("test task".into(), CancellationToken::new(), move || {
            let r = r.clone();
            Some(async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            })
        });
        h.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_the_restarts() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        supervise("test task".into(), cancel, move || {
            r.fetch_add(1, Ordering::SeqCst);
            Some(async { panic!("boom") })
        })
        .await
        .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
