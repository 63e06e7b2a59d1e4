//! Subscriptions: tags grouped by publishing interval, split to the server's
//! MaxMonitoredItemsPerSubscription; after a new session the old ones are
//! transferred (TransferSubscriptions, when the namespace table is unchanged)
//! or deleted and created again (field case B18). A subscription the server
//! refuses makes its tags bad with the refusal and is retried every
//! [`RETRY_MISSING`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opcua::client::{DataChangeCallback, MonitoredItem, Session};
use opcua::types::{DataValue, ReadValueId, StatusCode, TimestampsToReturn, VariableId, Variant};

use super::samples::PUBLISH_SAMPLES;
use super::{DEFAULT_CHUNK, Device, RETRY_MISSING};
use crate::model::{Timestamp, reason};
use crate::sources::opcua::convert::to_sample;

/// A subscription of the device: tags with the same publishing interval.
pub(super) struct SubGroup {
    pub publishing_interval: Duration,
    pub tags: Vec<usize>,
    pub id: Option<u32>,
    /// Tags whose item could not be created (retried every [`RETRY_MISSING`]).
    pub missing: Vec<usize>,
    /// Why the server refused to create this subscription (its tags got a
    /// bad sample with it; retried every [`RETRY_MISSING`]).
    pub refused: Option<String>,
}

impl SubGroup {
    /// A group not created on the server yet.
    pub(super) fn new(publishing_interval: Duration, tags: Vec<usize>) -> SubGroup {
        SubGroup { publishing_interval, tags, id: None, missing: Vec::new(), refused: None }
    }
}

impl Device {
    /// After a new session or a namespace change: keeps the subscriptions
    /// of the previous session the server transfers (only with an unchanged
    /// namespace table), and forgets the others so they are created again.
    pub(super) async fn drop_old_subscriptions(&mut self, session: &Arc<Session>, ns_changed: bool) {
        let old: Vec<u32> = self.subs.iter().filter_map(|s| s.id).collect();
        if old.is_empty() {
            return;
        }
        let mut kept: Vec<u32> = Vec::new();
        if !ns_changed {
            match session.transfer_subscriptions(&old, true).await {
                Ok(res) => {
                    for (id, r) in old.iter().zip(res.iter()) {
                        if r.status_code.is_good() {
                            kept.push(*id);
                        }
                    }
                    if kept.len() < old.len() {
                        tracing::info!(device = %self.dev.name, transferred = kept.len(), total = old.len(),
                            "TransferSubscriptions refused ({}); creating the subscriptions again",
                            res.iter().find(|r| !r.status_code.is_good()).map_or(String::new(), |r| r.status_code.to_string()));
                    }
                }
                Err(e) => tracing::info!(device = %self.dev.name, status = %e.status(),
                    "TransferSubscriptions not supported; creating the subscriptions again"),
            }
        }
        let gone: Vec<u32> = old.iter().copied().filter(|id| !kept.contains(id)).collect();
        if !gone.is_empty() {
            forget_subscriptions(session, &gone).await;
        }
        for s in &mut self.subs {
            if s.id.is_some_and(|id| gone.contains(&id)) {
                s.id = None;
            }
        }
    }

    /// Creates the subscriptions that do not exist and the items that are
    /// missing in those that do.
    pub(super) async fn create_missing(&mut self, session: &Arc<Session>) -> Result<(), String> {
        // A full subscription moves its remaining tags to a new group at
        // the end (see `create_items`): the list may grow while walked.
        let mut g = 0;
        while g < self.subs.len() {
            if self.subs[g].id.is_none() {
                match self.create_subscription(session, g).await {
                    Ok(()) => self.subs[g].refused = None,
                    // The server refuses more subscriptions (BadTooManySubscriptions,
                    // a resource limit): its tags are bad with the reason, the
                    // other subscriptions go on, and it is retried later.
                    Err(e) if self.subs[g].id.is_none() => self.refused(g, e).await,
                    Err(e) => return Err(e),
                }
            } else if !self.subs[g].missing.is_empty() {
                let missing = std::mem::take(&mut self.subs[g].missing);
                self.create_items(session, g, missing).await?;
            }
            g += 1;
        }
        self.publish_subscription_state();
        Ok(())
    }

    /// Copies the subscriptions wanted and active into the device's
    /// telemetry (`relais_opcua_subscriptions` on `/metrics`).
    pub(super) fn publish_subscription_state(&self) {
        self.stats.subscriptions_wanted.store(self.subs.len() as u64, Ordering::Relaxed);
        let active = if self.up { self.subs.iter().filter(|s| s.id.is_some()).count() } else { 0 };
        self.stats.subscriptions_active.store(active as u64, Ordering::Relaxed);
    }

    /// The server refused subscription group `g` with `e`: its tags get a
    /// bad sample with the refusal, once per distinct refusal.
    async fn refused(&mut self, g: usize, e: String) {
        if self.subs[g].refused.as_deref() != Some(e.as_str()) {
            tracing::warn!(device = %self.dev.name, tags = self.subs[g].tags.len(), error = %e,
                "the server refused a subscription; its tags are bad until a retry succeeds (every {:?})", RETRY_MISSING);
            let bad = self.bad(self.subs[g].tags.clone(), &format!("{}: the server refused the subscription: {e}", reason::CONFIG_ERROR));
            self.emit(bad).await;
            self.subs[g].refused = Some(e);
        }
    }

    /// Reads the server's operation limits (OPC UA Part 5 §6.3.11) and splits
    /// the subscriptions to be created to fit them.
    pub(super) async fn read_limits(&mut self, session: &Arc<Session>) {
        let ids = [
            VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            VariableId::Server_ServerCapabilities_MaxMonitoredItemsPerSubscription,
        ];
        let req: Vec<ReadValueId> = ids.iter().map(|v| ReadValueId::new_value((*v).into())).collect();
        let limit = |dv: Option<&DataValue>| -> usize {
            match dv.and_then(|d| d.value.as_ref()) {
                Some(Variant::UInt32(n)) if *n > 0 => (*n as usize).min(DEFAULT_CHUNK * 10),
                _ => DEFAULT_CHUNK,
            }
        };
        if let Ok(r) = session.read(&req, TimestampsToReturn::Neither, 0.0).await {
            self.max_read = limit(r.first());
            self.max_items = limit(r.get(1));
            self.max_per_sub = match r.get(2).and_then(|d| d.value.as_ref()) {
                Some(Variant::UInt32(n)) if *n > 0 => *n as usize,
                _ => usize::MAX,
            };
        }
        self.partition_subs();
    }

    /// Splits the subscriptions that are to be created so that none holds
    /// more MonitoredItems than the server's MaxMonitoredItemsPerSubscription
    /// (PLCs often allow 1000 or fewer). Subscriptions that exist are kept.
    fn partition_subs(&mut self) {
        let limit = self.max_per_sub.max(1);
        if self.subs.iter().all(|s| s.id.is_some() || s.tags.len() <= limit) {
            return;
        }
        let mut out: Vec<SubGroup> = Vec::new();
        let mut pending: Vec<(Duration, Vec<usize>)> = Vec::new();
        for s in std::mem::take(&mut self.subs) {
            if s.id.is_some() {
                out.push(s);
                continue;
            }
            match pending.iter_mut().find(|(iv, _)| *iv == s.publishing_interval) {
                Some((_, t)) => t.extend(s.tags),
                None => pending.push((s.publishing_interval, s.tags)),
            }
        }
        for (iv, tags) in pending {
            for chunk in tags.chunks(limit) {
                out.push(SubGroup::new(iv, chunk.to_vec()));
            }
        }
        tracing::info!(device = %self.dev.name, subscriptions = out.len(), max_items_per_subscription = limit,
            "subscriptions split to the server's MaxMonitoredItemsPerSubscription");
        self.subs = out;
    }

    /// CreateSubscription for group `g`, then its MonitoredItems.
    async fn create_subscription(&mut self, session: &Arc<Session>, g: usize) -> Result<(), String> {
        let interval = self.subs[g].publishing_interval;
        // Keep-alive count: a publish response at least every keep_alive;
        // lifetime: 3 × that, as Part 4 §5.13.1 requires at least.
        let keep_alive = ((self.dev.keep_alive.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as u32).clamp(1, 1000);
        let lifetime = (keep_alive * 3).max((self.dev.session_timeout.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as u32);
        let metas = self.metas.clone();
        let tx = self.samples_tx.clone();
        let callback = DataChangeCallback::new(move |dv: DataValue, item: &MonitoredItem| {
            let i = item.client_handle() as usize;
            if i >= 1 && i <= metas.len() {
                tx.push(to_sample(metas[i - 1].clone(), &dv, Timestamp::now()));
            }
        });
        let id = session
            .create_subscription(interval, lifetime, keep_alive, PUBLISH_SAMPLES, 0, true, callback)
            .await
            .map_err(|e| format!("CreateSubscription ({} ms): {}", interval.as_millis(), e.status()))?;
        self.subs[g].id = Some(id);
        let tags = self.subs[g].tags.clone();
        self.subs[g].missing.clear();
        self.create_items(session, g, tags).await
    }
}

/// Deletes subscriptions of a lost session, on the server if it still has
/// them and in the library's own state in any case (the library forgets a
/// subscription only when DeleteSubscriptions answers; a server with no
/// subscription at all answers BadNoSubscription instead, so a throwaway
/// subscription is created to get per-id answers). Without this, every
/// server restart would leave the old subscriptions and their items in
/// memory for good.
async fn forget_subscriptions(session: &Arc<Session>, ids: &[u32]) {
    // In small calls: a server limits the operations per call (a refused
    // call would leave the helper subscription below on the server, where it
    // takes a place the recreated subscriptions need).
    for part in ids.chunks(4) {
        match session.delete_subscriptions(part).await {
            Err(e) if e.status().sub_code() == StatusCode::BadNoSubscription.sub_code() => {
                // The server no longer has them (a new server), so the
                // library keeps them in its own state: a call that deletes
                // one real subscription with them makes it drop them.
                let noop = DataChangeCallback::new(|_: DataValue, _: &MonitoredItem| {});
                if let Ok(tmp) = session.create_subscription(Duration::from_secs(10), 3, 1, 0, 0, false, noop).await {
                    let mut all = part.to_vec();
                    all.push(tmp);
                    if session.delete_subscriptions(&all).await.is_err() {
                        let _ = session.delete_subscriptions(&[tmp]).await;
                    }
                }
            }
            _ => {}
        }
    }
    let left = session.subscription_state().lock().subscription_ids().map_or(0, |v| v.iter().filter(|id| ids.contains(id)).count());
    if left > 0 {
        tracing::debug!(left, "old subscriptions still in the client's state");
    }
}
