//! The byte layer under the XML stream: plain TCP or TLS, with a cap on how many bytes one
//! top-level element may take (tokio-xmpp's stream has no such limit).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The socket, before or after the TLS handshake.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The I/O type every XML stream of a connection runs on.
pub type Io = BufReader<Limited>;

/// Counts bytes read since the last complete element and fails the read past the limit.
/// Reading is buffered, so the cap holds to within one read buffer (8 KiB).
pub struct Limited {
    inner: Transport,
    read: AtomicUsize,
    limit: usize,
}

/// The error a read returns when an element outgrew the limit.
#[derive(Debug, thiserror::Error)]
#[error("element larger than {0} bytes")]
pub struct TooLarge(pub usize);

impl Limited {
    pub fn new(inner: Transport, limit: usize) -> Self {
        Self {
            inner,
            read: AtomicUsize::new(0),
            limit,
        }
    }

    /// Called when an element is complete.
    pub fn reset(&self) {
        self.read.store(0, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn transport(&self) -> &Transport {
        &self.inner
    }

    pub fn into_transport(self) -> Transport {
        self.inner
    }
}

/// Whether an I/O error is the size cap.
pub fn is_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.load(Ordering::Relaxed) > this.limit {
            return Poll::Ready(Err(io::Error::other(TooLarge(this.limit))));
        }
        let before = buf.filled().len();
        let res = match &mut this.inner {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = res {
            let n = buf.filled().len() - before;
            let total = this.read.fetch_add(n, Ordering::Relaxed) + n;
            if total > this.limit {
                return Poll::Ready(Err(io::Error::other(TooLarge(this.limit))));
            }
        }
        res
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Wraps a transport for a new XML stream.
pub fn io(transport: Transport, limit: usize) -> Io {
    BufReader::new(Limited::new(transport, limit))
}
