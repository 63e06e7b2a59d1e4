//! Connection state of one device: open a session (GetEndpoints, then the
//! library's reconnecting session), serve its events until it ends, report
//! outages once per state change, and back off between attempts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opcua::client::Session;
use opcua::types::EndpointDescription;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pump::{self, Event, PumpCtx};
use super::watchdog::{Heartbeat, PublishWatchdog};
use super::{Device, RETRY_MISSING, Rebuild};
use crate::model::{Severity, reason};
use crate::sources::opcua::client::{OpenError, build_client, check_server_certificate, explain, identity_token, open_session};
use crate::util::exponential;

/// The next write job; never resolves without a queue.
async fn next_job(rx: &mut Option<mpsc::Receiver<crate::component::actuate::WriteJob>>) -> Option<crate::component::actuate::WriteJob> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// How one session ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    Cancelled,
    Lost,
}

impl Device {
    /// Runs until `cancel` fires; then closes the session (CloseSession with
    /// its subscriptions) so the server frees it at once.
    pub async fn run(mut self, cancel: CancellationToken) {
        let (client, discovery) =
            match (build_client(&self.dev, &self.pki, &self.gateway_id, true), build_client(&self.dev, &self.pki, &self.gateway_id, false))
            {
                (Ok(c), Ok(d)) => (c, d),
                (Err(e), _) | (_, Err(e)) => return self.fatal(&cancel, format!("{e:#}")).await,
            };
        let identity = match identity_token(&self.dev.identity) {
            Ok(i) => i,
            Err(e) => return self.fatal(&cancel, format!("{e:#}")).await,
        };
        let mut failures: u32 = 0;
        loop {
            // 1. GetEndpoints, to pick the configured policy and mode.
            let opened = tokio::select! {
                _ = cancel.cancelled() => return,
                r = open_session(&discovery, &client, &self.dev, identity.clone()) => r,
            };
            let opened = opened.and_then(|(s, l, ep)| check_server_certificate(&self.dev, &self.pki, &ep).map(|()| (s, l, ep)));
            let (session, event_loop, ep) = match opened {
                Ok(x) => x,
                Err(e) => {
                    self.open_failed(e, &mut failures).await;
                    if !self.wait(&cancel, &mut failures).await {
                        return;
                    }
                    continue;
                }
            };
            self.warn_untrusted(&ep, failures);
            // 2. The event loop runs in its own task: service calls made here
            // need it to be polled while this task awaits them.
            let ctx = PumpCtx {
                reconnect_max: self.dev.reconnect_max,
                session_timeout: self.dev.session_timeout + Duration::from_secs(1),
                last_publish: self.last_publish.clone(),
                epoch: self.epoch,
                samples: self.samples_tx.clone(),
            };
            let (pump, mut ev_rx) = pump::spawn(event_loop, ctx);
            let session_end = self.serve(&session, &mut ev_rx, &cancel, &mut failures).await;
            // 3. Close the session, then stop the event loop.
            let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
            pump.abort();
            for s in &mut self.subs {
                s.id = None;
            }
            if session_end == End::Cancelled {
                return;
            }
            self.down(&format!("{}: session to {} ended", reason::COMM_FAILURE, self.dev.endpoint)).await;
            if !self.wait(&cancel, &mut failures).await {
                return;
            }
        }
    }

    /// Reports a session that could not be opened (before the backoff wait).
    async fn open_failed(&mut self, e: OpenError, failures: &mut u32) {
        match e {
            OpenError::Unreachable(m) => {
                let m = match crate::sources::opcua::client::probe(&self.dev.endpoint).await {
                    Err(net) => net,
                    Ok(()) => m,
                };
                self.problem(&format!("OPC UA server unreachable: {m}; retrying with backoff"), *failures + 1);
                self.down(&format!("{}: {m}", reason::COMM_FAILURE)).await;
            }
            OpenError::NoEndpoint(m) => {
                self.problem(&format!("{m}; fix security_policy/security_mode (retried with backoff)"), *failures + 1);
                self.down(&format!("{}: {m}", reason::CONFIG_ERROR)).await;
                *failures = (*failures).max(8);
            }
            OpenError::Certificate(m) => {
                self.problem(&format!("OPC UA connect refused by the gateway: {m} (retried with backoff)"), *failures + 1);
                self.down(&format!("{}: {m}", reason::COMM_FAILURE)).await;
                *failures = (*failures).max(8);
            }
        }
    }

    /// Says so when the server's certificate is not trusted yet (the
    /// connection will be refused until it is).
    fn warn_untrusted(&mut self, ep: &EndpointDescription, failures: u32) {
        if self.dev.policy != crate::sources::opcua::config::Policy::None
            && let Some(cert) = self.pki.server_cert(ep)
            && !cert.trusted
        {
            let thumbprint = cert.thumbprint;
            self.problem(
                &format!(
                    "the server's certificate (thumbprint {thumbprint}) is not in the trust list {}: the connection will be refused until it is \
                     (set trust_server_certificate, or move it from {} once it appears there)",
                    self.pki.dir.join("trusted").display(),
                    self.pki.dir.join("rejected").display()
                ),
                failures + 1,
            );
        }
    }

    /// Handles one session's events and polls until it ends.
    async fn serve(
        &mut self,
        session: &Arc<Session>,
        ev_rx: &mut mpsc::UnboundedReceiver<Event>,
        cancel: &CancellationToken,
        failures: &mut u32,
    ) -> End {
        let mut retry_at = Instant::now() + RETRY_MISSING;
        let mut heartbeat = Heartbeat::new(self.dev.keep_alive);
        let mut watchdog = PublishWatchdog::new(self.dev.keep_alive);
        loop {
            let next_poll = if self.up { self.polls.iter().map(|p| p.next_due).min() } else { None };
            let mut job = None;
            tokio::select! {
                _ = cancel.cancelled() => return End::Cancelled,
                j = next_job(&mut self.writes) => job = Some(j),
                ev = ev_rx.recv() => match ev {
                    None => return End::Lost,
                    Some(ev) => {
                        if self.on_event(ev, session, failures, &mut watchdog).await {
                            retry_at = Instant::now() + RETRY_MISSING;
                        }
                    }
                },
                _ = sleep_until_opt(next_poll) => {
                    self.poll_due(session).await;
                }
                _ = tokio::time::sleep_until(heartbeat.due()), if self.up => {
                    if self.beat(session, &mut heartbeat).await == Some(End::Lost) {
                        return End::Lost;
                    }
                }
                _ = tokio::time::sleep_until(watchdog.due()), if self.up => {
                    if self.watch_publish(session, &mut watchdog).await == Some(End::Lost) {
                        return End::Lost;
                    }
                }
                _ = tokio::time::sleep_until(retry_at), if self.up => {
                    retry_at = Instant::now() + RETRY_MISSING;
                    if (self.resolved.iter().any(|r| r.is_none()) || self.subs.iter().any(|s| !s.missing.is_empty() || s.id.is_none()))
                        && let Err(e) = self.rebuild(session, Rebuild::RetryMissing).await
                    {
                        tracing::debug!(device = %self.dev.name, error = %e, "retrying missing nodes failed");
                    }
                }
            }
            match job {
                Some(Some(job)) => self.write(session, job).await,
                // Queue closed (the device was registered again): stop listening.
                Some(None) => self.writes = None,
                None => {}
            }
        }
    }

    /// Acts on one event of the library's event loop; true when a session
    /// became active (its state was rebuilt).
    async fn on_event(&mut self, ev: Event, session: &Arc<Session>, failures: &mut u32, watchdog: &mut PublishWatchdog) -> bool {
        match ev {
            Event::Connected(new_session) => {
                self.connected(new_session, session, failures, watchdog).await;
                return true;
            }
            Event::Lost(code) => {
                self.down(&format!("{}: connection to {} lost ({})", reason::COMM_FAILURE, self.dev.endpoint, code)).await;
            }
            Event::SessionDead(code) => {
                tracing::warn!(device = %self.dev.name, status = %code, "the server says the session is gone; rebuilding it once");
                self.down(&format!("{}: session lost ({})", reason::COMM_FAILURE, code)).await;
            }
            Event::ConnectFailed(code) => {
                *failures += 1;
                let why = explain(code, &self.dev, &self.pki, &session.endpoint_info().endpoint).await;
                self.problem(&format!("OPC UA connect failed: {why}; retrying with backoff"), *failures);
                self.down(&format!("{}: {why}", reason::COMM_FAILURE)).await;
            }
        }
        false
    }

    /// A session is active (new or re-activated): rebuild its state.
    async fn connected(&mut self, new_session: bool, session: &Arc<Session>, failures: &mut u32, watchdog: &mut PublishWatchdog) {
        // `down` and `last_problem` stay: a flapping
        // connection reports its outage once, not per flap; the
        // first value sent re-arms the report (`SampleTx::take_flowed`).
        *failures = 0;
        tracing::info!(device = %self.dev.name, endpoint = %self.dev.endpoint, new_session,
            "OPC UA session {}", if new_session { "created" } else { "re-activated" });
        self.up = true;
        self.stats.up.store(true, Ordering::Relaxed);
        self.announce_up(new_session);
        self.last_publish.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        // The outage marked every tag comm_failure: a subscription
        // refused again says so again on its tags.
        for g in &mut self.subs {
            g.refused = None;
        }
        watchdog.reset();
        let why = if new_session { Rebuild::NewSession } else { Rebuild::Reactivated };
        if let Err(e) = self.rebuild(session, why).await {
            tracing::warn!(device = %self.dev.name, error = %e, "building the session state failed; waiting for the next reconnect");
        }
    }

    /// Marks the device down: one bad sample per tag with `why`, once per
    /// state change.
    pub(super) async fn down(&mut self, why: &str) {
        let was_up = self.up;
        self.up = false;
        self.stats.up.store(false, Ordering::Relaxed);
        self.publish_subscription_state();
        if was_up {
            self.problem(&format!("OPC UA server unreachable: {why}; tags are bad (comm_failure) until it is back"), 1);
        }
        self.announce_down(why, Severity::Warning);
        // Values flowed since the last report (through a read or a
        // subscription): this is a new outage, reported whatever its cause.
        self.new_outage_if_flowed();
        // Same outage: a new cause (the certificate now trusted, but the
        // password wrong) replaces the old one on the tags, at most once a
        // minute.
        if let Some((reported, at)) = &self.down
            && (reported == why || at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        // A new outage skips the tags a failed Read already reported.
        let new_cause = self.down.is_some();
        self.down = Some((why.to_string(), Instant::now()));
        let tags: Vec<usize> = (0..self.metas.len()).filter(|&i| new_cause || !self.outage_reported[i]).collect();
        self.outage_reported.fill(true);
        let samples = self.bad(tags, why);
        self.emit(samples).await;
    }

    /// When values flowed since the last outage report
    /// ([`super::samples::SampleTx::take_flowed`]), the next failure is a
    /// new outage: forgets the reported one and the tags it marked.
    pub(super) fn new_outage_if_flowed(&mut self) {
        if self.samples_tx.take_flowed() {
            self.down = None;
            self.outage_reported.fill(false);
        }
    }

    /// Logs a connection problem: a new one at once, the same one again at
    /// most once a minute (with the attempt count).
    fn problem(&mut self, msg: &str, attempts: u32) {
        let repeat = self.last_problem.as_ref().is_some_and(|(m, at)| m == msg && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            tracing::warn!(device = %self.dev.name, endpoint = %self.dev.endpoint, attempts, "{msg}");
            self.last_problem = Some((msg.to_string(), Instant::now()));
        }
    }

    /// A configuration problem that no retry fixes: one bad sample per tag,
    /// then wait for shutdown.
    async fn fatal(mut self, cancel: &CancellationToken, why: String) {
        tracing::error!(device = %self.dev.name, "{why}");
        let why = format!("{}: {why}", reason::CONFIG_ERROR);
        self.announce_down(&why, Severity::Error);
        let samples = self.bad(0..self.metas.len(), &why);
        self.emit(samples).await;
        cancel.cancelled().await;
    }

    /// Waits the reconnect backoff (with jitter); false when cancelled.
    async fn wait(&mut self, cancel: &CancellationToken, failures: &mut u32) -> bool {
        *failures += 1;
        let d = jitter(exponential(Duration::from_millis(500), *failures, self.dev.reconnect_max));
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// Reconnect jitter of an OPC UA device: ±25 %, so gateways restarted
/// together do not knock in step.
pub(super) fn jitter(d: Duration) -> Duration {
    crate::util::jitter(d, 0.25)
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
