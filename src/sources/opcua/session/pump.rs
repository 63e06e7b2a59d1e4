//! The library's event loop, driven in its own task: service calls made by
//! the supervisor need it to be polled while the supervisor awaits them. It
//! forwards the events the supervisor acts on, stamps every Publish response
//! for the publish watchdog, and slows down reconnects the library would
//! otherwise make in a tight loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use opcua::client::{SessionConnectMode, SessionEventLoop, SessionPollResult, SubscriptionActivity, transport::TcpConnector};
use opcua::types::StatusCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connection::jitter;
use super::samples::{PUBLISH_SAMPLES, SampleTx};
use crate::util::exponential;

/// Events of the library's event loop that the supervisor acts on.
#[derive(Debug)]
pub(super) enum Event {
    /// A session is active: `true` for a new session, `false` for the lost
    /// one re-activated.
    Connected(bool),
    Lost(StatusCode),
    ConnectFailed(StatusCode),
    SessionDead(StatusCode),
}

/// What the pump needs besides the event loop.
pub(super) struct PumpCtx {
    pub reconnect_max: Duration,
    /// The session timeout plus a margin: how long a refused activation
    /// waits before the next attempt.
    pub session_timeout: Duration,
    /// Milliseconds after `epoch` of the last Publish response.
    pub last_publish: Arc<AtomicU64>,
    pub epoch: Instant,
    /// The device's sample path: the next event is read only when a whole
    /// Publish response fits in it (see `samples.rs`).
    pub samples: SampleTx,
}

/// Starts the task that drives `event_loop`; its events arrive on the
/// returned receiver.
pub(super) fn spawn(event_loop: SessionEventLoop<TcpConnector>, ctx: PumpCtx) -> (JoinHandle<()>, mpsc::UnboundedReceiver<Event>) {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Event>();
    let pump = tokio::spawn(async move {
        let stream = event_loop.enter();
        futures::pin_mut!(stream);
        let mut fails = 0u32;
        // A connection lost soon after it was made (a value the client
        // cannot decode, a server that drops us at once) would be
        // re-made at once by the library, in a tight loop: losses within
        // 10 s of the connect back off like failed connects.
        let mut connected_at: Option<Instant> = None;
        let mut quick_losses = 0u32;
        loop {
            // Subscription callbacks run while the stream is polled: keep
            // room for one Publish response first (the ring is full: the
            // server's queues hold the data meanwhile).
            ctx.samples.room_for(PUBLISH_SAMPLES as usize).await;
            let Some(ev) = stream.next().await else { break };
            let e = match ev {
                Ok(SessionPollResult::Reconnected(mode)) => {
                    fails = 0;
                    connected_at = Some(Instant::now());
                    Event::Connected(matches!(mode, SessionConnectMode::NewSession(_)))
                }
                Ok(SessionPollResult::ConnectionLost(c)) => {
                    quick_losses = if connected_at.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) { quick_losses + 1 } else { 0 };
                    if ev_tx.send(Event::Lost(c)).is_err() {
                        break;
                    }
                    if quick_losses > 0 {
                        tokio::time::sleep(jitter(exponential(Duration::from_millis(250), quick_losses, ctx.reconnect_max))).await;
                    }
                    continue;
                }
                Ok(SessionPollResult::ReconnectFailed(c)) => {
                    fails += 1;
                    let _ = ev_tx.send(Event::ConnectFailed(c));
                    tokio::time::sleep(failed_connect_wait(c, fails, &ctx)).await;
                    continue;
                }
                Ok(SessionPollResult::Subscription(SubscriptionActivity::FatalFailure(c))) => Event::SessionDead(c),
                Ok(SessionPollResult::Subscription(SubscriptionActivity::Publish)) => {
                    ctx.last_publish.store(ctx.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    continue;
                }
                Ok(_) => continue,
                Err(c) => Event::Lost(c),
            };
            if ev_tx.send(e).is_err() {
                break;
            }
        }
    });
    (pump, ev_rx)
}

/// How long to wait after the `fails`-th failed connect with status `c`.
fn failed_connect_wait(c: StatusCode, fails: u32, ctx: &PumpCtx) -> Duration {
    // Jitter on top of the library's exponential backoff,
    // so gateways restarted together do not knock in step.
    let base = exponential(Duration::from_millis(250), fails.min(6), ctx.reconnect_max);
    // A refused ActivateSession leaves the session the
    // library created on the server until it times out
    // (the library does not close it): retrying faster
    // would pile them up to BadTooManySessions and lock
    // operators out. Wait for it to expire first.
    if activation_refused(c) { ctx.session_timeout.max(base) } else { base.mul_f64(fastrand::f64() * 0.25) }
}

/// ActivateSession refusals (OPC UA Part 4 §5.6.3): the user identity or
/// the application signature was not accepted. The session was created.
fn activation_refused(c: StatusCode) -> bool {
    matches!(
        c,
        StatusCode::BadIdentityTokenRejected
            | StatusCode::BadIdentityTokenInvalid
            | StatusCode::BadUserAccessDenied
            | StatusCode::BadUserSignatureInvalid
            | StatusCode::BadApplicationSignatureInvalid
    )
}
