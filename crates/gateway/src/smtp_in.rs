//! SMTP in: the server side that the MTA talks to.
//!
//! ESMTP (RFC 5321) with PIPELINING (RFC 2920: replies are flushed only when the client
//! has nothing more buffered), SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
//! CHUNKING (RFC 3030, `BDAT`), ENHANCEDSTATUSCODES (RFC 2034) and Postfix's XFORWARD.
//! Commands are parsed by `smtp-proto`; message data goes straight to the spool. No TLS
//! and no AUTH: the listener is for the local MTA (loopback by default).

use std::net::SocketAddr;
use std::time::Duration;

use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, Request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use crate::Gateway;
use crate::envelope::{Envelope, XForward};
use crate::reply::Reply;
use crate::spool::SpoolFile;

/// Longest command line we accept (RFC 5321 allows 512 plus extension parameters).
const MAX_LINE: usize = 4096;
/// Bad commands on one connection before we hang up.
const MAX_ERRORS: u32 = 20;

/// Accepts connections until shutdown. Over the connection limit, a connection is
/// answered `421` and closed (the MTA retries later).
pub async fn accept_loop(gw: Gateway, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, next_hop = %gw.next_hop.addr, "gateway SMTP listener ready");
    let mut sessions = tokio::task::JoinSet::new();
    let conns = shutdown.clone();
    postern_core::listen::accept_until_shutdown(&listener, &mut shutdown, |tcp, peer| {
        let Ok(permit) = gw.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "gateway connection limit reached");
            tokio::spawn(async move {
                let mut tcp = tcp;
                let _ = tcp
                    .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
                    .await;
                let _ = tcp.shutdown().await;
            });
            return;
        };
        let span = tracing::info_span!("smtp", %peer);
        let gw = gw.clone();
        let shutdown = conns.clone();
        sessions.spawn(
            async move {
                Session::new(gw, tcp, peer, shutdown).run().await;
                drop(permit);
            }
            .instrument(span),
        );
        while sessions.try_join_next().is_some() {}
    })
    .await;
    // Drain: sessions answer their current mail, then see the shutdown and close.
    while sessions.join_next().await.is_some() {}
}

/// Whether to keep reading commands.
enum Next {
    Continue,
    Close,
}

/// Why no command line came.
enum LineError {
    TooLong,
    Timeout,
    Shutdown,
    Closed,
}

/// A BDAT transfer in progress.
struct Chunking {
    file: Option<SpoolFile>,
    too_big: bool,
    failed: bool,
}

struct Session {
    gw: Gateway,
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    helo: Option<String>,
    tx: Option<Envelope>,
    xforward: XForward,
    chunking: Option<Chunking>,
    errors: u32,
}

impl Session {
    fn new(gw: Gateway, tcp: TcpStream, peer: SocketAddr, shutdown: watch::Receiver<bool>) -> Self {
        let (r, w) = tcp.into_split();
        Session {
            gw,
            reader: BufReader::with_capacity(64 * 1024, r),
            writer: BufWriter::with_capacity(16 * 1024, w),
            peer,
            shutdown,
            helo: None,
            tx: None,
            xforward: XForward::default(),
            chunking: None,
            errors: 0,
        }
    }

    async fn run(mut self) {
        tracing::debug!(peer = %self.peer, "connected");
        let greeting = format!("220 {} ESMTP Postern OpenPGP gateway\r\n", self.gw.hostname);
        if self.write(greeting.as_bytes()).await.is_err() {
            return;
        }
        loop {
            // RFC 2920: answer a pipelined group only when it has been read completely.
            if self.reader.buffer().is_empty() && self.writer.flush().await.is_err() {
                return;
            }
            let line = match self.read_line().await {
                Ok(line) => line,
                Err(LineError::TooLong) => {
                    if self
                        .error(Reply::new(500, "5.5.2", "Line too long"))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Err(LineError::Timeout) => {
                    let _ = self
                        .say(&Reply::new(421, "4.4.2", "Timeout, closing"))
                        .await;
                    break;
                }
                Err(LineError::Shutdown) => {
                    let _ = self
                        .say(&Reply::new(421, "4.3.0", "Shutting down, try again later"))
                        .await;
                    break;
                }
                Err(LineError::Closed) => return,
            };
            match self.command(&line).await {
                Ok(Next::Continue) => {}
                Ok(Next::Close) | Err(()) => break,
            }
        }
        let _ = self.writer.flush().await;
    }

    /// One command line (with its CRLF).
    async fn command(&mut self, line: &[u8]) -> Result<Next, ()> {
        if line.len() > 9 && line[..9].eq_ignore_ascii_case(b"XFORWARD ") {
            return self.xforward_cmd(&line[9..]).await;
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                let reply = match e {
                    smtp_proto::Error::UnknownCommand => {
                        Reply::new(500, "5.5.1", "Unknown command")
                    }
                    smtp_proto::Error::InvalidSenderAddress => {
                        Reply::new(501, "5.1.7", "Bad sender address")
                    }
                    smtp_proto::Error::InvalidRecipientAddress => {
                        Reply::new(501, "5.1.3", "Bad recipient address")
                    }
                    smtp_proto::Error::SyntaxError { syntax } => {
                        Reply::new(501, "5.5.4", format!("Syntax: {syntax}"))
                    }
                    smtp_proto::Error::InvalidParameter { param } => {
                        Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
                    }
                    smtp_proto::Error::UnsupportedParameter { param } => {
                        Reply::new(555, "5.5.4", format!("Unsupported parameter {param}"))
                    }
                    _ => Reply::new(500, "5.5.2", "Syntax error"),
                };
                return self.error(reply).await;
            }
        };
        match request {
            Request::Ehlo { host } => {
                self.reset();
                let ext = format!(
                    "{} Hello {host}\nPIPELINING\nSIZE {}\n8BITMIME\nSMTPUTF8\nCHUNKING\nENHANCEDSTATUSCODES\nXFORWARD {}",
                    self.gw.hostname,
                    self.gw.config.max_message_size,
                    XForward::NAMES.join(" ")
                );
                self.helo = Some(host);
                self.reply(&Reply {
                    code: 250,
                    text: ext,
                })
                .await
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                self.reset();
                self.helo = Some(host);
                self.reply(&Reply {
                    code: 250,
                    text: self.gw.hostname.clone(),
                })
                .await
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    return self.error(Reply::new(503, "5.5.1", "EHLO first")).await;
                }
                if self.tx.is_some() {
                    return self
                        .error(Reply::new(503, "5.5.1", "Nested MAIL command"))
                        .await;
                }
                if from.flags & MAIL_BODY_BINARYMIME != 0 {
                    return self
                        .error(Reply::new(555, "5.5.4", "BINARYMIME not supported"))
                        .await;
                }
                if from.size as u64 > self.gw.config.max_message_size {
                    return self
                        .reply(&Reply::new(552, "5.3.4", "Message too big"))
                        .await;
                }
                self.tx = Some(Envelope {
                    from: from.address,
                    rcpts: Vec::new(),
                    eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
                    smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
                    xforward: self.xforward.clone(),
                });
                self.reply(&Reply::new(250, "2.1.0", "Ok")).await
            }
            Request::Rcpt { to } => {
                let max = self.gw.config.max_recipients;
                let Some(tx) = self.tx.as_mut() else {
                    return self.error(Reply::new(503, "5.5.1", "MAIL first")).await;
                };
                if to.address.is_empty() {
                    return self
                        .error(Reply::new(501, "5.1.3", "Empty recipient"))
                        .await;
                }
                if tx.rcpts.len() >= max {
                    return self
                        .reply(&Reply::new(452, "4.5.3", "Too many recipients"))
                        .await;
                }
                tx.rcpts.push(to.address);
                self.reply(&Reply::new(250, "2.1.5", "Ok")).await
            }
            Request::Data => self.data().await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last).await,
            Request::Rset => {
                self.reset();
                self.reply(&Reply::new(250, "2.0.0", "Ok")).await
            }
            Request::Noop { .. } => self.reply(&Reply::new(250, "2.0.0", "Ok")).await,
            Request::Vrfy { .. } => {
                self.reply(&Reply::new(252, "2.5.2", "Cannot verify, send some mail"))
                    .await
            }
            Request::Help { .. } => {
                self.reply(&Reply::new(
                    214,
                    "2.0.0",
                    "Postern OpenPGP gateway; see RFC 5321",
                ))
                .await
            }
            Request::Quit => {
                self.say(&Reply::new(221, "2.0.0", "Bye")).await?;
                Ok(Next::Close)
            }
            _ => {
                self.error(Reply::new(502, "5.5.1", "Command not implemented"))
                    .await
            }
        }
    }

    async fn xforward_cmd(&mut self, args: &[u8]) -> Result<Next, ()> {
        if self.tx.is_some() {
            return self
                .error(Reply::new(
                    503,
                    "5.5.1",
                    "XFORWARD not allowed in a transaction",
                ))
                .await;
        }
        let args = String::from_utf8_lossy(args);
        match self.xforward.add(args.trim()) {
            Ok(()) => self.reply(&Reply::new(250, "2.0.0", "Ok")).await,
            Err(bad) => {
                self.error(Reply::new(
                    501,
                    "5.5.4",
                    format!("Bad XFORWARD attribute {bad}"),
                ))
                .await
            }
        }
    }

    async fn data(&mut self) -> Result<Next, ()> {
        if self.chunking.is_some() {
            return self
                .error(Reply::new(503, "5.5.1", "DATA during BDAT"))
                .await;
        }
        match &self.tx {
            None => return self.error(Reply::new(503, "5.5.1", "MAIL first")).await,
            Some(tx) if tx.rcpts.is_empty() => {
                return self
                    .error(Reply::new(554, "5.5.1", "No valid recipients"))
                    .await;
            }
            Some(_) => {}
        }
        self.say(&Reply {
            code: 354,
            text: "End data with <CR><LF>.<CR><LF>".into(),
        })
        .await?;
        let mut file = match self.gw.spool.create().await {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot create spool file");
                None
            }
        };
        let spool_ok = file.is_some();
        let max = self.gw.config.max_message_size;
        let mut rx = DataReceiver::new();
        let mut buf: Vec<u8> = Vec::with_capacity(80 * 1024);
        // Prime the receiver as if a line had just ended, so that a lone "." as the very
        // first line ends the data; these two bytes are not part of the message.
        rx.ingest(&mut b"\r\n".iter(), &mut buf);
        let mut skip = buf.len();
        let mut total: u64 = 0;
        let mut too_big = false;
        let mut write_failed = false;
        loop {
            let chunk = match self.fill(self.gw.config.data_timeout).await {
                Ok(c) => c,
                Err(LineError::Timeout) => {
                    let _ = self
                        .say(&Reply::new(421, "4.4.2", "Timeout during data, closing"))
                        .await;
                    return Ok(Next::Close);
                }
                Err(_) => return Ok(Next::Close),
            };
            let mut it = chunk.iter();
            let done = rx.ingest(&mut it, &mut buf);
            let consumed = chunk.len() - it.len();
            self.reader.consume(consumed);
            // Keep the last byte back unless done: the receiver may take it back (the CR
            // of the final CRLF.CRLF).
            let keep = usize::from(!done);
            let ready = buf.len().saturating_sub(keep);
            if ready > skip {
                total += (ready - skip) as u64;
                if total > max {
                    too_big = true;
                }
                if !too_big
                    && !write_failed
                    && let Some(f) = file.as_mut()
                    && let Err(e) = f.write(&buf[skip..ready]).await
                {
                    tracing::error!(error = %e, "spool write failed");
                    write_failed = true;
                }
                buf.drain(..ready);
                skip = 0;
            }
            if done {
                break;
            }
        }
        let Some(tx) = self.tx.take() else {
            return Ok(Next::Close);
        };
        self.xforward = XForward::default();
        if too_big {
            return self
                .reply(&Reply::new(552, "5.3.4", "Message too big"))
                .await;
        }
        let file = match (file, spool_ok && !write_failed) {
            (Some(f), true) => f,
            _ => {
                return self
                    .reply(&Reply::new(
                        451,
                        "4.3.0",
                        "Cannot spool the message, try again later",
                    ))
                    .await;
            }
        };
        self.finish_mail(tx, file).await
    }

    /// RFC 3030 BDAT: exactly `size` bytes follow the command line.
    async fn bdat(&mut self, size: usize, last: bool) -> Result<Next, ()> {
        let refusal = match &self.tx {
            None => Some(Reply::new(503, "5.5.1", "MAIL first")),
            Some(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, "5.5.1", "No valid recipients"))
            }
            Some(_) => None,
        };
        if refusal.is_none() && self.chunking.is_none() {
            let file = self.gw.spool.create().await.ok();
            let failed = file.is_none();
            self.chunking = Some(Chunking {
                file,
                too_big: false,
                failed,
            });
        }
        let max = self.gw.config.max_message_size;
        let mut left = size;
        while left > 0 {
            let chunk = match self.fill(self.gw.config.data_timeout).await {
                Ok(c) => c,
                Err(LineError::Timeout) => {
                    let _ = self
                        .say(&Reply::new(421, "4.4.2", "Timeout during BDAT, closing"))
                        .await;
                    return Ok(Next::Close);
                }
                Err(_) => return Ok(Next::Close),
            };
            let n = chunk.len().min(left);
            let piece = chunk[..n].to_vec();
            self.reader.consume(n);
            left -= n;
            if let Some(c) = self.chunking.as_mut() {
                let written = c.file.as_ref().map_or(0, SpoolFile::len);
                if written + piece.len() as u64 > max {
                    c.too_big = true;
                }
                if !c.too_big
                    && !c.failed
                    && let Some(f) = c.file.as_mut()
                    && f.write(&piece).await.is_err()
                {
                    c.failed = true;
                }
            }
        }
        if let Some(r) = refusal {
            return self.error(r).await;
        }
        if !last {
            return self
                .reply(&Reply::new(250, "2.0.0", format!("{size} bytes received")))
                .await;
        }
        let (Some(chunking), Some(tx)) = (self.chunking.take(), self.tx.take()) else {
            return Ok(Next::Close);
        };
        self.xforward = XForward::default();
        if chunking.too_big {
            return self
                .reply(&Reply::new(552, "5.3.4", "Message too big"))
                .await;
        }
        match (chunking.file, chunking.failed) {
            (Some(f), false) => self.finish_mail(tx, f).await,
            _ => {
                self.reply(&Reply::new(
                    451,
                    "4.3.0",
                    "Cannot spool the message, try again later",
                ))
                .await
            }
        }
    }

    /// The message is complete: process and relay it, answer with the outcome.
    async fn finish_mail(&mut self, tx: Envelope, file: SpoolFile) -> Result<Next, ()> {
        let reply = match file.finish().await {
            Ok(spooled) => crate::process::process(&self.gw, tx, spooled).await,
            Err(e) => {
                tracing::error!(error = %e, "spool flush failed");
                Reply::new(451, "4.3.0", "Cannot spool the message, try again later")
            }
        };
        self.reply(&reply).await
    }

    fn reset(&mut self) {
        self.tx = None;
        self.chunking = None;
        self.xforward = XForward::default();
    }

    /// Queues a reply (flushed before the next blocking read).
    async fn reply(&mut self, r: &Reply) -> Result<Next, ()> {
        self.write(r.to_wire().as_bytes()).await?;
        Ok(Next::Continue)
    }

    /// Writes and flushes a reply now.
    async fn say(&mut self, r: &Reply) -> Result<(), ()> {
        self.write(r.to_wire().as_bytes()).await?;
        self.writer.flush().await.map_err(drop)
    }

    /// A reply to a bad command; too many of them end the connection.
    async fn error(&mut self, r: Reply) -> Result<Next, ()> {
        self.errors += 1;
        tracing::debug!(reply = %r, "command refused");
        if self.errors >= MAX_ERRORS {
            self.say(&Reply::new(421, "4.7.0", "Too many errors, closing"))
                .await?;
            return Ok(Next::Close);
        }
        self.reply(&r).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let t = self.gw.config.command_timeout;
        match tokio::time::timeout(t, self.writer.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Buffered bytes, reading more if there are none.
    async fn fill(&mut self, t: Duration) -> Result<Vec<u8>, LineError> {
        match tokio::time::timeout(t, self.reader.fill_buf()).await {
            Err(_) => Err(LineError::Timeout),
            Ok(Err(_)) => Err(LineError::Closed),
            Ok(Ok([])) => Err(LineError::Closed),
            Ok(Ok(b)) => Ok(b.to_vec()),
        }
    }

    /// One command line, ending in LF; longer than [`MAX_LINE`] is skipped up to its end.
    async fn read_line(&mut self) -> Result<Vec<u8>, LineError> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let timeout = self.gw.config.command_timeout;
            let buf = tokio::select! {
                r = tokio::time::timeout(timeout, self.reader.fill_buf()) => match r {
                    Err(_) => return Err(LineError::Timeout),
                    Ok(Err(_)) | Ok(Ok([])) => return Err(LineError::Closed),
                    Ok(Ok(b)) => b,
                },
                _ = self.shutdown.changed(), if line.is_empty() => return Err(LineError::Shutdown),
            };
            let (n, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !too_long {
                line.extend_from_slice(&buf[..n]);
                if line.len() > MAX_LINE {
                    too_long = true;
                    line.clear();
                }
            }
            self.reader.consume(n);
            if done {
                return if too_long {
                    Err(LineError::TooLong)
                } else {
                    Ok(line)
                };
            }
        }
    }
}
