//! One client connection, written out by hand so that the generator does little besides the
//! protocol: TCP, STARTTLS (RFC 6120 §5) or direct TLS (XEP-0368), SASL PLAIN or SCRAM-SHA-1
//! (the `sasl` crate's client), a new stream, resource binding. The result is a [`Session`]
//! that scenarios read and write raw stanzas on.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::ServerName;
use sasl::client::mechanisms::{Plain, Scram};
use sasl::common::ChannelBinding;
use sasl::common::scram::Sha1;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::scram::CachedSha1;
use crate::xml::{Element, Event, XmlError, XmlReader, escape};

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// The SASL mechanism every login of a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mechanism {
    Plain,
    #[value(name = "scram-sha-1")]
    ScramSha1,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
        }
    }
}

/// The server under load and how to log in to it; shared by all connections of a run.
pub struct Target {
    /// `host:port` to connect to.
    pub addr: String,
    /// The XMPP domain: stream `to`, and the domain of every account.
    pub domain: String,
    /// SNI and certificate name.
    pub tls_name: ServerName<'static>,
    /// TLS from the first byte instead of STARTTLS.
    pub direct_tls: bool,
    pub connector: TlsConnector,
    pub mechanism: Mechanism,
    /// Reuse SCRAM salted passwords (see [`crate::scram`]).
    pub scram_cache: bool,
    /// From TCP connect to bound resource, at most.
    pub login_timeout: Duration,
}

/// A logged-in, bound client stream.
pub struct Session {
    /// The full JID the server bound.
    pub jid: String,
    pub stream: Tls,
    pub reader: XmlReader,
}

impl Target {
    /// A full login of `user` (localpart); `resource` None lets the server choose.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> anyhow::Result<Session> {
        tokio::time::timeout(
            self.login_timeout,
            self.login_steps(user, password, resource),
        )
        .await
        .map_err(|_| anyhow!("login of {user} timed out after {:?}", self.login_timeout))?
        .with_context(|| format!("login of {user}"))
    }

    async fn login_steps(
        &self,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> anyhow::Result<Session> {
        let mut tcp = TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        if !self.direct_tls {
            let mut reader = XmlReader::new();
            let features = open_stream(&mut tcp, &mut reader, &self.domain).await?;
            if features.child("starttls").is_none() {
                bail!("server offers no STARTTLS");
            }
            send(
                &mut tcp,
                "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            )
            .await?;
            let answer = next_element(&mut tcp, &mut reader).await?;
            if answer.name != "proceed" {
                bail!("STARTTLS answered with <{}/>", answer.name);
            }
            if !reader.is_drained() {
                bail!("server sent data after <proceed/>, before the TLS handshake");
            }
        }
        let mut tls = self
            .connector
            .connect(self.tls_name.clone(), tcp)
            .await
            .context("TLS handshake")?;

        let mut reader = XmlReader::new();
        let features = open_stream(&mut tls, &mut reader, &self.domain).await?;
        let offered: Vec<&str> = features
            .child("mechanisms")
            .map(|m| m.children.iter().map(|c| c.text.trim()).collect())
            .unwrap_or_default();
        if !offered.contains(&self.mechanism.name()) {
            bail!(
                "server does not offer {} (offers {offered:?})",
                self.mechanism.name()
            );
        }
        self.authenticate(&mut tls, &mut reader, user, password)
            .await?;

        // RFC 6120 §6.4.6: a new stream after SASL success, with a fresh parser.
        let mut reader = XmlReader::new();
        let features = open_stream(&mut tls, &mut reader, &self.domain).await?;
        if features.child("bind").is_none() {
            bail!("server offers no resource binding after SASL");
        }
        let resource = resource
            .map(|r| format!("<resource>{}</resource>", escape(r)))
            .unwrap_or_default();
        send(
            &mut tls,
            &format!(
                "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 {resource}</bind></iq>"
            ),
        )
        .await?;
        let result = next_iq_answer(&mut tls, &mut reader, "bind").await?;
        let jid = result
            .child("bind")
            .and_then(|b| b.child("jid"))
            .map(|j| j.text.trim().to_owned())
            .ok_or_else(|| anyhow!("bind result without a JID"))?;
        // RFC 3921 session establishment, only where a server still requires it.
        if let Some(session) = features.child("session")
            && session.child("optional").is_none()
        {
            send(
                &mut tls,
                "<iq type='set' id='sess'>\
                 <session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
            )
            .await?;
            next_iq_answer(&mut tls, &mut reader, "sess").await?;
        }
        Ok(Session {
            jid,
            stream: tls,
            reader,
        })
    }

    async fn authenticate(
        &self,
        tls: &mut Tls,
        reader: &mut XmlReader,
        user: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let mut mech: Box<dyn sasl::client::Mechanism + Send> = match self.mechanism {
            Mechanism::Plain => Box::new(Plain::new(user, password)),
            Mechanism::ScramSha1 if self.scram_cache => Box::new(
                Scram::<CachedSha1>::new(user, password, ChannelBinding::None)
                    .map_err(|e| anyhow!("SCRAM client: {e:?}"))?,
            ),
            Mechanism::ScramSha1 => Box::new(
                Scram::<Sha1>::new(user, password, ChannelBinding::None)
                    .map_err(|e| anyhow!("SCRAM client: {e:?}"))?,
            ),
        };
        send(
            tls,
            &format!(
                "<auth xmlns='{NS_SASL}' mechanism='{}'>{}</auth>",
                self.mechanism.name(),
                sasl_payload(&mech.initial())
            ),
        )
        .await?;
        loop {
            let el = next_element(tls, reader).await?;
            match el.name.as_str() {
                "challenge" => {
                    let challenge = decode_payload(&el.text)?;
                    let response = mech
                        .response(&challenge)
                        .map_err(|e| anyhow!("SASL challenge: {e}"))?;
                    send(
                        tls,
                        &format!(
                            "<response xmlns='{NS_SASL}'>{}</response>",
                            sasl_payload(&response)
                        ),
                    )
                    .await?;
                }
                "success" => {
                    let data = decode_payload(&el.text)?;
                    mech.success(&data)
                        .map_err(|e| anyhow!("SASL success from the server: {e}"))?;
                    return Ok(());
                }
                "failure" => bail!(
                    "SASL failure: {}",
                    el.first_child_name().unwrap_or("(no condition)")
                ),
                other => bail!("unexpected <{other}/> during SASL"),
            }
        }
    }
}

impl Session {
    /// Writes raw XML and flushes it through TLS.
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        send(&mut self.stream, xml).await
    }

    /// Closes the stream the polite way and waits (briefly) for the server to close its side.
    pub async fn close(mut self) {
        let _ = self.send("</stream:stream>").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(ev) = self.reader.next(&mut self.stream).await {
                if ev == Event::StreamClose {
                    break;
                }
            }
        })
        .await;
        let _ = self.stream.shutdown().await;
    }
}

/// The answer to an IQ ping (XEP-0199) or any other IQ get/set: `result` for pings,
/// `service-unavailable` for anything else. None when `el` needs no answer.
pub fn answer_iq(el: &Element) -> Option<String> {
    if el.name != "iq" || !matches!(el.attr("type"), Some("get" | "set")) {
        return None;
    }
    let id = escape(el.attr("id").unwrap_or_default());
    let to = el
        .attr("from")
        .map(|f| format!(" to='{}'", escape(f)))
        .unwrap_or_default();
    Some(if el.first_child_name() == Some("ping") {
        format!("<iq type='result' id='{id}'{to}/>")
    } else {
        format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
    })
}

pub async fn send<W: AsyncWrite + Unpin>(io: &mut W, xml: &str) -> anyhow::Result<()> {
    io.write_all(xml.as_bytes()).await.context("write")?;
    io.flush().await.context("flush")?;
    Ok(())
}

/// Sends our stream header, reads the server's and its `<stream:features/>`.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    reader: &mut XmlReader,
    domain: &str,
) -> anyhow::Result<Element> {
    send(
        io,
        &format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            escape(domain)
        ),
    )
    .await?;
    match reader.next(io).await? {
        Event::StreamOpen(_) => {}
        other => bail!("expected a stream header, got {other:?}"),
    }
    let features = next_element(io, reader).await?;
    if features.name != "features" {
        bail!("expected stream features, got <{}/>", features.name);
    }
    Ok(features)
}

/// The next top-level element; a stream error or the end of the stream is an error.
async fn next_element<R: AsyncRead + Unpin>(
    io: &mut R,
    reader: &mut XmlReader,
) -> anyhow::Result<Element> {
    match reader.next(io).await {
        // At the top level, <stream:error/>; stanza errors are inside stanzas.
        Ok(Event::Element(el)) if el.name == "error" => bail!(
            "stream error: {}",
            el.first_child_name().unwrap_or("(no condition)")
        ),
        Ok(Event::Element(el)) => Ok(el),
        Ok(Event::StreamOpen(_)) => bail!("unexpected second stream header"),
        Ok(Event::StreamClose) => bail!("server closed the stream"),
        Err(XmlError::Eof) => bail!("server closed the connection"),
        Err(e) => Err(e.into()),
    }
}

/// Waits for the result of our IQ `id`, skipping anything else the server sends first.
async fn next_iq_answer<R: AsyncRead + Unpin>(
    io: &mut R,
    reader: &mut XmlReader,
    id: &str,
) -> anyhow::Result<Element> {
    loop {
        let el = next_element(io, reader).await?;
        if el.name != "iq" || el.attr("id") != Some(id) {
            continue;
        }
        return match el.attr("type") {
            Some("result") => Ok(el),
            _ => bail!(
                "iq {id} failed: {}",
                el.child("error")
                    .and_then(Element::first_child_name)
                    .unwrap_or("(no condition)")
            ),
        };
    }
}

/// RFC 6120 §6.4.2: empty data is sent as `=`.
fn sasl_payload(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        BASE64.encode(data)
    }
}

fn decode_payload(text: &str) -> anyhow::Result<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    BASE64
        .decode(text)
        .context("SASL data from the server is not base64")
}
