//! When a request really left: the moment its body was first handed to the connection.
//!
//! A sender paces requests by when it starts them, but a busy process can stall between
//! starting a request and writing it out (the connection's task waits for a core), and Meta
//! counts the rate by when requests reach it. HTTP/1 writes a request's head and body in one
//! go once the connection polls the body, so the first poll of the body is the moment the
//! request goes to the socket; over HTTP/2 it is when the body is queued for the stream, just
//! before its frames go. [`Departure`] notes that moment for one request.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};

/// The moment one request's body was first polled, once it has been (shared between the
/// caller and the body it gave the request).
#[derive(Debug, Clone, Default)]
pub struct Departure(Arc<Noted>);

#[derive(Debug, Default)]
struct Noted {
    at: OnceLock<Instant>,
    /// Whoever waits in [`Departure::noted`].
    waiter: AtomicWaker,
}

impl Departure {
    /// Notes `at`, unless a moment was noted already (the first one counts).
    pub fn mark_at(&self, at: Instant) {
        if self.0.at.set(at).is_ok() {
            self.0.waiter.wake();
        }
    }

    /// The moment noted, if the request got that far.
    pub fn get(&self) -> Option<Instant> {
        self.0.at.get().copied()
    }

    /// Waits until a moment is noted (for ever, if the request never gets that far: wait
    /// for it beside the request, not instead). One waiter at a time.
    pub async fn noted(&self) -> Instant {
        std::future::poll_fn(|cx| {
            self.0.waiter.register(cx.waker());
            match self.get() {
                Some(at) => Poll::Ready(at),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// A request body of one chunk that notes its departure when first polled.
pub(crate) struct NotedBody {
    data: Option<Bytes>,
    len: u64,
    departure: Departure,
}

impl NotedBody {
    pub(crate) fn new(data: Bytes, departure: &Departure) -> Self {
        Self {
            len: data.len() as u64,
            data: Some(data),
            departure: departure.clone(),
        }
    }
}

impl Body for NotedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.departure.mark_at(Instant::now());
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    /// Exact, so the request carries a `Content-Length` as a plain body would.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.data.is_some() { self.len } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn poll(body: &mut NotedBody) -> Option<Bytes> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
            Poll::Ready(None) => None,
            Poll::Ready(Some(Err(e))) => match e {},
            Poll::Pending => panic!("a one-chunk body is always ready"),
        }
    }

    #[test]
    fn the_first_poll_is_the_departure_and_the_body_is_whole() {
        let departure = Departure::default();
        let mut body = NotedBody::new(Bytes::from_static(b"{\"to\":\"1\"}"), &departure);
        assert_eq!(body.size_hint().exact(), Some(10));
        assert!(
            departure.get().is_none(),
            "noted before the body was polled"
        );
        let before = Instant::now();
        assert_eq!(poll(&mut body).as_deref(), Some(&b"{\"to\":\"1\"}"[..]));
        let first = departure.get().expect("noted");
        assert!(first >= before);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(poll(&mut body), None);
        assert_eq!(
            departure.get(),
            Some(first),
            "a later poll moved the departure"
        );
    }

    #[test]
    fn a_waiter_is_woken_when_the_departure_is_noted() {
        let departure = Departure::default();
        let flag = Arc::new(Flag::default());
        let waker = std::task::Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waiting = Box::pin(departure.noted());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(!flag.0.load(Ordering::SeqCst));
        let at = Instant::now();
        departure.mark_at(at);
        assert!(flag.0.load(Ordering::SeqCst), "not woken");
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(at));
    }

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}
