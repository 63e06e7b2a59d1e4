//! The lock-free ingest ring between sources and the buffer writer.
//!
//! - **Bounds.** A fixed-capacity MPMC queue (`crossbeam_queue::ArrayQueue`)
//!   bounded twice: at most `capacity` entries, and at most `capacity`
//!   *samples* in all entries together (a file or HTTP group is one entry of
//!   up to 4,096 samples; an event counts as one sample). A group larger than
//!   the whole capacity is let in only when the ring is empty. So the ring
//!   holds at most `capacity` samples, or one group: memory never grows with
//!   load (`[buffer] ring_capacity`, default 16,384 samples).
//! - **Producers.** Any number of sources push from tokio tasks or threads.
//!   Pushing never takes a lock. When the ring is full a producer *waits* (the
//!   device is simply read a little later); it never drops. Waiting time and
//!   count are recorded in [`IngestStats`].
//! - **Consumer.** Exactly one buffer writer thread pops in batches. It parks
//!   when the ring is empty and producers unpark it.
//! - **Ordering.** The queue is FIFO, so the samples one producer pushes are
//!   accepted in its push order; per tag, order is preserved.
//! - **Events.** [`Ingest::emit`] (or an [`Events`] handle) puts an
//!   [`Event`] in the ring without ever waiting: when the ring is full it goes
//!   to a side queue of [`EVENT_OVERFLOW`] events that the writer drains with
//!   the ring; when that is full too the event is dropped and counted
//!   (`events_dropped`). Acquisition never waits for an event.
//! - **Barriers.** [`Ingest::barrier`] resolves once everything its caller pushed
//!   before it is committed: acceptance is observable.
//! - **Closing.** When the writer stops it closes the ring ([`Ingest::close`]):
//!   what is still queued, and anything pushed later, is dropped at once and
//!   counted (`discarded`). Dropping an entry drops its acceptance sender, so
//!   every waiter (a group's receiver, a barrier) resolves with an error
//!   instead of waiting forever for a commit that can no longer happen.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use tokio::sync::{Notify, oneshot};

use crate::model::{Event, Sample};

mod entry;
mod events;

pub use entry::{Accepted, Entry, Group, Moved, Progress};
pub use events::{EventLog, Events, RECENT_EVENTS};

/// Events held beside a full ring before new ones are dropped (counted).
pub const EVENT_OVERFLOW: usize = 1024;

fn samples_in(e: &Entry) -> u64 {
    match e {
        Entry::Sample(_) => 1,
        Entry::Group(g) => g.samples.len() as u64,
        Entry::Event(_) | Entry::Barrier(_) => 0,
    }
}

/// What an entry weighs against the sample bound.
fn weight(e: &Entry) -> u64 {
    match e {
        Entry::Sample(_) | Entry::Event(_) => 1,
        Entry::Group(g) => g.samples.len() as u64,
        Entry::Barrier(_) => 0,
    }
}

/// Counters of the ring (monotonic).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Samples pushed.
    pub pushed: AtomicU64,
    /// Times a producer found the ring full and waited.
    pub full_waits: AtomicU64,
    /// Total time producers spent waiting, in nanoseconds.
    pub wait_ns: AtomicU64,
    /// Samples dropped because they reached the ring after the writer stopped.
    pub discarded: AtomicU64,
    /// Events emitted.
    pub events: AtomicU64,
    /// Events dropped because the ring and the event side queue were full
    /// (or the writer had stopped).
    pub events_dropped: AtomicU64,
    /// Events emitted by kind, and the latest ones (`/metrics`, `/api/status`).
    pub event_log: EventLog,
}

/// The ingest ring. Share it as `Arc<Ingest>`.
#[derive(Debug)]
pub struct Ingest {
    queue: ArrayQueue<Entry>,
    overflow: ArrayQueue<Box<Event>>,
    /// Samples (by [`weight`]) in `queue`.
    queued: AtomicU64,
    sample_capacity: u64,
    writer: OnceLock<Thread>,
    writer_idle: AtomicBool,
    closed: AtomicBool,
    space: Notify,
    /// Counters.
    pub stats: IngestStats,
}

impl Ingest {
    /// A ring of at most `capacity` samples (and entries).
    pub fn new(capacity: usize) -> Ingest {
        Ingest {
            queue: ArrayQueue::new(capacity.max(2)),
            overflow: ArrayQueue::new(EVENT_OVERFLOW),
            queued: AtomicU64::new(0),
            sample_capacity: capacity.max(2) as u64,
            writer: OnceLock::new(),
            writer_idle: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            space: Notify::new(),
            stats: IngestStats::default(),
        }
    }

    /// Capacity in samples (and in entries).
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Samples waiting for the writer (a group counts its samples).
    pub fn queued_samples(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Entries waiting for the writer.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no entry (and no overflowed event) waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.overflow.is_empty()
    }

    fn wake_writer(&self) {
        if self.writer_idle.load(Ordering::SeqCst)
            && let Some(t) = self.writer.get()
        {
            t.unpark();
        }
    }

    /// Pushes without waiting; gives the entry back when the ring is full.
    ///
    /// Once the ring is closed (the writer stopped) the entry is dropped and
    /// counted instead: `Ok` then means "will never block", not "will be
    /// committed"; a group's or barrier's receiver resolves with an error.
    pub fn try_push(&self, e: Entry) -> Result<(), Entry> {
        self.try_push_quiet(e)?;
        self.wake_writer();
        Ok(())
    }

    /// [`Ingest::try_push`] without waking the writer: the caller wakes it
    /// once after pushing several entries ([`Ingest::push_all`]), so one
    /// poll's samples are committed together, not split by an early wake.
    fn try_push_quiet(&self, e: Entry) -> Result<(), Entry> {
        if self.is_closed() {
            self.discard(e);
            return Ok(());
        }
        let n = samples_in(&e);
        let w = weight(&e);
        let before = self.queued.fetch_add(w, Ordering::AcqRel);
        if before > 0 && before + w > self.sample_capacity {
            self.queued.fetch_sub(w, Ordering::AcqRel);
            return Err(e);
        }
        if let Err(e) = self.queue.push(e) {
            self.queued.fetch_sub(w, Ordering::AcqRel);
            return Err(e);
        }
        if n > 0 {
            self.stats.pushed.fetch_add(n, Ordering::Relaxed);
        }
        if self.is_closed() {
            // The writer closed the ring while we pushed: nobody else will
            // ever pop this entry.
            self.drain_closed();
        }
        Ok(())
    }

    /// True once the writer has stopped: nothing pushed now will be committed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Closes the ring (called by the writer when it stops): drops what is
    /// queued and everything pushed from now on, and wakes waiting producers.
    /// Returns the number of samples dropped now.
    pub fn close(&self) -> u64 {
        self.closed.store(true, Ordering::SeqCst);
        let n = self.drain_closed();
        self.space.notify_waiters();
        n
    }

    fn drain_closed(&self) -> u64 {
        let mut n = 0;
        while let Some(e) = self.pop() {
            n += self.discard(e);
        }
        n
    }

    fn discard(&self, e: Entry) -> u64 {
        let n = samples_in(&e);
        if matches!(e, Entry::Event(_)) {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if n > 0 {
            self.stats.discarded.fetch_add(n, Ordering::Relaxed);
        }
        // Dropping `e` drops its acceptance sender: its waiter sees an error.
        drop(e);
        n
    }

    /// Emits an event without ever waiting (see the module docs): into the
    /// ring, or the side queue when the ring is full, or dropped and counted
    /// when both are full or the writer has stopped.
    pub fn emit(&self, e: Event) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        self.stats.event_log.note(&e);
        match self.try_push(Entry::Event(Box::new(e))) {
            Ok(()) => {}
            Err(Entry::Event(e)) => {
                if self.overflow.push(e).is_err() {
                    self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.wake_writer();
                }
            }
            Err(_) => {}
        }
    }

    /// A cheap, cloneable handle for emitting events.
    pub fn events(self: &std::sync::Arc<Self>) -> Events {
        Events { ingest: self.clone() }
    }

    /// Pushes one sample, waiting while the ring is full.
    pub async fn push(&self, s: Sample) {
        self.push_entry(Entry::Sample(s)).await
    }

    /// Pushes a group, waiting while the ring is full; resolves with its `seq`
    /// range once committed (`None` if the writer dropped it or has stopped).
    pub async fn push_group(&self, g: Group) -> Option<Accepted> {
        self.push_group_ordered(g).await.await.ok()
    }

    /// Pushes a group, waiting while the ring is full, and returns the
    /// receiver of its acceptance without waiting for the commit: groups
    /// pushed one after the other by one task are committed in that order.
    pub async fn push_group_ordered(&self, mut g: Group) -> oneshot::Receiver<Accepted> {
        let (tx, rx) = oneshot::channel();
        g.done = Some(tx);
        self.push_entry(Entry::Group(Box::new(g))).await;
        rx
    }

    /// Pushes a group from a plain thread (waiting while full) and returns
    /// the receiver of its acceptance.
    pub fn push_group_blocking(&self, mut g: Group) -> oneshot::Receiver<Accepted> {
        let (tx, rx) = oneshot::channel();
        g.done = Some(tx);
        let mut e = Entry::Group(Box::new(g));
        let t0 = Instant::now();
        let mut waited = false;
        loop {
            match self.try_push(e) {
                Ok(()) => break,
                Err(back) => e = back,
            }
            waited = true;
            std::thread::sleep(Duration::from_micros(200));
        }
        if waited {
            self.stats.full_waits.fetch_add(1, Ordering::Relaxed);
            self.stats.wait_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        rx
    }

    async fn push_entry(&self, e: Entry) {
        let Err(mut e) = self.try_push(e) else { return };
        let t0 = Instant::now();
        self.stats.full_waits.fetch_add(1, Ordering::Relaxed);
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_push(e) {
                Ok(()) => break,
                Err(back) => e = back,
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
        self.stats.wait_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Pushes samples in order, waiting while the ring is full.
    /// The writer is woken once, after the last one (or when the ring is
    /// full), so it commits them together.
    pub async fn push_all(&self, samples: impl IntoIterator<Item = Sample>) {
        for s in samples {
            if let Err(e) = self.try_push_quiet(Entry::Sample(s)) {
                self.wake_writer();
                self.push_entry(e).await;
            }
        }
        self.wake_writer();
    }

    /// Pushes from a plain thread, sleeping briefly while the ring is full.
    pub fn push_blocking(&self, s: Sample) {
        let Err(mut e) = self.try_push(Entry::Sample(s)) else { return };
        let t0 = Instant::now();
        self.stats.full_waits.fetch_add(1, Ordering::Relaxed);
        let mut spins = 0u32;
        loop {
            match self.try_push(e) {
                Ok(()) => break,
                Err(back) => e = back,
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else if spins < 128 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.stats.wait_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Resolves with the last committed `seq` once everything pushed before this
    /// call (by this caller) is committed. `None` if the writer is gone.
    pub async fn barrier(&self) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        let mut e = Entry::Barrier(tx);
        loop {
            match self.try_push(e) {
                Ok(()) => break,
                Err(back) => {
                    e = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        rx.await.ok()
    }

    // ---- consumer side (the buffer writer) ----

    /// Registers the calling thread as the writer (unparked by producers).
    pub(crate) fn register_writer(&self) {
        let _ = self.writer.set(std::thread::current());
    }

    /// Pops one entry (events of the side queue go after what the ring holds).
    pub(crate) fn pop(&self) -> Option<Entry> {
        match self.queue.pop() {
            Some(e) => {
                self.queued.fetch_sub(weight(&e), Ordering::AcqRel);
                Some(e)
            }
            None => self.overflow.pop().map(Entry::Event),
        }
    }

    /// Wakes producers waiting for space.
    pub(crate) fn notify_space(&self) {
        self.space.notify_waiters();
    }

    /// Parks the writer until a producer pushes or `timeout` passes.
    pub(crate) fn park_writer(&self, timeout: Duration) {
        self.writer_idle.store(true, Ordering::SeqCst);
        if self.queue.is_empty() && self.overflow.is_empty() {
            std::thread::park_timeout(timeout);
        }
        self.writer_idle.store(false, Ordering::SeqCst);
    }
}
