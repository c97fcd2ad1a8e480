//! The byte layer under the XML stream: plain TCP or TLS, buffered, with two things
//! tokio-xmpp's stream does not do:
//!
//! - a cap on how many bytes one top-level element may take (reads fail past it);
//! - a cap on how deep elements may nest ([`super::depth`]): the parser is handed the bytes
//!   before the first too-deep start tag, then the read fails;
//! - dropping whitespace before a stream (re)start: RFC 6120 allows whitespace between
//!   elements, and clients send `<auth …/>\n` or `<starttls/>\n` (go-xmpp does), but a new
//!   parser must start at the stream header.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::depth::DepthGauge;

/// The socket, before or after the TLS handshake.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The I/O every XML stream of a connection runs on.
pub struct Io {
    inner: Transport,
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
    /// Bytes read since the last complete element; the cap holds to within one buffer.
    read: AtomicUsize,
    limit: usize,
    /// Drop whitespace until the next non-whitespace byte (a stream header is due).
    skip_whitespace: AtomicBool,
    /// Nesting depth of everything read so far.
    gauge: DepthGauge,
    /// A stream restart is due: the gauge forgets the old stream element at the next read.
    abandon_stream: AtomicBool,
    /// Offset in `buf` of the byte completing a too-deep element: nothing from it on is
    /// handed to the parser.
    too_deep_at: Option<usize>,
    /// The peer closed the connection (a read returned no bytes).
    eof: bool,
    /// Stream features are being written: see [`EMPTY_MECHANISMS`].
    features_due: AtomicBool,
    /// Bytes taken from the writer and not yet handed to the transport (only ever the
    /// features, after [`EMPTY_MECHANISMS`] was cut out of them).
    unwritten: Vec<u8>,
}

/// xmpp-parsers 0.23 serializes `StreamFeatures` with an empty SASL `<mechanisms/>` when
/// there is none to offer, and tokio-xmpp sends features only from that type. RFC 6120 §6.4.1
/// does not allow an empty list, and clients take it for a SASL offer (xmpp.js fails with "No
/// compatible mechanism"), so it is cut out of the features on their way out. These are the
/// exact bytes rxml writes for it.
const EMPTY_MECHANISMS: &[u8] =
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></mechanisms>";
const FEATURES_END: &[u8] = b"</stream:features>";

/// The error a read returns when an element outgrew the limit.
#[derive(Debug, thiserror::Error)]
#[error("element larger than {0} bytes")]
pub struct TooLarge(pub usize);

/// The error a read returns when elements nest deeper than the limit.
#[derive(Debug, thiserror::Error)]
#[error("elements nested deeper than {0} levels")]
pub struct TooDeep(pub usize);

const BUFFER: usize = 8 * 1024;

impl Io {
    /// `limit` caps the bytes of one top-level element, `max_depth` its nesting.
    pub fn new(inner: Transport, limit: usize, max_depth: usize) -> Self {
        Self {
            gauge: DepthGauge::new(max_depth),
            abandon_stream: AtomicBool::new(false),
            too_deep_at: None,
            eof: false,
            features_due: AtomicBool::new(false),
            unwritten: Vec::new(),
            inner,
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            cap: 0,
            read: AtomicUsize::new(0),
            limit,
            skip_whitespace: AtomicBool::new(true),
        }
    }

    /// Called when an element is complete.
    pub fn element_done(&self) {
        self.read.store(0, Ordering::Relaxed);
    }

    /// Called before a stream restart: whitespace up to the new header is dropped.
    pub fn expect_stream_header(&self) {
        self.skip_whitespace.store(true, Ordering::Relaxed);
        self.abandon_stream.store(true, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn max_depth(&self) -> usize {
        self.gauge.max_stanza_depth()
    }

    /// Bytes received but not yet parsed.
    pub fn unparsed(&self) -> &[u8] {
        &self.buf[self.pos..self.cap]
    }

    /// Called before stream features are sent (see [`EMPTY_MECHANISMS`]).
    pub fn features_due(&self) {
        self.features_due.store(true, Ordering::Relaxed);
    }

    /// Whether the peer closed the connection: a parse error then means the document was
    /// cut off, not that it was malformed.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    pub fn into_transport(self) -> Transport {
        self.inner
    }
}

/// Whether an I/O error is the size cap.
pub fn is_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// Whether an I/O error is the depth cap.
pub fn is_too_deep(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooDeep>())
}

impl AsyncBufRead for Io {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        loop {
            if this.pos >= this.cap {
                if this.read.load(Ordering::Relaxed) > this.limit {
                    return Poll::Ready(Err(io::Error::other(TooLarge(this.limit))));
                }
                let mut rb = ReadBuf::new(&mut this.buf);
                match &mut this.inner {
                    Transport::Plain(s) => ready!(Pin::new(s).poll_read(cx, &mut rb))?,
                    Transport::Tls(s) => ready!(Pin::new(s.as_mut()).poll_read(cx, &mut rb))?,
                }
                this.pos = 0;
                this.cap = rb.filled().len();
                if this.cap == 0 {
                    this.eof = true;
                    return Poll::Ready(Ok(&[]));
                }
                this.read.fetch_add(this.cap, Ordering::Relaxed);
                if this.abandon_stream.swap(false, Ordering::Relaxed) {
                    this.gauge.abandon_stream();
                }
                this.too_deep_at = this.gauge.scan(&this.buf[..this.cap]);
                continue;
            }
            if this.skip_whitespace.load(Ordering::Relaxed) {
                let ws = this.buf[this.pos..this.cap]
                    .iter()
                    .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .count();
                this.pos += ws;
                if this.pos == this.cap {
                    continue;
                }
                this.skip_whitespace.store(false, Ordering::Relaxed);
            }
            return match this.too_deep_at {
                Some(stop) if this.pos >= stop => Poll::Ready(Err(io::Error::other(TooDeep(
                    this.gauge.max_stanza_depth(),
                )))),
                Some(stop) => Poll::Ready(Ok(&this.buf[this.pos..stop])),
                None => Poll::Ready(Ok(&this.buf[this.pos..this.cap])),
            };
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.cap);
    }
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl Io {
    /// Reads, without consuming anything, until [`super::header::check`] can judge the
    /// client's stream header (see there); `Incomplete` when the client left first.
    pub async fn check_header(&mut self) -> io::Result<super::header::Verdict> {
        use super::header::{Verdict, check};
        loop {
            let verdict = check(&self.buf[self.pos..self.cap]);
            if verdict != Verdict::Incomplete {
                return Ok(verdict);
            }
            if self.pos == 0 && self.cap == self.buf.len() {
                return Ok(Verdict::Refuse(
                    xmpp_parsers::stream_error::DefinedCondition::PolicyViolation,
                    "Stream header too long",
                ));
            }
            if self.fill_more().await? == 0 {
                return Ok(Verdict::Incomplete);
            }
        }
    }

    /// Reads more bytes after those buffered (moving them to the front first), through the
    /// same accounting as [`AsyncBufRead::poll_fill_buf`]; 0 at the end of the connection.
    async fn fill_more(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.cap, 0);
            self.too_deep_at = self.too_deep_at.map(|at| at - self.pos);
            self.cap -= self.pos;
            self.pos = 0;
        }
        let start = self.cap;
        let inner = &mut self.inner;
        let mut rb = ReadBuf::new(&mut self.buf[start..]);
        std::future::poll_fn(|cx| match inner {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, &mut rb),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, &mut rb),
        })
        .await?;
        let n = rb.filled().len();
        if n == 0 {
            self.eof = true;
            return Ok(0);
        }
        self.read.fetch_add(n, Ordering::Relaxed);
        let deep = self.gauge.scan(&self.buf[start..start + n]);
        if self.too_deep_at.is_none() {
            self.too_deep_at = deep.map(|at| at + start);
        }
        self.cap += n;
        Ok(n)
    }

    /// Hands what [`Io::unwritten`] holds to the transport.
    fn poll_unwritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unwritten.capacity() == 0 {
            return Poll::Ready(Ok(()));
        }
        while !self.unwritten.is_empty() {
            let n = ready!(self.poll_transport_write(cx, None))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unwritten.drain(..n);
        }
        // Only ever the features: give the buffer back rather than keep it per connection.
        self.unwritten = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Writes `buf` (or, with `None`, the unwritten bytes) to the transport.
    fn poll_transport_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: Option<&[u8]>,
    ) -> Poll<io::Result<usize>> {
        let buf = buf.unwrap_or(&self.unwritten);
        match &mut self.inner {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
}

use super::header::find;

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_unwritten(cx))?;
        if this.features_due.load(Ordering::Relaxed) {
            if find(buf, FEATURES_END).is_some() {
                this.features_due.store(false, Ordering::Relaxed);
            }
            if let Some(at) = find(buf, EMPTY_MECHANISMS) {
                this.unwritten.extend_from_slice(&buf[..at]);
                this.unwritten
                    .extend_from_slice(&buf[at + EMPTY_MECHANISMS.len()..]);
                // Taken whole; what the transport does not take now goes first next time.
                if let Poll::Ready(Err(e)) = this.poll_unwritten(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        this.poll_transport_write(cx, Some(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_unwritten(cx))?;
        match &mut this.inner {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_unwritten(cx))?;
        match &mut this.inner {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
