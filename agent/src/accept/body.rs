//! A request body with a deadline: the whole body must arrive within the listener's body timeout
//! from the moment its head was read, or reading it fails with [`BodyTimeout`], which handlers
//! answer 408. No I/O of its own beyond the timer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimeout(pub Duration);

/// Whether `err` or one of its sources is a [`BodyTimeout`]; its limit when so.
pub fn body_timeout(err: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(timeout) = err.downcast_ref::<BodyTimeout>() {
            return Some(timeout.0);
        }
        next = err.source();
    }
    None
}

/// `inner`, failing once `limit` has passed before its end.
pub struct TimedBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_at_its_deadline_and_says_so() {
        let first =
            futures::stream::iter([Ok::<_, axum::BoxError>(Frame::data(Bytes::from_static(b"{\"so")))]);
        let body = http_body_util::StreamBody::new(first.chain(futures::stream::pending()));
        let timed = TimedBody::new(body, Duration::from_secs(5));
        let err = timed.collect().await.expect_err("timed out");
        assert_eq!(body_timeout(err.as_ref()), Some(Duration::from_secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_is_read_as_it_is() {
        let timed = TimedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"ok")),
            Duration::from_secs(5),
        );
        assert_eq!(timed.collect().await.unwrap().to_bytes(), "ok");
    }
}
