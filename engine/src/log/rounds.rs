//! Sync rounds: the fdatasyncs of one shard's partitions start together.
//!
//! On ext4 an fdatasync of appended data commits the journal; fdatasyncs of several files issued
//! at the same moment share one commit, while ones issued one after another each wait for the
//! commit in flight and then start another. So a partition's syncer joins the shard's current
//! round while it is still open, and otherwise waits for the round in flight to finish and
//! starts or joins the next. A round stays open until a task spawned when it started has run
//! twice: the rest of that executor pass and the next one (one reap of completions between), so
//! syncers woken together, or by the same completions, share it. Thread-local: one set of
//! rounds per shard. A hung fdatasync holds up every partition of the shard (they share a disk).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::io::{spawn, Notify};

pub(super) struct Rounds {
    /// fdatasyncs of the current round still in flight.
    in_flight: Cell<usize>,
    /// The current round still takes joiners (it started in this executor pass).
    open: Cell<bool>,
    /// Fired when a round's last fdatasync finished.
    idle: Notify,
}

thread_local! {
    static ROUNDS: Rc<Rounds> = Rc::new(Rounds {
        in_flight: Cell::new(0),
        open: Cell::new(false),
        idle: Notify::new(),
    });
}

/// A place in a round; dropping it ends this fdatasync's part of the round.
pub(super) struct Place(Rc<Rounds>);

impl Drop for Place {
    fn drop(&mut self) {
        let left = self.0.in_flight.get() - 1;
        self.0.in_flight.set(left);
        if left == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// Waits for a place in a round: at once if no round is in flight or the current one is open.
pub(super) async fn join() -> Place {
    let rounds = ROUNDS.with(Rc::clone);
    loop {
        let idle = rounds.idle.notified();
        if rounds.in_flight.get() == 0 || rounds.open.get() {
            break;
        }
        idle.await;
    }
    if rounds.in_flight.get() == 0 {
        // A new round: it takes the syncers that are ready in this pass (woken before the task
        // below was spawned), then closes.
        rounds.open.set(true);
        let closing = rounds.clone();
        drop(spawn(async move {
            YieldOnce(false).await;
            closing.open.set(false);
        }));
    }
    rounds.in_flight.set(rounds.in_flight.get() + 1);
    Place(rounds)
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
