//! Polled tags: groups by interval, each read with the Read service in calls
//! of at most the server's MaxNodesPerRead, one sample per tag per cycle.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opcua::client::Session;
use opcua::types::{AttributeId, ReadValueId, StatusCode, TimestampsToReturn};
use tokio::time::Instant;

use super::{Device, Rebuild};
use crate::model::{Sample, Timestamp, reason};
use crate::sources::opcua::convert::to_sample;

/// Tags polled at one interval.
pub(super) struct PollGroup {
    pub interval: Duration,
    pub tags: Vec<usize>,
    pub next_due: Instant,
}

impl Device {
    /// Polls the groups that are due.
    pub(super) async fn poll_due(&mut self, session: &Arc<Session>) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.polls.len()).filter(|&p| self.polls[p].next_due <= now).collect();
        for p in due {
            self.stats.cycles.fetch_add(1, Ordering::Relaxed);
            let tags = self.polls[p].tags.clone();
            let t0 = std::time::Instant::now();
            let unknown = self.read_tags(session, &tags).await;
            self.stats.polled(t0.elapsed());
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let group = &mut self.polls[p];
            let skipped = crate::sources::schedule::advance(&mut group.next_due, group.interval);
            self.stats.overruns.fetch_add(skipped, Ordering::Relaxed);
            if unknown
                && self.ns_recheck_allowed()
                && self.dev.tags.iter().any(|t| t.node.uri().is_some())
                && self.namespaces_changed(session).await
            {
                tracing::warn!(device = %self.dev.name, "BadNodeIdUnknown: the server's namespace table changed; resolving and subscribing again");
                if let Err(e) = self.rebuild(session, Rebuild::NewSession).await {
                    tracing::warn!(device = %self.dev.name, error = %e, "rebuilding after a namespace change failed");
                }
            }
        }
    }

    /// Reads `tags` (Read service, at most MaxNodesPerRead per call) and
    /// pushes one sample per tag. Returns whether any node was BadNodeIdUnknown.
    pub(super) async fn read_tags(&mut self, session: &Arc<Session>, tags: &[usize]) -> bool {
        let tags: Vec<usize> = tags.iter().copied().filter(|&i| self.resolved[i].is_some()).collect();
        let mut unknown = false;
        let mut out = Vec::with_capacity(tags.len());
        for chunk in tags.chunks(self.max_read.max(1)) {
            let req: Vec<ReadValueId> =
                chunk.iter().map(|&i| ReadValueId::new(self.resolved[i].clone().unwrap_or_default(), AttributeId::Value)).collect();
            let recv = Timestamp::now();
            match session.read(&req, TimestampsToReturn::Both, 0.0).await {
                Ok(values) => {
                    for (k, &i) in chunk.iter().enumerate() {
                        match values.get(k) {
                            Some(dv) => {
                                if dv.status.is_some_and(|s| s.sub_code() == StatusCode::BadNodeIdUnknown.sub_code()) {
                                    unknown = true;
                                }
                                out.push(to_sample(self.metas[i].clone(), dv, recv));
                            }
                            None => out.push(Sample::bad(
                                self.metas[i].clone(),
                                format!("{}: the server returned fewer results than nodes read", reason::PARSE_ERROR).into(),
                                recv,
                            )),
                        }
                    }
                }
                Err(e) => out.extend(self.read_failed(chunk, e.status(), recv)),
            }
        }
        self.emit(out).await;
        unknown
    }

    /// One bad sample per tag of a Read call that failed with `code`, for
    /// the tags not yet reported bad in this outage (several failed cycles,
    /// or the session's own outage report that follows, add none).
    fn read_failed(&mut self, chunk: &[usize], code: StatusCode, recv: Timestamp) -> Vec<Sample> {
        self.new_outage_if_flowed();
        let chunk: Vec<usize> = chunk.iter().copied().filter(|&i| !std::mem::replace(&mut self.outage_reported[i], true)).collect();
        let why: Arc<str> = if code.sub_code() == StatusCode::BadTimeout.sub_code() {
            format!("{}: no Read response within {:?}", reason::TIMEOUT, self.dev.request_timeout).into()
        } else {
            format!("{}: Read failed: {code}", reason::COMM_FAILURE).into()
        };
        chunk
            .iter()
            .map(|&i| {
                let mut s = Sample::bad(self.metas[i].clone(), why.clone(), recv);
                s.status = Some(code.bits());
                s
            })
            .collect()
    }
}
