//! Each source has its own bounded event queue and the merge loop takes from
//! them round-robin: a source flooding its queue blocks only itself, and every
//! other source's next event is applied within one turn of the round.

use std::future::poll_fn;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::source::{EventSender, SourceEvent, SourceIdx};

/// Events one source may have queued before its sends wait (backpressure).
pub(super) const SOURCE_QUEUE: usize = 1024;

/// Hands new sources' queues to the merge loop. Bounded by the number of
/// source slots: every registration takes one slot, and slots are never reused.
#[derive(Debug, Clone)]
pub(super) struct Registrar {
    tx: mpsc::Sender<(SourceIdx, mpsc::Receiver<SourceEvent>)>,
}

impl Registrar {
    /// A new bounded queue for source `idx`: its sender for the source, its
    /// receiver for the merge loop.
    pub(super) fn register(&self, idx: SourceIdx) -> EventSender {
        let (tx, rx) = mpsc::channel(SOURCE_QUEUE);
        // Cannot be full (one registration per slot, capacity = all slots); an
        // error means the merge loop is gone, and so the sender reports Closed.
        let _ = self.tx.try_send((idx, rx));
        EventSender { tx }
    }
}

/// The merge loop's end: every source's queue, polled in turn.
#[derive(Debug)]
pub(super) struct Queues {
    new: mpsc::Receiver<(SourceIdx, mpsc::Receiver<SourceEvent>)>,
    /// No more registrations can come (the registry's handles are gone).
    new_closed: bool,
    live: Vec<(SourceIdx, mpsc::Receiver<SourceEvent>)>,
    /// Where the next round starts: one past the queue served last.
    next: usize,
}

/// The registrar and the queues of one registry.
pub(super) fn queues() -> (Registrar, Queues) {
    let (tx, new) = mpsc::channel(SourceIdx::MAX as usize);
    (
        Registrar { tx },
        Queues {
            new,
            new_closed: false,
            live: Vec::new(),
            next: 0,
        },
    )
}

impl Queues {
    /// The next event of any source, round-robin; `None` once no source can
    /// send any more.
    pub(super) async fn recv(&mut self) -> Option<(SourceIdx, SourceEvent)> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// An event already queued by any source, round-robin, without waiting.
    pub(super) fn try_recv(&mut self) -> Option<(SourceIdx, SourceEvent)> {
        // Sources added since the last wait join at the next one (`recv`
        // takes them in first): looking for them here would cost every event.
        self.turn(
            |rx, _: &mut ()| match rx.try_recv() {
                Ok(ev) => Poll::Ready(Some(ev)),
                Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
                Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(None),
            },
            (),
        )
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(SourceIdx, SourceEvent)>> {
        self.adopt(cx);
        if let Some(ev) = self.turn(|rx, cx: &mut &mut Context<'_>| rx.poll_recv(cx), cx) {
            return Poll::Ready(Some(ev));
        }
        if self.new_closed && self.live.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Takes in the queues of sources added since the last call.
    fn adopt(&mut self, cx: &mut Context<'_>) {
        while !self.new_closed {
            match self.new.poll_recv(cx) {
                Poll::Ready(Some(q)) => self.live.push(q),
                Poll::Ready(None) => self.new_closed = true,
                Poll::Pending => return,
            }
        }
    }

    /// One round from `next`: the first queue with an event serves it; closed
    /// queues (their source is gone) are dropped.
    fn turn<C>(
        &mut self,
        mut poll: impl FnMut(&mut mpsc::Receiver<SourceEvent>, &mut C) -> Poll<Option<SourceEvent>>,
        mut cx: C,
    ) -> Option<(SourceIdx, SourceEvent)> {
        let mut i = 0;
        let n = self.live.len();
        let start = if n == 0 { 0 } else { self.next % n };
        let mut closed = Vec::new();
        while i < n {
            let at = (start + i) % n;
            i += 1;
            match poll(&mut self.live[at].1, &mut cx) {
                Poll::Ready(Some(ev)) => {
                    self.next = at + 1;
                    let src = self.live[at].0;
                    self.drop_closed(closed);
                    return Some((src, ev));
                }
                Poll::Ready(None) => closed.push(at),
                Poll::Pending => {}
            }
        }
        self.drop_closed(closed);
        None
    }

    fn drop_closed(&mut self, mut closed: Vec<usize>) {
        if closed.is_empty() {
            return;
        }
        closed.sort_unstable();
        for at in closed.into_iter().rev() {
            self.live.remove(at);
            if self.next > at {
                self.next -= 1;
            }
        }
    }

    /// Sources with a queue now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }
}
