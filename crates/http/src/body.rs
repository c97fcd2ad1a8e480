//! Request bodies that must keep moving: a body silent for longer than the idle timeout ends
//! with an error (a slowloris upload is cut instead of holding a connection and a file).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled for more than {0:?}")]
pub struct Stalled(pub Duration);

/// `inner`, cut after `idle` without a frame. The clock starts at the first read (a handler
/// may check a request for a while before it reads the body; `Expect: 100-continue` clients
/// send nothing until then).
pub struct IdleBody<B> {
    inner: Pin<Box<B>>,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner: Box::pin(inner),
            idle,
            timer: None,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let idle = this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                timer.as_mut().reset(Instant::now() + idle);
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Stalled(idle))))),
                Poll::Pending => Poll::Pending,
            },
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

    /// A body that sends one frame, then nothing, ever.
    struct OneThenSilence(bool);

    impl Body for OneThenSilence {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                Poll::Pending
            } else {
                self.0 = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_cut_after_the_idle_time() {
        use std::future::poll_fn;
        let mut body = std::pin::pin!(IdleBody::new(
            OneThenSilence(false),
            Duration::from_secs(30)
        ));
        let first = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(matches!(first, Some(Ok(_))));
        let started = Instant::now();
        let second = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        let err = second.expect("an end").expect_err("stalled");
        assert!(err.is::<Stalled>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
