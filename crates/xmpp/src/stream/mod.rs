//! One task per connection. Negotiation runs through typestates — [`Plain`] → [`Secured`] →
//! authenticated → bound — each step returning the next state or a stream error to close
//! with; only [`session::run`] of a bound session routes stanzas.

pub mod bind;
pub mod depth;
pub mod fast;
pub mod header;
pub mod io;
pub mod sasl;
pub mod sasl2;
pub mod session;

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minidom::Element;
use postern_accounts::scram::ChannelBindings;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_xmpp::xmlstream::{
    AcceptedStream, ReadError, StreamHeader, Timeouts, XmlStream, accept_stream,
};
use xmpp_parsers::ns;
use xmpp_parsers::stream_error::{DefinedCondition, StreamError};
use xmpp_parsers::stream_features::StreamFeatures;

use self::io::{Io, Transport};
use crate::features::Stage;
use crate::router::RouterBuilder;
use crate::server::Server;
use crate::stanza::Inbound;

/// An XML stream whose top-level elements arrive as minidom elements, decoded by
/// [`Inbound::decode`] (a catch-all, so an unknown element never kills the reader).
pub type Xml = XmlStream<Io, Element>;

/// What the stream layer itself offers: `<starttls/>` (required) before TLS, the SASL
/// mechanisms, `<bind/>` (required) after authentication.
pub fn register(r: &mut RouterBuilder) {
    let starttls = Element::builder("starttls", ns::TLS)
        .append(Element::bare("required", ns::TLS))
        .build();
    r.stream_feature(Stage::BeforeTls, starttls);
    sasl::register(r);
    let bind = Element::builder("bind", ns::BIND)
        .append(Element::bare("required", ns::BIND))
        .build();
    r.stream_feature(Stage::Authenticated, bind);
}

/// Serves one client connection from accept to close.
///
/// Negotiation runs boxed: its state (TLS handshake, SASL, SASL2 with store queries) is freed
/// once the session is bound, so an idle session's task holds only the session loop's state
/// (bench/xmpp idle, quick sizes, against 5a9f38c: RSS per connection 38.9 vs 41.6 KiB;
/// with it inline 44.7).
pub async fn handle(
    server: Server,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    shutdown: watch::Receiver<bool>,
) {
    let Some(bound) = Box::pin(negotiate(&server, tcp, peer, direct_tls)).await else {
        return;
    };
    session::run(server, bound, shutdown).await;
}

/// TLS, authentication and binding; `None` when the stream ended, or went to an existing
/// session (resumption).
async fn negotiate(
    server: &Server,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
) -> Option<bind::Bound> {
    let deadline = Instant::now() + server.config.limits.handshake_timeout;
    let secured = if direct_tls {
        Secured::accept_tls(server, tcp, deadline).await?
    } else {
        let plain = Plain::open(server, tcp, deadline).await?;
        plain.starttls(server, deadline).await?
    };
    match secured.authenticate(server, peer, deadline).await? {
        sasl::Authed::Stream(authenticated) => authenticated.bind(server, deadline).await,
        sasl::Authed::Bound(bound) => Some(bound),
        sasl::Authed::Handed => None,
    }
}

/// A stream over plain TCP: the only thing it can do is upgrade to TLS.
pub struct Plain {
    xml: Xml,
}

impl Plain {
    async fn open(server: &Server, tcp: TcpStream, deadline: Instant) -> Option<Plain> {
        let io = limited_io(server, Transport::Plain(tcp));
        let features = |_: &str| StreamFeatures {
            others: server.router.offers().stream(Stage::BeforeTls).to_vec(),
            ..StreamFeatures::default()
        };
        let (xml, _domain) = open(server, io, deadline, features).await?;
        Some(Plain { xml })
    }

    /// RFC 6120 §5: TLS is required before anything else.
    async fn starttls(mut self, server: &Server, deadline: Instant) -> Option<Secured> {
        let el = match negotiation_read(&mut self.xml, deadline).await {
            Ok(el) => el,
            Err(e) => return close(self.xml, e).await,
        };
        let refusal = match Inbound::decode(el) {
            Inbound::StartTls => None,
            Inbound::Stanza(_) | Inbound::BadStanza { .. } => Some(stream_error(
                DefinedCondition::NotAuthorized,
                "Stanzas before authentication",
            )),
            _ => Some(stream_error(
                DefinedCondition::PolicyViolation,
                "STARTTLS is required",
            )),
        };
        if refusal.is_some() {
            return close(self.xml, refusal).await;
        }
        self.xml.send(&xmpp_parsers::starttls::Proceed).await.ok()?;
        let io = self.xml.into_inner();
        // Bytes after <starttls/> would be plaintext injected into the TLS session. Whitespace
        // between elements is allowed and is dropped here (go-xmpp, used by go-sendxmpp, sends
        // "<starttls/>\n").
        if io
            .unparsed()
            .iter()
            .any(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            tracing::warn!("client sent data after <starttls/>; closing");
            return None;
        }
        let Transport::Plain(tcp) = io.into_transport() else {
            return None;
        };
        Secured::accept_tls(server, tcp, deadline).await
    }
}

/// A TLS connection, not yet authenticated.
pub struct Secured {
    transport: Transport,
    bindings: ChannelBindings,
}

impl Secured {
    async fn accept_tls(server: &Server, tcp: TcpStream, deadline: Instant) -> Option<Secured> {
        let tls = match tokio::time::timeout_at(deadline, server.tls.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => return None,
        };
        let bindings = server.tls.bindings(tls.get_ref().1);
        Some(Secured {
            transport: Transport::Tls(Box::new(tls)),
            bindings,
        })
    }

    async fn authenticate(
        self,
        server: &Server,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Option<sasl::Authed> {
        let io = limited_io(server, self.transport);
        let bindings = self.bindings;
        let features = |_: &str| sasl::features(server, &bindings);
        let (xml, domain) = open(server, io, deadline, features).await?;
        sasl::negotiate(server, xml, domain, &bindings, peer.ip(), deadline).await
    }
}

/// Accepts a stream header on `io` and answers with header and features.
async fn open(
    server: &Server,
    io: Io,
    deadline: Instant,
    features: impl Fn(&str) -> StreamFeatures,
) -> Option<(Xml, String)> {
    let mut io = io;
    match tokio::time::timeout_at(deadline, io.check_header()).await {
        Ok(Ok(header::Verdict::Fine)) => {}
        Ok(Ok(header::Verdict::Refuse(condition, text))) => {
            tracing::debug!(?condition, "stream header refused");
            refuse_header(server, io, condition, text).await;
            return None;
        }
        Ok(Ok(header::Verdict::Incomplete) | Err(_)) | Err(_) => return None,
    }
    io.features_due();
    let accepted = match tokio::time::timeout_at(
        deadline,
        accept_stream(io, ns::JABBER_CLIENT, timeouts(server)),
    )
    .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "no valid stream header");
            return None;
        }
        Err(_) => return None,
    };
    open_accepted(server, accepted, features).await
}

const STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// RFC 6120 §4.9.1.2: our header, the error, the footer (written as bytes: the XML layer
/// never accepted this stream).
async fn refuse_header(server: &Server, mut io: Io, condition: DefinedCondition, text: &str) {
    use tokio::io::AsyncWriteExt;
    let from = server
        .hosts
        .domains()
        .first()
        .map_or(String::new(), |d| format!(" from='{d}'"));
    let error = minidom::Element::from(stream_error(condition, text));
    let name = error
        .children()
        .next()
        .map_or("undefined-condition", |c| c.name());
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let error = format!(
        "<stream:error><{name} xmlns='{STREAMS_ERR}'/><text xmlns='{STREAMS_ERR}' \
         xml:lang='en'>{text}</text></stream:error>"
    );
    let bytes = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' id='{}'{from} version='1.0'>{error}</stream:stream>",
        stream_id()
    );
    let write = async {
        io.write_all(bytes.as_bytes()).await?;
        io.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}

/// The second half of [`open`], also used after a stream reset (SASL success).
async fn open_accepted(
    server: &Server,
    mut accepted: AcceptedStream<Io>,
    features: impl Fn(&str) -> StreamFeatures,
) -> Option<(Xml, String)> {
    let header = accepted.take_header();
    let domain = match header.to.as_deref() {
        Some(to) => to.to_ascii_lowercase(),
        None => server.hosts.domains().first()?.clone(),
    };
    let id = stream_id();
    let reply = StreamHeader {
        from: Some(domain.clone().into()),
        to: None,
        id: Some(id.into()),
    };
    let pending = accepted.send_header(reply).await.ok()?;
    if !server.is_local_domain(&domain) {
        let err = stream_error(
            DefinedCondition::HostUnknown,
            "This server does not serve that domain",
        );
        let _ = pending.send_error(&err).await;
        return None;
    }
    let xml = pending
        .send_features::<Element>(&features(&domain))
        .await
        .ok()?;
    Some((xml, domain))
}

/// The byte layer of one stream, with the configured size and depth caps.
fn limited_io(server: &Server, transport: Transport) -> Io {
    let limits = &server.config.limits;
    Io::new(
        transport,
        limits.max_stanza_size.0 as usize,
        limits.max_stanza_depth,
    )
}

fn timeouts(server: &Server) -> Timeouts {
    let idle = server.config.limits.idle_timeout;
    Timeouts {
        read_timeout: idle,
        response_timeout: (idle / 4).max(Duration::from_secs(10)),
    }
}

fn stream_id() -> String {
    use rand::RngExt;
    let bytes: [u8; 12] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn stream_error(condition: DefinedCondition, text: &str) -> StreamError {
    StreamError::new(condition, "en", text)
}

/// What one read from the client yielded.
pub(crate) enum Read {
    Element(Element),
    /// The client was silent for the idle time.
    SoftTimeout,
    /// The client closed the stream (`</stream:stream>`).
    Closed,
    /// The connection ended without the stream being closed (a dropped network).
    Lost,
    /// The stream must end with this error.
    Fault(StreamError),
}

/// Reads the next top-level element; cancel-safe (state lives in the stream).
pub(crate) async fn read(xml: &mut Xml, deadline: Option<Instant>) -> Read {
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, xml.next()).await {
                Ok(n) => n,
                Err(_) => {
                    return Read::Fault(stream_error(
                        DefinedCondition::ConnectionTimeout,
                        "Negotiation took too long",
                    ));
                }
            },
            None => xml.next().await,
        };
        return match next {
            Some(Ok(el)) => {
                xml.get_stream().element_done();
                Read::Element(el)
            }
            Some(Err(ReadError::StreamFooterReceived)) => Read::Closed,
            None => Read::Lost,
            Some(Err(ReadError::SoftTimeout)) => Read::SoftTimeout,
            Some(Err(ReadError::ParseError(e))) => {
                // The element was well-formed XML but not a minidom element; skip it.
                tracing::debug!(error = %e, "unparsable element skipped");
                continue;
            }
            Some(Err(ReadError::HardError(e))) => {
                if io::is_too_large(&e) {
                    let limit = xml.get_stream().limit();
                    Read::Fault(stream_error(
                        DefinedCondition::PolicyViolation,
                        &format!("Stanza larger than the limit of {limit} bytes"),
                    ))
                } else if io::is_too_deep(&e) {
                    let limit = xml.get_stream().max_depth();
                    Read::Fault(stream_error(
                        DefinedCondition::PolicyViolation,
                        &format!("Elements nested deeper than the limit of {limit} levels"),
                    ))
                } else if xml.get_stream().at_eof() {
                    // The connection ended inside the stream (no footer): "invalid eof".
                    tracing::debug!(error = %e, "connection closed mid-stream");
                    Read::Lost
                } else if e.kind() == std::io::ErrorKind::InvalidData {
                    Read::Fault(stream_error(
                        DefinedCondition::NotWellFormed,
                        &e.to_string(),
                    ))
                } else if e.kind() == std::io::ErrorKind::TimedOut {
                    Read::Fault(stream_error(
                        DefinedCondition::ConnectionTimeout,
                        "Idle for too long",
                    ))
                } else {
                    tracing::debug!(error = %e, "connection error");
                    Read::Lost
                }
            }
        };
    }
}

/// The next element during negotiation, where the deadline bounds silence; `Err` carries
/// the stream error to close with (`None`: the client left).
pub(crate) async fn negotiation_read(
    xml: &mut Xml,
    deadline: Instant,
) -> Result<Element, Option<StreamError>> {
    loop {
        match read(xml, Some(deadline)).await {
            Read::Element(el) => return Ok(el),
            Read::SoftTimeout => continue,
            Read::Closed | Read::Lost => return Err(None),
            Read::Fault(e) => return Err(Some(e)),
        }
    }
}

/// Ends the stream: the error (if any), the footer, then the socket. Always `None`, so
/// negotiation steps can `return close(..)`.
pub(crate) async fn close<T>(mut xml: Xml, error: Option<StreamError>) -> Option<T> {
    if let Some(e) = &error {
        tracing::info!(condition = ?e.condition, "closing stream with error");
    }
    let failed = error.is_some();
    let finish = async {
        if let Some(e) = error {
            xml.send(&e).await?;
        }
        xml.shutdown().await
    };
    if tokio::time::timeout(Duration::from_secs(5), finish)
        .await
        .is_ok_and(|r| r.is_ok())
        && failed
    {
        tokio::spawn(linger(xml));
    }
    None
}

/// After a stream error: reads and drops what the client still sends, for a while, so that
/// closing with unread input does not reset the connection (a TCP RST can destroy the error
/// before the client reads it, e.g. after a flood the server stopped reading). Ends at the
/// client's footer or close, at anything unreadable, or after two seconds.
async fn linger(mut xml: Xml) {
    let drain = async { while let Some(Ok(_)) = xml.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}
