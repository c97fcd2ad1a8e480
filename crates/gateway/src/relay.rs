//! The next hop: an SMTP client that hands every copy of a mail back to the MTA.
//!
//! **No loss**: [`deliver`] runs in two phases. First every copy gets its own connection
//! and transaction up to the accepted recipients (MAIL, RCPT, pipelined when the next hop
//! offers PIPELINING); if any of them is refused, nothing is sent and the refusal is what
//! the MTA hears (4xx: it retries; 5xx: it bounces). Only then does every copy send its
//! data. The upstream `250` is given only when every copy got its `250`, so a copy is
//! never lost; the one window left (a later copy failing after an earlier one was
//! accepted) answers 4xx, which at worst duplicates the earlier copy on the MTA's retry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::envelope::XForward;
use crate::reply::Reply;
use crate::spool::Spooled;

/// Where and how to reach the next hop.
#[derive(Debug, Clone)]
pub struct NextHop {
    /// Its address.
    pub addr: SocketAddr,
    /// For connecting and for each reply.
    pub timeout: Duration,
    /// Our name in EHLO.
    pub helo: String,
}

/// The bytes of one copy.
#[derive(Debug, Clone)]
pub enum Content {
    /// Built in memory (encrypted, signed, decrypted).
    Bytes(Arc<Vec<u8>>),
    /// A new header block followed by the body of a spooled message from `offset` on:
    /// pass-through mail streams from disk.
    Spooled {
        /// Header fields and the blank line.
        header: Arc<Vec<u8>>,
        /// The received message.
        spooled: Arc<Spooled>,
        /// Where its body starts.
        offset: u64,
    },
    /// A whole message in a file (a released quarantine item).
    File(PathBuf),
}

/// One copy to deliver: its recipients and content, under the mail's envelope sender.
#[derive(Debug, Clone)]
pub struct Copy {
    /// Reverse path (empty: null sender).
    pub from: String,
    /// The recipients of this copy.
    pub rcpts: Vec<String>,
    /// What they receive.
    pub content: Content,
    /// Ask for `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// Ask for `SMTPUTF8`.
    pub smtputf8: bool,
}

/// Delivers every copy, or none (see the module doc). `Err` is the reply to give upstream.
pub async fn deliver(hop: &NextHop, copies: &[Copy], xforward: &XForward) -> Result<(), Reply> {
    let mut open = Vec::with_capacity(copies.len());
    for copy in copies {
        match begin(hop, copy, xforward).await {
            Ok(conn) => open.push(conn),
            Err(reply) => {
                for conn in open {
                    conn.quit().await;
                }
                return Err(reply);
            }
        }
    }
    for (i, (conn, copy)) in open.into_iter().zip(copies).enumerate() {
        if let Err(reply) = conn.data(copy).await {
            if i > 0 {
                tracing::warn!(%reply, delivered = i, "a later copy failed after earlier ones were accepted; the MTA's retry may duplicate them");
            }
            return Err(reply);
        }
    }
    Ok(())
}

/// Connects and runs a transaction up to the accepted recipients.
async fn begin(hop: &NextHop, copy: &Copy, xforward: &XForward) -> Result<Conn, Reply> {
    let mut conn = Conn::connect(hop).await?;
    if conn.ext.xforward && !xforward.is_empty() {
        let args: Vec<String> = xforward
            .attrs
            .iter()
            .filter(|(n, _)| conn.xforward_names.iter().any(|a| a == n))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        if !args.is_empty() {
            let r = conn
                .command(&format!("XFORWARD {}", args.join(" ")))
                .await?;
            if !r.is_positive() {
                tracing::debug!(reply = %r, "next hop refused XFORWARD; going on without");
            }
        }
    }
    let mut mail = format!("MAIL FROM:<{}>", copy.from);
    if copy.eight_bit && conn.ext.eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if copy.smtputf8 && conn.ext.smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    if conn.ext.size {
        mail.push_str(&format!(" SIZE={}", copy.content.size().await));
    }
    let mut lines = vec![mail];
    lines.extend(copy.rcpts.iter().map(|r| format!("RCPT TO:<{r}>")));
    let replies = if conn.ext.pipelining {
        conn.pipeline(&lines).await?
    } else {
        let mut out = Vec::new();
        for l in &lines {
            let r = conn.command(l).await?;
            let stop = !r.is_positive();
            out.push(r);
            if stop {
                break;
            }
        }
        out
    };
    if let Some(bad) = replies.iter().find(|r| !r.is_positive()) {
        let bad = bad.clone();
        conn.quit().await;
        return Err(bad);
    }
    Ok(conn)
}

/// What the next hop offered in its EHLO reply.
#[derive(Debug, Default, Clone, Copy)]
struct Extensions {
    pipelining: bool,
    eight_bit: bool,
    smtputf8: bool,
    size: bool,
    xforward: bool,
}

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    timeout: Duration,
    addr: SocketAddr,
    ext: Extensions,
    xforward_names: Vec<String>,
}

impl Conn {
    async fn connect(hop: &NextHop) -> Result<Conn, Reply> {
        let tcp = tokio::time::timeout(hop.timeout, TcpStream::connect(hop.addr))
            .await
            .map_err(|_| Reply::new(451, "4.4.1", format!("next hop {} timed out", hop.addr)))?
            .map_err(|e| {
                Reply::new(
                    451,
                    "4.4.1",
                    format!("next hop {} unreachable: {e}", hop.addr),
                )
            })?;
        let _ = tcp.set_nodelay(true);
        let (r, w) = tcp.into_split();
        let mut conn = Conn {
            reader: BufReader::with_capacity(16 * 1024, r),
            writer: BufWriter::with_capacity(64 * 1024, w),
            timeout: hop.timeout,
            addr: hop.addr,
            ext: Extensions::default(),
            xforward_names: Vec::new(),
        };
        let greeting = conn.reply().await?;
        if !greeting.is_positive() {
            return Err(as_upstream(greeting));
        }
        let ehlo = conn.command(&format!("EHLO {}", hop.helo)).await?;
        if !ehlo.is_positive() {
            return Err(as_upstream(ehlo));
        }
        for line in ehlo.text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => conn.ext.pipelining = true,
                "8BITMIME" => conn.ext.eight_bit = true,
                "SMTPUTF8" => conn.ext.smtputf8 = true,
                "SIZE" => conn.ext.size = true,
                "XFORWARD" => {
                    conn.ext.xforward = true;
                    conn.xforward_names = words.map(str::to_ascii_uppercase).collect();
                }
                _ => {}
            }
        }
        Ok(conn)
    }

    async fn command(&mut self, line: &str) -> Result<Reply, Reply> {
        self.send(line.as_bytes()).await?;
        self.send(b"\r\n").await?;
        self.flush().await?;
        self.reply().await
    }

    /// Sends every line at once (RFC 2920) and reads one reply per line.
    async fn pipeline(&mut self, lines: &[String]) -> Result<Vec<Reply>, Reply> {
        for l in lines {
            self.send(l.as_bytes()).await?;
            self.send(b"\r\n").await?;
        }
        self.flush().await?;
        let mut out = Vec::with_capacity(lines.len());
        for _ in lines {
            out.push(self.reply().await?);
        }
        Ok(out)
    }

    /// DATA, the content dot-stuffed, the final dot; the final reply decides.
    async fn data(mut self, copy: &Copy) -> Result<(), Reply> {
        let go = self.command("DATA").await?;
        if go.code != 354 {
            self.quit().await;
            return Err(as_upstream(go));
        }
        let mut stuffer = Stuffer::default();
        let mut out = Vec::with_capacity(70 * 1024);
        let io = |e: std::io::Error| {
            Reply::new(451, "4.3.0", format!("reading the spooled message: {e}"))
        };
        match &copy.content {
            Content::Bytes(b) => {
                for chunk in b.chunks(64 * 1024) {
                    stuffer.stuff(chunk, &mut out);
                    self.send_buf(&mut out).await?;
                }
            }
            Content::Spooled {
                header,
                spooled,
                offset,
            } => {
                stuffer.stuff(header, &mut out);
                self.send_buf(&mut out).await?;
                let mut file = spooled.open_at(*offset).await.map_err(io)?;
                self.stream(&mut file, &mut stuffer, &mut out).await?;
            }
            Content::File(path) => {
                let mut file = tokio::fs::File::open(path).await.map_err(io)?;
                self.stream(&mut file, &mut stuffer, &mut out).await?;
            }
        }
        stuffer.finish(&mut out);
        self.send_buf(&mut out).await?;
        self.flush().await?;
        let done = self.reply().await?;
        self.quit().await;
        if done.is_positive() {
            Ok(())
        } else {
            Err(as_upstream(done))
        }
    }

    async fn stream(
        &mut self,
        file: &mut tokio::fs::File,
        stuffer: &mut Stuffer,
        out: &mut Vec<u8>,
    ) -> Result<(), Reply> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(|e| {
                Reply::new(451, "4.3.0", format!("reading the spooled message: {e}"))
            })?;
            if n == 0 {
                return Ok(());
            }
            stuffer.stuff(&buf[..n], out);
            self.send_buf(out).await?;
        }
    }

    async fn send_buf(&mut self, out: &mut Vec<u8>) -> Result<(), Reply> {
        let r = self.send(out).await;
        out.clear();
        r
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Reply> {
        let addr = self.addr;
        tokio::time::timeout(self.timeout, self.writer.write_all(bytes))
            .await
            .map_err(|_| lost(addr, "write timed out"))?
            .map_err(|e| lost(addr, &e.to_string()))
    }

    async fn flush(&mut self) -> Result<(), Reply> {
        let addr = self.addr;
        tokio::time::timeout(self.timeout, self.writer.flush())
            .await
            .map_err(|_| lost(addr, "write timed out"))?
            .map_err(|e| lost(addr, &e.to_string()))
    }

    /// Reads one (possibly multi-line) reply.
    async fn reply(&mut self) -> Result<Reply, Reply> {
        let addr = self.addr;
        let mut text = Vec::new();
        for _ in 0..100 {
            let mut line = Vec::new();
            let n = tokio::time::timeout(
                self.timeout,
                (&mut self.reader).take(4096).read_until(b'\n', &mut line),
            )
            .await
            .map_err(|_| lost(addr, "timed out waiting for a reply"))?
            .map_err(|e| lost(addr, &e.to_string()))?;
            if n == 0 {
                return Err(lost(addr, "connection closed"));
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| lost(addr, "malformed reply"))?;
            text.push(line.get(4..).unwrap_or_default().to_owned());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply {
                    code,
                    text: text.join("\n"),
                });
            }
        }
        Err(lost(addr, "reply too long"))
    }

    async fn quit(mut self) {
        let _ = self.send(b"QUIT\r\n").await;
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.reply()).await;
    }
}

impl Content {
    /// Size in bytes (for SIZE=).
    pub async fn size(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Spooled {
                header,
                spooled,
                offset,
            } => header.len() as u64 + spooled.len().saturating_sub(*offset),
            Content::File(p) => tokio::fs::metadata(p).await.map(|m| m.len()).unwrap_or(0),
        }
    }
}

/// A failure of the connection itself: always temporary (the MTA retries).
fn lost(addr: SocketAddr, what: &str) -> Reply {
    Reply::new(451, "4.4.2", format!("next hop {addr}: {what}"))
}

/// A reply of the next hop, as we pass it upstream: the code class is kept, the text
/// says where it came from.
fn as_upstream(r: Reply) -> Reply {
    let code = if r.is_temporary() || r.is_permanent() {
        r.code
    } else {
        451
    };
    Reply {
        code,
        text: format!("next hop said: {}", r.text.replace('\n', " / ")),
    }
}

/// The SMTP wire form of message content, across chunk boundaries: dot-stuffing
/// (RFC 5321 §4.5.2) and CRLF line endings (§2.3.8: a bare LF must not be sent; the MTA
/// would convert it anyway), then the end of data.
#[derive(Debug)]
struct Stuffer {
    at_line_start: bool,
    last: u8,
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer {
            at_line_start: true,
            last: b'\n',
        }
    }
}

impl Stuffer {
    fn stuff(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.at_line_start && input[0] == b'.' {
                out.push(b'.');
            }
            match input.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let before = if i == 0 { self.last } else { input[i - 1] };
                    out.extend_from_slice(&input[..i]);
                    if before != b'\r' {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    input = &input[i + 1..];
                    self.at_line_start = true;
                    self.last = b'\n';
                }
                None => {
                    out.extend_from_slice(input);
                    self.at_line_start = false;
                    self.last = input[input.len() - 1];
                    input = &[];
                }
            }
        }
    }

    /// Ends the last line if the content did not, then the terminating dot.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_across_chunks() {
        let mut s = Stuffer::default();
        let mut out = Vec::new();
        s.stuff(b".a\r\nb\r", &mut out);
        s.stuff(b"\n.", &mut out);
        s.stuff(b".c\nd\n", &mut out);
        s.stuff(b"\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"..a\r\nb\r\n...c\r\nd\r\n\r\n.\r\n");
        let mut s = Stuffer::default();
        let mut out = Vec::new();
        s.stuff(b"x\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"x\r\n.\r\n");
    }

    #[tokio::test]
    async fn dead_next_hop_is_a_temporary_failure() {
        // Bind and drop to get a port nobody listens on.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let hop = NextHop {
            addr,
            timeout: Duration::from_secs(5),
            helo: "test".into(),
        };
        let copy = Copy {
            from: "a@b".into(),
            rcpts: vec!["c@d".into()],
            content: Content::Bytes(Arc::new(b"x\r\n".to_vec())),
            eight_bit: false,
            smtputf8: false,
        };
        let err = deliver(&hop, &[copy], &XForward::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, 451, "{err}");
    }
}
