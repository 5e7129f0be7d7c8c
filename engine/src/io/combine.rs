//! Future combinators for shard tasks: the first of two futures, a timeout, the first of many,
//! all of many. Safe code; single-threaded like the tasks that use them.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Runs both futures; returns the first to finish (the other is dropped).
pub async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

/// `future`'s output, or None if `limit` passes first.
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    match select(future, super::sleep(limit)).await {
        Either::Left(out) => Some(out),
        Either::Right(()) => None,
    }
}

/// Completes when any of `futures` does (or at once if there are none).
pub async fn any<F: Future>(futures: Vec<F>) {
    if futures.is_empty() {
        return;
    }
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        for future in futures.iter_mut() {
            if future.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Runs all `futures` concurrently; their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(out) => *output = Some(out),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
