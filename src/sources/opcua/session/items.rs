//! MonitoredItems of one subscription: created in calls of at most the
//! server's MaxMonitoredItemsPerCall; a full subscription hands its remaining
//! tags to a new one; refused items get a bad sample and are retried every
//! [`RETRY_MISSING`]; BadNodeIdUnknown first re-reads the namespace table
//! once (field case B16).

use std::sync::Arc;

use opcua::client::Session;
use opcua::types::{
    DataChangeFilter, DataChangeTrigger, ExtensionObject, MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, ReadValueId,
    StatusCode, TimestampsToReturn,
};

use super::subscriptions::SubGroup;
use super::{Device, RETRY_MISSING};
use crate::model::{Sample, Timestamp};
use crate::sources::opcua::config::{Acquisition, Deadband};
use crate::sources::opcua::convert::status_reason;

impl Device {
    /// Creates the monitored items of `tags` in subscription group `g`, in
    /// calls of at most MaxMonitoredItemsPerCall. Failed items get a bad
    /// sample and are retried later; BadNodeIdUnknown first re-reads the
    /// namespace table once (field case B16).
    pub(super) async fn create_items(&mut self, session: &Arc<Session>, g: usize, tags: Vec<usize>) -> Result<(), String> {
        let Some(sub) = self.subs[g].id else { return Ok(()) };
        let tags: Vec<usize> = tags.into_iter().filter(|&i| self.resolved[i].is_some()).collect();
        let mut failed: Vec<(usize, StatusCode)> = Vec::new();
        let (mut i, mut created) = (0usize, 0usize);
        while i < tags.len() {
            let chunk = &tags[i..(i + self.max_items.max(1)).min(tags.len())];
            let reqs: Vec<MonitoredItemCreateRequest> = chunk.iter().map(|&t| self.item_request(t)).collect();
            match session.create_monitored_items(sub, TimestampsToReturn::Both, reqs).await {
                Ok(res) => {
                    for (&t, r) in chunk.iter().zip(res.iter()) {
                        if !r.result.status_code.is_good() {
                            failed.push((t, r.result.status_code));
                        }
                    }
                    created += chunk.len();
                    i += chunk.len();
                }
                // The subscription is full (servers that do not state their
                // MaxMonitoredItemsPerSubscription): smaller calls first, then
                // the remaining tags go to a subscription of their own.
                Err(e) if e.status().sub_code() == StatusCode::BadTooManyMonitoredItems.sub_code() => {
                    if created == 0 && chunk.len() > 1 {
                        self.max_items = chunk.len() / 2;
                        continue;
                    }
                    if created == 0 {
                        return Err("CreateMonitoredItems: BadTooManyMonitoredItems for a single item".into());
                    }
                    self.subscription_full(g, created, &tags[i..]);
                    break;
                }
                Err(e) => return Err(format!("CreateMonitoredItems: {}", e.status())),
            }
        }
        if failed.iter().any(|(_, c)| c.sub_code() == StatusCode::BadNodeIdUnknown.sub_code())
            && self.ns_recheck_allowed()
            && self.namespaces_changed(session).await
        {
            tracing::warn!(device = %self.dev.name, "BadNodeIdUnknown after connect: the namespace table changed; resolving and subscribing again");
            self.ns_changed_pending = true;
        }
        if !failed.is_empty() {
            self.items_refused(g, failed).await;
        }
        Ok(())
    }

    /// Group `g` took `created` items and the server refuses more: `rest`
    /// moves to a new group (created after the others).
    fn subscription_full(&mut self, g: usize, created: usize, rest: &[usize]) {
        self.max_per_sub = self.max_per_sub.min(created);
        let moved: std::collections::HashSet<usize> = rest.iter().copied().collect();
        self.subs[g].tags.retain(|t| !moved.contains(t));
        let interval = self.subs[g].publishing_interval;
        tracing::info!(device = %self.dev.name, items = created, moved = moved.len(),
            "the server's subscription is full (BadTooManyMonitoredItems); the remaining tags go to another subscription");
        self.subs.push(SubGroup::new(interval, rest.to_vec()));
    }

    /// Items of group `g` the server refused: a bad sample each with the
    /// status, retried later.
    async fn items_refused(&mut self, g: usize, failed: Vec<(usize, StatusCode)>) {
        let ts = Timestamp::now();
        let samples: Vec<Sample> = failed
            .iter()
            .map(|(i, c)| {
                let mut s = Sample::bad(
                    self.metas[*i].clone(),
                    format!("{} (CreateMonitoredItems on {})", status_reason(c.bits()), self.dev.tags[*i].node).into(),
                    ts,
                );
                s.status = Some(c.bits());
                s
            })
            .collect();
        tracing::warn!(device = %self.dev.name, items = failed.len(), first = %samples[0].reason.as_deref().unwrap_or(""),
            "monitored items refused by the server; retried every {}s", RETRY_MISSING.as_secs());
        self.emit(samples).await;
        self.subs[g].missing = failed.into_iter().map(|(i, _)| i).collect();
    }

    /// The CreateMonitoredItems request of tag `i`: its sampling interval,
    /// queue size and deadband (OPC UA Part 4 §7.17.2), client handle `i + 1`.
    fn item_request(&self, i: usize) -> MonitoredItemCreateRequest {
        let (sampling, queue, deadband) = match self.dev.tags[i].acquisition {
            Acquisition::Subscription { sampling_interval, queue_size, deadband, .. } => (sampling_interval, queue_size, deadband),
            Acquisition::Poll { interval } => (interval, 1, None),
        };
        let filter = match deadband {
            None => ExtensionObject::null(),
            Some(d) => {
                let (kind, value) = match d {
                    Deadband::Absolute(v) => (1, v),
                    Deadband::Percent(v) => (2, v),
                };
                ExtensionObject::from_message(DataChangeFilter {
                    trigger: DataChangeTrigger::StatusValue,
                    deadband_type: kind,
                    deadband_value: value,
                })
            }
        };
        MonitoredItemCreateRequest {
            item_to_monitor: ReadValueId::new_value(self.resolved[i].clone().unwrap_or_default()),
            monitoring_mode: MonitoringMode::Reporting,
            requested_parameters: MonitoringParameters {
                client_handle: (i + 1) as u32,
                sampling_interval: sampling.as_secs_f64() * 1000.0,
                filter,
                queue_size: queue,
                discard_oldest: true,
            },
        }
    }
}
