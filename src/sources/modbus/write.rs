//! Writes executed by a line's poller, between two of its requests: no poll
//! and no other write can interleave with a write, its read-back, or the
//! read-modify-write of a register bit (field case B06).
//!
//! For each job ([`WriteJob`], see `component::actuate`):
//! 1. Refused, with a reason, by the checks shared with OPC UA
//!    (`sources::writable::admit`: deadline, `writable`, `min`/`max`,
//!    `interlock`, bad quality, `max_rate`), or when the value does not fit
//!    the type. A dry run stops here with `ok` and what it would have sent.
//! 2. With `readback` (the default), the tag is read first: its old value.
//! 3. The request goes out with the function code the device is configured
//!    for (never switched on an exception: the exception is the result).
//! 4. With `readback`, the tag is read again: `ok` only when it holds what
//!    was written (`readback_mismatch` otherwise). A write whose answer never
//!    came is `unknown` and never re-sent; its read-back settles it (`ok`
//!    with reason `readback_settled`, or `failed` with `readback_mismatch`).

use std::time::Duration;

use super::answer::{ReadError, Words};
use super::config::ModbusTag;
use super::decode::{apply_scale, decode};
use super::device::reason_of;
use super::link_write::WriteError;
use super::poller::EndpointPoller;
use super::types::DataType;
use super::write_plan::{self, Payload};
use crate::component::actuate::{WriteJob, WriteOutcome, WriteResult};
use crate::model::{Value, reason};
use crate::sources::writable::admit;

impl EndpointPoller {
    /// Executes one write job and settles it.
    pub(super) async fn write(&mut self, mut job: WriteJob) {
        let outcome = self.write_outcome(&mut job).await;
        job.finish(outcome);
    }

    async fn write_outcome(&mut self, job: &mut WriteJob) -> WriteOutcome {
        let (dev_name, tag_name) = (job.request.device.clone(), job.request.tag.clone());
        let Some(d) = self.devices.iter().position(|x| x.cfg.name == dev_name) else {
            return WriteOutcome::refused(format!("unknown_device: no device {dev_name:?} on this line"));
        };
        let Some(t) = self.devices[d].cfg.tags.iter().position(|x| x.name == tag_name) else {
            return WriteOutcome::refused(format!("unknown_tag: device {dev_name:?} has no tag {tag_name:?}"));
        };
        let tag = self.devices[d].cfg.tags[t].clone();
        let w = match admit(job, tag.write.as_ref(), self.write_log.entry((d, t)).or_default()) {
            Ok(w) => w,
            Err(refusal) => return refusal,
        };
        let payload = match write_plan::payload(&tag, w, &job.request.value) {
            Ok(p) => p,
            Err(why) => return WriteOutcome::refused(why),
        };
        if job.request.dry_run {
            let what = write_plan::describe(&payload, &tag, &self.devices[d].cfg.writes);
            return WriteOutcome::new(WriteResult::Ok, Some(format!("dry_run: would write {what}")));
        }
        self.write_log.entry((d, t)).or_default().record();
        self.execute_write(d, &tag, payload, w.readback, w.readback_timeout, job).await
    }

    async fn execute_write(
        &mut self,
        d: usize,
        tag: &ModbusTag,
        payload: Payload,
        readback: bool,
        rb_timeout: Duration,
        job: &mut WriteJob,
    ) -> WriteOutcome {
        let (unit, timeout, dev) = (self.devices[d].cfg.unit_id, self.devices[d].cfg.timeout, self.devices[d].cfg.writes);
        // The old value: read before writing (the register itself for a
        // read-modify-write of one bit).
        let rmw = matches!(payload, Payload::RegisterBit { .. }) && !dev.mask_write;
        let before = if readback || rmw { Some(self.read_tag(d, tag, if rmw { timeout } else { rb_timeout }).await) } else { None };
        let old = before.as_ref().and_then(|b| b.as_ref().ok()).map(|(_, v)| v.clone());
        let (fc, request) = match &payload {
            Payload::Coil(on) => write_plan::coil_request(tag.address, *on, &dev),
            Payload::Words(ws) => write_plan::words_request(tag.address, ws, &dev),
            Payload::RegisterBit { bit, on } if dev.mask_write => {
                let (and, or) = write_plan::mask(*bit, *on, tag.byte_order);
                (22, tokio_modbus::Request::MaskWriteRegister(tag.address, and, or))
            }
            Payload::RegisterBit { bit, on } => match &before {
                Some(Ok((Words::Registers(r), _))) if !r.is_empty() => {
                    let new = write_plan::modified(r[0], *bit, *on, tag.byte_order);
                    write_plan::words_request(tag.address, &[new], &dev)
                }
                Some(Err(e)) => {
                    let mut o = WriteOutcome::failed(format!("{}; the register could not be read to modify bit {bit}", reason_of(e)));
                    o.old = old;
                    return o;
                }
                _ => return WriteOutcome::failed(format!("{}: the register read gave no word", reason::PARSE_ERROR)),
            },
        };
        job.mark_sent();
        let sent = self.link.write(unit, request, timeout).await;
        self.charge_discards(d);
        let mut outcome = match sent {
            Ok(()) => WriteOutcome::new(WriteResult::Ok, None),
            Err(WriteError::Exception(c)) => WriteOutcome::failed(format!("{} (FC{fc:02})", reason::device_exception(c))),
            Err(WriteError::NotSent(why)) => {
                job.unmark_sent();
                WriteOutcome::failed(format!("{why} (FC{fc:02} not sent)"))
            }
            Err(WriteError::Lost(why)) => WriteOutcome::new(WriteResult::Unknown, Some(format!("{why} (FC{fc:02})"))),
        };
        outcome.old = old;
        if readback && matches!(outcome.result, WriteResult::Ok | WriteResult::Unknown) {
            self.settle_by_readback(d, tag, &payload, rb_timeout, &mut outcome).await;
        }
        outcome
    }

    /// Reads the tag after a write: confirms it, or settles an unknown one.
    async fn settle_by_readback(&mut self, d: usize, tag: &ModbusTag, payload: &Payload, timeout: Duration, o: &mut WriteOutcome) {
        match self.read_tag(d, tag, timeout).await {
            Ok((words, value)) => {
                let holds = holds(tag, payload, &words);
                o.readback = Some(value.clone());
                let lost = o.result == WriteResult::Unknown;
                let why = o.reason.take().unwrap_or_default();
                (o.result, o.reason) = match (holds, lost) {
                    (true, false) => (WriteResult::Ok, None),
                    (true, true) => (
                        WriteResult::Ok,
                        Some(format!("readback_settled: the answer was lost ({why}); the read-back shows the value written")),
                    ),
                    (false, false) => {
                        (WriteResult::Failed, Some(format!("readback_mismatch: the device confirmed the write but reads back {value}")))
                    }
                    (false, true) => (
                        WriteResult::Failed,
                        Some(format!("readback_mismatch: the answer was lost ({why}) and the read-back shows {value}: not applied")),
                    ),
                };
            }
            Err(e) if o.result == WriteResult::Ok => {
                o.reason = Some(format!("readback_failed: confirmed by the device; read-back: {}", reason_of(&e)))
            }
            Err(e) => o.reason = Some(format!("{}; read-back failed too: {}", o.reason.take().unwrap_or_default(), reason_of(&e))),
        }
    }

    /// Reads tag `tag` of device `d` once: its raw words and its value in
    /// engineering units.
    async fn read_tag(&mut self, d: usize, tag: &ModbusTag, timeout: Duration) -> Result<(Words, Value), ReadError> {
        let unit = self.devices[d].cfg.unit_id;
        let words = self.link.read(unit, tag.table, tag.address, tag.count(), timeout).await;
        self.charge_discards(d);
        let words = words?;
        let value = match &words {
            Words::Bits(b) => Value::Bool(b.first().copied().unwrap_or(false)),
            Words::Registers(r) => {
                let v = decode(r, tag.ty, tag.byte_order, tag.bit).map_err(|e| ReadError::InvalidFrame(e.to_string()))?;
                if tag.ty == DataType::Bool { v } else { apply_scale(v, tag.scale, tag.offset) }
            }
        };
        Ok((words, value))
    }
}

/// True when `words` (the tag read back) hold what `payload` wrote.
fn holds(tag: &ModbusTag, payload: &Payload, words: &Words) -> bool {
    match (payload, words) {
        (Payload::Coil(on), Words::Bits(b)) => b.first() == Some(on),
        (Payload::Words(ws), Words::Registers(r)) => r.get(..ws.len()) == Some(&ws[..]),
        (Payload::RegisterBit { bit, on }, Words::Registers(r)) => {
            r.first().is_some_and(|w| (super::decode::word16(*w, tag.byte_order) >> bit) & 1 == *on as u16)
        }
        _ => false,
    }
}
