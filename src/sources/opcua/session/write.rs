//! Writes executed by the device's session task, between its own service
//! calls: the Write service on the Value attribute (OPC UA Part 4 §5.10.4)
//! with the node's DataType, read first from the server.
//!
//! For each job (`component::actuate`): refused by the checks shared with
//! Modbus (`sources::writable::admit`: deadline, `writable`, `min`/`max`,
//! `interlock`, bad quality, `max_rate`) or when the value does not fit the
//! node's DataType; failed (not sent) while the
//! session is down (a job that waited longer than `request_timeout` for the
//! session is never sent late); then the old value (with `readback`), the
//! Write, whose StatusCode is the result (`opcua_status(0x…): Bad…`), and the
//! read-back. A Write whose response never came is `unknown`, never re-sent,
//! and settled by the read-back.

use std::sync::Arc;

use opcua::client::Session;
use opcua::types::{AttributeId, DataValue, NodeId, NumericRange, ReadValueId, StatusCode, TimestampsToReturn, Variant, WriteValue};

use super::Device;
use crate::component::actuate::{WriteJob, WriteOutcome, WriteResult};
use crate::model::reason;
use crate::sources::opcua::convert::{status_reason, value_of};
use crate::sources::opcua::write_value::{to_variant, type_name};
use crate::sources::writable::admit;

impl Device {
    /// Executes one write job and settles it.
    pub(super) async fn write(&mut self, session: &Arc<Session>, mut job: WriteJob) {
        let outcome = self.write_outcome(session, &mut job).await;
        job.finish(outcome);
    }

    async fn write_outcome(&mut self, session: &Arc<Session>, job: &mut WriteJob) -> WriteOutcome {
        let (name, value) = (job.request.tag.clone(), job.request.value.clone());
        let Some(t) = self.dev.tags.iter().position(|x| x.name == name) else {
            return WriteOutcome::refused(format!("unknown_tag: device {:?} has no tag {name:?}", self.dev.name));
        };
        let w = match admit(job, self.dev.tags[t].write.as_ref(), self.write_log.entry(t).or_default()) {
            Ok(w) => w.clone(),
            Err(refusal) => return refusal,
        };
        if !self.up || job.waited() > self.dev.request_timeout {
            return WriteOutcome::failed(format!("{}: no session to {} (not sent)", reason::COMM_FAILURE, self.dev.endpoint));
        }
        let Some(node) = self.resolved[t].clone() else {
            return WriteOutcome::failed(format!("{}: node of tag {name:?} not found on the server (not sent)", reason::CONFIG_ERROR));
        };
        // The node's DataType and its current value.
        let req = [ReadValueId::new(node.clone(), AttributeId::DataType), ReadValueId::new(node.clone(), AttributeId::Value)];
        let read = match session.read(&req, TimestampsToReturn::Neither, 0.0).await {
            Ok(r) => r,
            Err(e) => {
                return WriteOutcome::failed(format!("{}: reading the node's DataType: {} (not sent)", reason::COMM_FAILURE, e.status()));
            }
        };
        let data_type = match read.first().and_then(|dv| dv.value.as_ref()) {
            Some(Variant::NodeId(id)) => (**id).clone(),
            _ => return no_data_type(read.first().and_then(|dv| dv.status), &node, &name),
        };
        let variant = match to_variant(&value, &data_type) {
            Ok(v) => v,
            Err(why) => return WriteOutcome::refused(why),
        };
        let old = if w.readback { read.get(1).and_then(|dv| dv.value.as_ref()).and_then(|v| value_of(v).ok()) } else { None };
        if job.request.dry_run {
            let what = value_of(&variant).map_or_else(|_| value.to_string(), |v| v.to_string());
            let ty = type_name(&data_type);
            let mut o = WriteOutcome::new(WriteResult::Ok, Some(format!("dry_run: would write {what} as {ty} to node {node}")));
            o.old = old;
            return o;
        }
        self.write_log.entry(t).or_default().record();
        let wv = WriteValue {
            node_id: node.clone(),
            attribute_id: AttributeId::Value as u32,
            index_range: NumericRange::None,
            value: DataValue { value: Some(variant.clone()), ..Default::default() },
        };
        job.mark_sent();
        let mut o = match session.write(&[wv]).await {
            Ok(codes) => match codes.first() {
                Some(c) if c.is_good() => WriteOutcome::new(WriteResult::Ok, None),
                Some(c) => WriteOutcome::failed(status_reason(c.bits())),
                None => {
                    WriteOutcome::new(WriteResult::Unknown, Some(format!("{}: the Write response held no result", reason::PARSE_ERROR)))
                }
            },
            Err(e) => WriteOutcome::new(
                WriteResult::Unknown,
                Some(format!("{}: Write failed ({}); the request may have been applied", reason::COMM_FAILURE, e.status())),
            ),
        };
        o.old = old;
        if w.readback && matches!(o.result, WriteResult::Ok | WriteResult::Unknown) {
            self.settle_by_readback(session, &node, &variant, &mut o).await;
        }
        o
    }

    /// Reads the node's value after a write: confirms it, or settles an unknown one.
    async fn settle_by_readback(&self, session: &Arc<Session>, node: &NodeId, written: &Variant, o: &mut WriteOutcome) {
        let req = [ReadValueId::new(node.clone(), AttributeId::Value)];
        let read = session.read(&req, TimestampsToReturn::Neither, 0.0).await;
        let back = match &read {
            Ok(r) => r.first().and_then(|dv| dv.value.as_ref()).and_then(|v| value_of(v).ok()),
            Err(_) => None,
        };
        let lost = o.result == WriteResult::Unknown;
        let why = o.reason.take().unwrap_or_default();
        let Some(back) = back else {
            let e = read.err().map_or("no value".to_string(), |e| e.status().to_string());
            o.reason = Some(if lost {
                format!("{why}; read-back failed too: {e}")
            } else {
                format!("readback_failed: confirmed by the server; read-back: {e}")
            });
            return;
        };
        let holds = value_of(written).is_ok_and(|w| w == back);
        o.readback = Some(back.clone());
        (o.result, o.reason) = match (holds, lost) {
            (true, false) => (WriteResult::Ok, None),
            (true, true) => {
                (WriteResult::Ok, Some(format!("readback_settled: the answer was lost ({why}); the read-back shows the value written")))
            }
            (false, false) => {
                (WriteResult::Failed, Some(format!("readback_mismatch: the server confirmed the write but reads back {back}")))
            }
            (false, true) => (
                WriteResult::Failed,
                Some(format!("readback_mismatch: the answer was lost ({why}) and the read-back shows {back}: not applied")),
            ),
        };
    }
}

/// The outcome of a write whose node gave no DataType: refused
/// `unknown_node` when the server says the node does not exist
/// (BadNodeIdUnknown: a wrong `node_id`), `bad_node` for another bad status,
/// else failed (a malformed answer). Never sent.
fn no_data_type(status: Option<StatusCode>, node: &NodeId, tag: &str) -> WriteOutcome {
    match status.filter(|s| s.is_bad()) {
        Some(s) if s.bits() & 0xFFFF_0000 == StatusCode::BadNodeIdUnknown.bits() => WriteOutcome::refused(format!(
            "unknown_node: the server has no node {node} (node_id of tag {tag:?}): {} (not sent)",
            status_reason(s.bits())
        )),
        Some(s) => WriteOutcome::refused(format!(
            "bad_node: reading the DataType of node {node} (tag {tag:?}): {} (not sent)",
            status_reason(s.bits())
        )),
        None => WriteOutcome::failed(format!("{}: the server gave no DataType for {node} (not sent)", reason::PARSE_ERROR)),
    }
}
