//! A single-thread notification: tasks await the next `notify_all`.
//!
//! Lives on one shard thread (not `Sync`). A `Notified` future taken before a state change and
//! awaited after it still completes: it compares generations, so no notification is lost
//! between checking a condition and waiting.
//!
//! Each waiting `Notified` holds one slot of the waiter table and gives it back when dropped, so
//! futures dropped unfired (the loser of a `select`, a closed connection's stop signal) leave
//! nothing behind: registering, re-polling and dropping are O(1) however many tasks wait.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Waiters>,
}

impl Notify {
    pub fn new() -> Notify {
        Notify::default()
    }

    /// Wakes every task waiting now, and completes every `Notified` created before this call.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        waiters.slots.into_iter().flatten().for_each(Waker::wake);
    }

    /// A future that completes at the first `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
            slot: None,
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiters.borrow().slots.iter().flatten().count()
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
    /// This future's slot in the waiter table, valid while the generation has not moved (a
    /// `notify_all` empties the table).
    slot: Option<usize>,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            self.slot = None;
            return Poll::Ready(());
        }
        let notify = self.notify;
        let mut waiters = notify.waiters.borrow_mut();
        match self.slot {
            Some(slot) => {
                let waker = waiters.slots[slot]
                    .as_mut()
                    .expect("a registered slot holds its waker until notify_all or drop");
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            None => {
                let waker = Some(cx.waker().clone());
                let slot = match waiters.free.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = waker;
                        slot
                    }
                    None => {
                        waiters.slots.push(waker);
                        waiters.slots.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        let Some(slot) = self.slot else { return };
        if self.notify.generation.get() != self.generation {
            return; // notify_all took the table, slot and all
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        waiters.slots[slot] = None;
        waiters.free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll(future: &mut Notified<'_>, waker: &Waker) -> Poll<()> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn dropped_waiters_leave_no_registration_and_live_ones_are_woken_once() {
        let notify = Notify::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        for _ in 0..1000 {
            let mut dropped = notify.notified();
            assert!(poll(&mut dropped, &waker).is_pending());
            assert!(
                poll(&mut dropped, &waker).is_pending(),
                "a re-poll reuses its slot"
            );
        }
        assert_eq!(
            notify.waiting(),
            0,
            "futures dropped unfired gave their slots back"
        );
        let mut a = notify.notified();
        let mut b = notify.notified();
        assert!(poll(&mut a, &waker).is_pending());
        assert!(poll(&mut b, &waker).is_pending());
        assert_eq!(notify.waiting(), 2);
        assert!(notify.waiters.borrow().slots.len() <= 2, "slots are reused");
        notify.notify_all();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert!(poll(&mut a, &waker).is_ready());
        drop(b); // after notify_all: nothing to give back
        assert_eq!(notify.waiting(), 0);
        let late = notify.notified();
        drop(late);
        notify.notify_all();
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            2,
            "no stale waker was woken"
        );
    }
}
