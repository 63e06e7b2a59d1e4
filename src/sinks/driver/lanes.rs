//! What a sink reads next, and how far its cursor may move (pure).
//!
//! Normally there is one lane: rows are read in `seq` order after the cursor
//! and the cursor follows the contiguous acknowledged prefix.
//!
//! When the backlog (committed rows not yet read) exceeds `threshold` rows, the
//! sink splits: a **replay lane** takes the backlog up to the current head, in
//! `seq` order, and a **live lane** takes every newer row as soon as it is
//! committed. Reads alternate between the lanes, so the backlog never starves
//! live data and live data never starves the backlog. Within each lane order is
//! kept; every message carries `seq` and `ts` so consumers can reorder. Below the
//! threshold (short outages) delivery is strictly in `seq` order (field case B23).
//!
//! The durable cursor is the replay lane's acknowledged prefix while it exists,
//! then the live lane's. A crash during replay therefore resends the live rows
//! sent meanwhile: duplicates, never losses.

use std::collections::VecDeque;

use super::held::SeqSet;

/// Which lane a read belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneId {
    /// The backlog after an outage.
    Replay,
    /// Fresh rows (or the only lane).
    Live,
}

/// A read to perform: rows with `after < seq <= upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPlan {
    /// Lane of the read.
    pub lane: LaneId,
    /// Exclusive lower bound.
    pub after: u64,
    /// Inclusive upper bound.
    pub upto: u64,
}

#[derive(Debug, Clone)]
struct Batch {
    id: u64,
    /// Highest seq the batch covers (its read's upper reach).
    last: u64,
    outstanding: usize,
}

#[derive(Debug, Clone, Default)]
struct Lane {
    read_to: u64,
    acked_to: u64,
    upto: Option<u64>,
    batches: VecDeque<Batch>,
}

impl Lane {
    fn at(seq: u64) -> Lane {
        Lane { read_to: seq, acked_to: seq, upto: None, batches: VecDeque::new() }
    }

    fn has_data(&self, head: u64) -> bool {
        self.read_to < self.upto.unwrap_or(head).min(head)
    }

    fn settle(&mut self) {
        while let Some(b) = self.batches.front() {
            if b.outstanding > 0 {
                break;
            }
            self.acked_to = self.acked_to.max(b.last);
            self.batches.pop_front();
        }
    }
}

/// The lane state of one sink.
#[derive(Debug, Clone)]
pub struct Lanes {
    threshold: u64,
    replay: Option<Lane>,
    live: Lane,
    next_id: u64,
    prefer_live: bool,
}

impl Lanes {
    /// Lanes resuming after `cursor`; `threshold` = 0 never splits.
    pub fn new(cursor: u64, threshold: u64) -> Lanes {
        Lanes { threshold, replay: None, live: Lane::at(cursor), next_id: 1, prefer_live: true }
    }

    /// Lanes resuming a replay interrupted by a restart: the replay covers
    /// `(cursor, start]` and the live lane continues after `acked`.
    pub fn resume(cursor: u64, live: Option<(u64, u64)>, threshold: u64) -> Lanes {
        let mut l = Lanes::new(cursor, threshold);
        if let Some((start, acked)) = live
            && start > cursor
            && acked >= start
        {
            l.replay = Some(Lane { read_to: cursor, acked_to: cursor, upto: Some(start), batches: VecDeque::new() });
            l.live = Lane::at(acked);
        }
        l
    }

    /// The live lane while a replay runs: `(start, acked)`, to persist.
    pub fn live_state(&self) -> Option<(u64, u64)> {
        self.replay.as_ref().and_then(|r| r.upto).map(|start| (start, self.live.acked_to))
    }

    /// The durable cursor: everything up to it is acknowledged.
    pub fn cursor(&self) -> u64 {
        match &self.replay {
            Some(r) => r.acked_to,
            None => self.live.acked_to,
        }
    }

    /// True while a replay lane exists.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// The next read, given the last committed `head`, or `None` when caught up.
    pub fn next_read(&mut self, head: u64) -> Option<ReadPlan> {
        if self.replay.is_none() && self.threshold > 0 && head.saturating_sub(self.live.read_to) > self.threshold {
            let mut replay = std::mem::replace(&mut self.live, Lane::at(head));
            replay.upto = Some(head);
            self.replay = Some(replay);
        }
        let live = self.live.has_data(head);
        let replay = self.replay.as_ref().is_some_and(|r| r.has_data(head));
        // Alternate when both lanes have rows; after serving one lane, the
        // other one goes first.
        let lane = match (replay, live) {
            (false, false) => return None,
            (true, false) => LaneId::Replay,
            (false, true) => LaneId::Live,
            (true, true) if self.prefer_live => LaneId::Live,
            (true, true) => LaneId::Replay,
        };
        self.prefer_live = lane == LaneId::Replay;
        let l = self.lane(lane);
        Some(ReadPlan { lane, after: l.read_to, upto: l.upto.unwrap_or(head).min(head) })
    }

    fn lane(&mut self, id: LaneId) -> &mut Lane {
        match id {
            LaneId::Live => &mut self.live,
            LaneId::Replay => self.replay.as_mut().unwrap_or(&mut self.live),
        }
    }

    /// Records a read of `plan` that returned rows up to `last_row` (None when
    /// it returned none) and `complete` (fewer rows than the limit, so the
    /// read reached `plan.upto`), sent as `messages` messages. Returns the batch
    /// id to [`Lanes::ack`] once per message.
    pub fn record(&mut self, plan: ReadPlan, last_row: Option<u64>, complete: bool, messages: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let reach = if complete { plan.upto } else { last_row.unwrap_or(plan.upto) };
        let lane = self.lane(plan.lane);
        lane.read_to = lane.read_to.max(reach);
        lane.batches.push_back(Batch { id, last: reach, outstanding: messages });
        lane.settle();
        self.finish_replay();
        id
    }

    /// One message of batch `id` was acknowledged.
    pub fn ack(&mut self, id: u64) {
        for lane in std::iter::once(&mut self.live).chain(self.replay.as_mut()) {
            if let Some(b) = lane.batches.iter_mut().find(|b| b.id == id) {
                b.outstanding = b.outstanding.saturating_sub(1);
                lane.settle();
                break;
            }
        }
        self.finish_replay();
    }

    fn finish_replay(&mut self) {
        if let Some(r) = &self.replay
            && r.upto.is_some_and(|u| r.acked_to >= u)
        {
            self.replay = None;
        }
    }

    /// The far end already holds the records in `held` (nothing is in
    /// flight: called right after a connect): each lane whose next records
    /// are held moves over them (never backwards, never past its own end
    /// nor past `head`). Held records further on are left out when read
    /// ([`super::held::runs`]).
    pub fn skip_held(&mut self, held: &SeqSet, head: u64) {
        for lane in std::iter::once(&mut self.live).chain(self.replay.as_mut()) {
            if !lane.batches.is_empty() {
                continue;
            }
            let end = lane.upto.map_or(head, |u| u.min(head));
            if let Some(r) = held.get(&(lane.acked_to + 1)) {
                let to = (*r.end()).min(end);
                if to > lane.acked_to {
                    lane.acked_to = to;
                    lane.read_to = lane.read_to.max(to);
                }
            }
        }
        self.finish_replay();
    }

    /// The connection was lost: everything read but unacknowledged is read again.
    pub fn rewind(&mut self) {
        for lane in std::iter::once(&mut self.live).chain(self.replay.as_mut()) {
            lane.read_to = lane.acked_to;
            lane.batches.clear();
        }
    }

    /// Batches read and not yet fully acknowledged.
    pub fn batches_in_flight(&self) -> usize {
        self.live.batches.len() + self.replay.as_ref().map_or(0, |r| r.batches.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_lane_in_order() {
        let mut l = Lanes::new(0, 1000);
        let p = l.next_read(10).unwrap();
        assert_eq!((p.lane, p.after, p.upto), (LaneId::Live, 0, 10));
        let id = l.record(p, Some(10), true, 2);
        assert!(l.next_read(10).is_none());
        assert_eq!(l.cursor(), 0);
        l.ack(id);
        assert_eq!(l.cursor(), 0);
        l.ack(id);
        assert_eq!(l.cursor(), 10);
    }

    #[test]
    fn cursor_waits_for_earlier_batches() {
        let mut l = Lanes::new(0, 0);
        let p1 = l.next_read(5).unwrap();
        let b1 = l.record(p1, Some(5), true, 1);
        let p2 = l.next_read(9).unwrap();
        assert_eq!(p2.after, 5);
        let b2 = l.record(p2, Some(9), true, 1);
        l.ack(b2);
        assert_eq!(l.cursor(), 0, "batch 2 acked before batch 1: cursor must not move");
        l.ack(b1);
        assert_eq!(l.cursor(), 9);
    }

    #[test]
    fn splits_into_replay_and_live_above_threshold() {
        let mut l = Lanes::new(0, 100);
        let p = l.next_read(1000).unwrap();
        // Backlog of 1000 > 100: replay lane covers (0, 1000], live starts at 1000.
        assert!(l.replaying());
        assert_eq!(p.lane, LaneId::Replay);
        let r1 = l.record(p, Some(100), false, 1);
        // Fresh rows arrive: live is served in alternation.
        let p = l.next_read(1010).unwrap();
        assert_eq!((p.lane, p.after, p.upto), (LaneId::Live, 1000, 1010));
        let lv = l.record(p, Some(1010), true, 1);
        l.ack(lv);
        assert_eq!(l.cursor(), 0, "the durable cursor follows the replay lane");
        l.ack(r1);
        assert_eq!(l.cursor(), 100);
        let p = l.next_read(1010).unwrap();
        assert_eq!((p.lane, p.after, p.upto), (LaneId::Replay, 100, 1000));
        let r2 = l.record(p, Some(1000), true, 1);
        l.ack(r2);
        assert!(!l.replaying());
        assert_eq!(l.cursor(), 1010);
    }

    #[test]
    fn a_replay_resumes_after_a_restart() {
        let mut l = Lanes::new(0, 100);
        let p = l.next_read(1000).unwrap();
        let r = l.record(p, Some(100), false, 1);
        l.ack(r);
        let p = l.next_read(1050).unwrap();
        assert_eq!(p.lane, LaneId::Live);
        let lv = l.record(p, Some(1050), true, 1);
        l.ack(lv);
        assert_eq!(l.live_state(), Some((1000, 1050)));
        // Restart: the live rows already acknowledged are not read again.
        let mut back = Lanes::resume(l.cursor(), l.live_state(), 100);
        assert_eq!(back.cursor(), 100);
        let p = back.next_read(1060).unwrap();
        let q = back.next_read(1060).unwrap();
        let plans = [(p.lane, p.after, p.upto), (q.lane, q.after, q.upto)];
        assert!(plans.contains(&(LaneId::Replay, 100, 1000)), "{plans:?}");
        assert!(plans.contains(&(LaneId::Live, 1050, 1060)), "{plans:?}");
    }

    fn held(ranges: &[(u64, u64)]) -> SeqSet {
        let mut s = SeqSet::new();
        for &(a, b) in ranges {
            s.insert(a..=b);
        }
        s
    }

    #[test]
    fn skip_held_moves_each_lane_over_what_the_far_end_holds() {
        let mut l = Lanes::new(10, 0);
        l.skip_held(&held(&[(0, 5)]), 100);
        assert_eq!(l.cursor(), 10, "never backwards");
        l.skip_held(&held(&[(0, 40), (45, 48)]), 100);
        assert_eq!(l.cursor(), 40);
        let p = l.next_read(50).unwrap();
        assert_eq!((p.after, p.upto), (40, 50), "reads resume after what the far end holds");
        l.rewind();
        l.skip_held(&held(&[(0, 500)]), 60);
        assert_eq!(l.cursor(), 60, "never past the head");
        // A replay lane is not moved past its end; the live lane moves too.
        let mut r = Lanes::new(0, 100);
        let p = r.next_read(1000).unwrap();
        assert_eq!(p.lane, LaneId::Replay);
        let p = r.next_read(1100).unwrap();
        assert_eq!((p.lane, p.after), (LaneId::Live, 1000));
        r.rewind();
        r.skip_held(&held(&[(0, 5000)]), 1100);
        assert_eq!(r.cursor(), 1100, "the replay ends at 1000 and the live lane holds up to the head");
        assert!(!r.replaying());
        // Held live records after a restart: the live lane skips them, the replay lane starts where it was.
        let mut r = Lanes::resume(300, Some((1000, 1000)), 100);
        r.skip_held(&held(&[(0, 350), (1001, 1040)]), 1100);
        assert_eq!(r.cursor(), 350);
        assert_eq!(r.live_state(), Some((1000, 1040)));
    }

    #[test]
    fn rewind_rereads_unacked() {
        let mut l = Lanes::new(3, 0);
        let p = l.next_read(8).unwrap();
        l.record(p, Some(8), true, 1);
        l.rewind();
        let p = l.next_read(8).unwrap();
        assert_eq!((p.after, p.upto), (3, 8));
    }

    #[test]
    fn empty_read_settles_at_once() {
        let mut l = Lanes::new(0, 0);
        let p = l.next_read(50).unwrap();
        l.record(p, None, true, 0);
        assert_eq!(l.cursor(), 50, "rows dropped by retention: nothing to send, cursor moves on");
    }
}
