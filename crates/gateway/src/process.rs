//! One mail from the spool to the next hop: facts, policy, copies, relay, reply.
//!
//! Never loses a mail: every path ends in a reply to the MTA, and only `250` means we
//! are done with it. A transformation that fails where it must not (encryption, signing)
//! answers `451` so the MTA keeps the mail; one that may fail (decryption, verification
//! of garbled or foreign OpenPGP) delivers the mail unchanged with a trace note saying why.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postern_pgp::{Cert, KeySpec, PgpError, PgpFormat};
use tracing::Instrument;

use crate::Gateway;
use crate::access::{self, Party};
use crate::envelope::Envelope;
use crate::error::GatewayError;
use crate::header::{self, HeaderBlock};
use crate::policy::{self, CopyPlan, Facts, Format, Treatment};
use crate::quarantine::Held;
use crate::relay::{self, Content, Copy};
use crate::reply::Reply;
use crate::rules::{self, Outcome};
use crate::spool::Spooled;
use crate::trace;
use crate::trust::{self, Evidence};
use crate::{attached_keys, autocrypt, key_request, learn};

/// The most of a message read to find its header block.
const HEADER_MAX: usize = 1024 * 1024;

/// Processes one received mail and returns the reply for the MTA.
pub async fn process(gw: &Gateway, envelope: Envelope, spooled: Spooled) -> Reply {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let id = SEQ.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("mail", id, from = %envelope.from, rcpts = envelope.rcpts.len(), size = spooled.len());
    async move {
        let started = std::time::Instant::now();
        let reply = match run(gw, &envelope, Arc::new(spooled)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "processing failed; the MTA will retry");
                Reply::new(
                    451,
                    "4.3.0",
                    "Temporary failure in the OpenPGP gateway, try again later",
                )
            }
        };
        tracing::info!(reply = %reply, ms = started.elapsed().as_millis() as u64, "mail done");
        reply
    }
    .instrument(span)
    .await
}

/// The mail as read: header block (forged trace fields removed) and where the body is.
struct Parsed {
    spooled: Arc<Spooled>,
    /// Header fields without forged `X-Postern-PGP`.
    header: Vec<u8>,
    /// The blank line between header and body, as received.
    separator: Vec<u8>,
    /// Body offset in the spool file.
    body_offset: u64,
}

impl Parsed {
    /// Pass-through content with an optional trace field on top.
    fn passthrough(&self, trace_field: Option<String>) -> Content {
        let mut header = Vec::with_capacity(self.header.len() + 128);
        if let Some(f) = trace_field {
            header.extend_from_slice(f.as_bytes());
        }
        header.extend_from_slice(&self.header);
        header.extend_from_slice(&self.separator);
        Content::Spooled {
            header: Arc::new(header),
            spooled: self.spooled.clone(),
            offset: self.body_offset,
        }
    }

    /// The whole cleaned message in memory.
    async fn load(&self) -> Result<Vec<u8>, GatewayError> {
        let all = self
            .spooled
            .read_all()
            .await
            .map_err(|e| GatewayError::io("reading the spooled message", e))?;
        let body = all.get(self.body_offset as usize..).unwrap_or_default();
        let mut out = Vec::with_capacity(self.header.len() + self.separator.len() + body.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.separator);
        out.extend_from_slice(body);
        Ok(out)
    }
}

async fn run(gw: &Gateway, env: &Envelope, spooled: Arc<Spooled>) -> Result<Reply, GatewayError> {
    let prefix = spooled
        .read_prefix(HEADER_MAX)
        .await
        .map_err(|e| GatewayError::io("reading the spooled message", e))?;
    let HeaderBlock {
        fields,
        body_offset,
    } = header::parse(&prefix);
    let separator = prefix
        .get(fields.len()..body_offset as usize)
        .unwrap_or_default()
        .to_vec();
    let seen = trace::inspect(&gw.trace_key, &fields);
    if seen.forged > 0 {
        tracing::warn!(
            count = seen.forged,
            "removed X-Postern-PGP fields we did not write"
        );
    }
    let mut parsed = Parsed {
        spooled,
        header: if seen.forged > 0 {
            trace::strip_forged(&gw.trace_key, &fields)
        } else {
            fields.clone()
        },
        separator,
        body_offset,
    };
    if seen.ours {
        tracing::info!("processed here before (loop); passing untouched");
    }

    // Content-filter rules, once per message; never on a mail we processed before (nor
    // on our own notes, which carry our trace field).
    let outcome = match seen.ours || gw.config.rules.is_empty() {
        true => Outcome::default(),
        false => evaluate_rules(gw, env, &parsed).await?,
    };
    if !outcome.is_empty() {
        tracing::info!(rules = %outcome.summary(), "content-filter rules");
        parsed.header = rules::apply::edit_header(&parsed.header, &outcome);
    }
    if let Some(rule) = &outcome.deleted_by {
        // Logged before anything else happens: the mail exists only in this line now.
        tracing::info!(rule = %rule, from = %env.from, rcpts = ?env.rcpts, "deleted by content-filter rule");
        let extras = rule_copies(gw, env, &parsed, &outcome);
        return Ok(
            match relay::deliver(&gw.next_hop, &extras, &env.xforward).await {
                Ok(()) => Reply::new(250, "2.0.0", format!("Ok: deleted by rule {rule:?}")),
                Err(reply) => reply,
            },
        );
    }
    let redirected;
    let env = match outcome.redirect.is_empty() {
        true => env,
        false => {
            redirected = Envelope {
                rcpts: outcome.redirect.clone(),
                ..env.clone()
            };
            &redirected
        }
    };
    let policy_cfg = rules::apply::policy(&gw.config.policy, &outcome);

    let mut facts = gather(gw, env, &fields, seen.ours).await?;
    if !seen.ours {
        exchange_autocrypt(gw, env, &mut parsed, &facts).await;
        import_attached_keys(gw, &parsed, &facts).await?;
    }
    let mut plan = policy::plan(&policy_cfg, &facts.facts);
    let mut message: Option<Arc<Vec<u8>>> = None;
    // Inline PGP hides in the body: look for an armor line (streaming, memory bounded)
    // before loading a plain mail to local recipients.
    let inline_candidate = facts.facts.format == Format::Plain
        && !facts.facts.looped
        && policy_cfg.decrypt
        && facts.facts.recipients.iter().any(|r| r.local)
        && parsed
            .spooled
            .contains(b"-----BEGIN PGP ")
            .await
            .map_err(|e| GatewayError::io("reading the spooled message", e))?;
    if inline_candidate || policy::needs_content(&plan) {
        let full = parsed.load().await?;
        if facts.facts.format == Format::Plain {
            let format = match postern_pgp::detect(&full) {
                PgpFormat::InlineEncrypted => Format::Encrypted,
                PgpFormat::InlineSigned => Format::Signed,
                _ => Format::Plain,
            };
            if format != Format::Plain {
                facts.facts.format = format;
                plan = policy::plan(&policy_cfg, &facts.facts);
            }
        }
        message = Some(Arc::new(full));
    }
    tracing::debug!(?plan, "policy");

    if let Some(c) = plan.iter().find(|c| c.treatment == Treatment::Reject) {
        let who: Vec<&str> = c
            .recipients
            .iter()
            .map(|&i| env.rcpts[i].as_str())
            .collect();
        tracing::info!(recipients = ?who, "refused: no key and policy requires encryption");
        return Ok(Reply::new(
            550,
            "5.7.1",
            format!(
                "No OpenPGP key for {}; policy requires encrypted mail to them",
                who.join(", ")
            ),
        ));
    }

    let mut copies: Vec<Copy> = Vec::new();
    let mut holds: Vec<(Vec<String>, Content)> = Vec::new();
    for c in &plan {
        let rcpts: Vec<String> = c.recipients.iter().map(|&i| env.rcpts[i].clone()).collect();
        let content = build(gw, env, &parsed, message.as_ref(), &facts, c).await?;
        if matches!(c.treatment, Treatment::Hold { .. }) {
            holds.push((rcpts, content));
        } else {
            copies.push(Copy {
                from: env.from.clone(),
                rcpts,
                content,
                eight_bit: env.eight_bit,
                smtputf8: env.smtputf8,
            });
        }
    }

    let mut held_ids = Vec::new();
    for (rcpts, content) in holds {
        let bytes = content_bytes(&content).await?;
        let held = Held {
            id: String::new(),
            from: env.from.clone(),
            to: rcpts,
            reason: "no OpenPGP key for the recipient (missing_key = hold)".into(),
            held_at: 0,
            size: 0,
            eight_bit: env.eight_bit,
            smtputf8: env.smtputf8,
        };
        let q = gw.quarantine.clone();
        held_ids.push(tokio::task::spawn_blocking(move || q.hold(&bytes, &held)).await??);
    }

    let main_copies = copies.len();
    copies.extend(rule_copies(gw, env, &parsed, &outcome));
    if !seen.ours {
        copies.extend(key_request_answers(gw, env, &parsed, &facts).await?);
    }
    match relay::deliver(&gw.next_hop, &copies, &env.xforward).await {
        Ok(()) => {
            let what: Vec<String> = plan
                .iter()
                .map(|c| treatment_name(&c.treatment).to_owned())
                .collect();
            Ok(Reply::new(
                250,
                "2.0.0",
                format!(
                    "Ok: {} ({})",
                    plural(main_copies, "copy", "copies"),
                    what.join(", ")
                ),
            ))
        }
        Err(reply) => {
            tracing::warn!(%reply, "next hop did not take the mail");
            for id in held_ids {
                let _ = gw.quarantine.delete(&id);
            }
            Ok(reply)
        }
    }
}

/// Autocrypt: learns an outside sender's key from their header, and adds a local sender's
/// own header to mail that leaves for the outside.
async fn exchange_autocrypt(gw: &Gateway, env: &Envelope, parsed: &mut Parsed, g: &Gathered) {
    let cfg = &gw.config.autocrypt;
    if cfg.learn && !g.facts.sender.local {
        autocrypt::learn(gw, &parsed.header).await;
    }
    if cfg.send
        && g.facts.sender.local
        && g.facts.recipients.iter().any(|r| !r.local)
        && let Some(cert) = &g.sender_cert
        && let Some(field) = autocrypt::outbound_field(&parsed.header, &env.from, cert)
    {
        parsed.header.extend_from_slice(field.as_bytes());
    }
}

/// Imports `application/pgp-keys` parts as `learn.rs` allows: all from a local sender,
/// otherwise only a key for the From address. The body is read only when the spooled mail
/// mentions `pgp-keys` at all.
async fn import_attached_keys(
    gw: &Gateway,
    parsed: &Parsed,
    g: &Gathered,
) -> Result<(), GatewayError> {
    if !gw.config.attached_keys.import
        || !parsed
            .spooled
            .contains(attached_keys::MARKER)
            .await
            .map_err(|e| GatewayError::io("reading the spooled message", e))?
    {
        return Ok(());
    }
    let whole = parsed.load().await?;
    let from = autocrypt::from_address(&parsed.header);
    for part in attached_keys::key_parts(&whole) {
        if g.facts.sender.local {
            for r in learn::from_local_sender(gw, &part).await {
                match r {
                    Ok(what) => tracing::info!(?what, "imported attached key from local sender"),
                    Err(why) => tracing::info!(%why, "attached key not imported"),
                }
            }
        } else if let Some(from) = &from {
            match learn::outside_key(gw, from, &part).await {
                Ok(Some(what)) => {
                    tracing::info!(address = %from, ?what, "imported the sender's attached key")
                }
                Ok(None) => {}
                Err(why) => tracing::info!(address = %from, %why, "attached key not imported"),
            }
        }
    }
    Ok(())
}

/// Answers to a key request (`key_request.rs`): one per local recipient with a usable key,
/// within the sender's rate limit.
async fn key_request_answers(
    gw: &Gateway,
    env: &Envelope,
    parsed: &Parsed,
    g: &Gathered,
) -> Result<Vec<Copy>, GatewayError> {
    let cfg = &gw.config.key_requests;
    if !cfg.enabled || !key_request::is_request(&parsed.header, &env.from, &cfg.subject_token) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for r in g.facts.recipients.iter().filter(|r| r.local) {
        let owner = &r.party.address;
        let Some(cert) = gw.keys.encryption_cert(owner).await? else {
            continue;
        };
        if !gw.key_requests.allow(&env.from, cfg.per_sender, cfg.window) {
            tracing::info!(requester = %env.from, "key request not answered: rate limit");
            break;
        }
        let armored = postern_pgp::armored_public(&cert)?;
        tracing::info!(requester = %env.from, owner = %owner, "answering key request");
        out.push(Copy {
            from: String::new(),
            rcpts: vec![env.from.clone()],
            content: Content::Bytes(Arc::new(key_request::answer(
                owner,
                &env.from,
                &armored,
                &gw.trace_key,
            ))),
            eight_bit: false,
            smtputf8: !env.from.is_ascii() || !owner.is_ascii(),
        });
    }
    Ok(out)
}

/// Evaluates the content-filter rules; the body is read only when a rule looks at it.
async fn evaluate_rules(
    gw: &Gateway,
    env: &Envelope,
    parsed: &Parsed,
) -> Result<Outcome, GatewayError> {
    let whole = match rules::needs_body(&gw.config.rules) {
        true => Some(parsed.load().await?),
        false => None,
    };
    let mut format = header_format(&parsed.header);
    if let Some(w) = &whole
        && format == Format::Plain
    {
        format = match postern_pgp::detect(w) {
            PgpFormat::InlineEncrypted => Format::Encrypted,
            PgpFormat::InlineSigned => Format::Signed,
            _ => Format::Plain,
        };
    }
    let sender = party(gw, &env.from).await;
    let mut recipients = Vec::with_capacity(env.rcpts.len());
    for r in &env.rcpts {
        recipients.push(party(gw, r).await);
    }
    let mail = rules::mail_facts(
        sender,
        recipients,
        &parsed.header,
        whole.as_deref(),
        parsed.spooled.len(),
        format,
    );
    Ok(rules::evaluate(&gw.config.rules, &mail))
}

/// The copies the rules add: the mail (header edits applied) to `copy_to` addresses, and
/// notes from the null sender. They go in the same relay transaction as the mail.
fn rule_copies(gw: &Gateway, env: &Envelope, parsed: &Parsed, outcome: &Outcome) -> Vec<Copy> {
    let mut out = Vec::new();
    if !outcome.copy_to.is_empty() {
        out.push(Copy {
            from: env.from.clone(),
            rcpts: outcome.copy_to.clone(),
            content: parsed.passthrough(None),
            eight_bit: env.eight_bit,
            smtputf8: env.smtputf8,
        });
    }
    for note in &outcome.notes {
        let bytes = rules::apply::note_message(note, &gw.hostname, &gw.trace_key);
        out.push(Copy {
            from: String::new(),
            rcpts: vec![note.to.clone()],
            content: Content::Bytes(Arc::new(bytes)),
            eight_bit: true,
            smtputf8: !note.to.is_ascii(),
        });
    }
    out
}

/// Facts for the policy plus the certs found along the way.
struct Gathered {
    facts: Facts,
    /// Encryption certs of outside recipients, by address.
    recipient_certs: HashMap<String, Cert>,
    /// The local sender's own encryption cert (sent copies stay readable to them).
    sender_cert: Option<Cert>,
}

async fn gather(
    gw: &Gateway,
    env: &Envelope,
    fields: &[u8],
    looped: bool,
) -> Result<Gathered, GatewayError> {
    let cfg = &gw.config;
    let sender_party = party(gw, &env.from).await;
    let sender_domain_served = !env.from.is_empty() && gw.is_local_domain(&env.sender_domain());
    let evidence = Evidence::from_header(fields, env.xforward.addr());
    let sender_local = trust::is_local_sender(
        cfg.local_senders,
        sender_domain_served,
        &evidence,
        &cfg.trusted_networks,
    );
    let format = header_format(fields);

    if !looped
        && sender_local
        && cfg.policy.auto_keygen
        && access::permitted(
            &cfg.policy.encrypt_allow,
            &cfg.policy.encrypt_deny,
            &[&sender_party],
        )
    {
        auto_keygen(gw, &sender_party.address).await;
    }
    let sender_has_secret = sender_local && gw.keys.has_secret(&env.from).await?;
    let sender_cert = match sender_local {
        true => gw.keys.encryption_cert(&env.from).await?,
        false => None,
    };

    let mut recipients = Vec::with_capacity(env.rcpts.len());
    let mut recipient_certs = HashMap::new();
    for rcpt in &env.rcpts {
        let p = party(gw, rcpt).await;
        let local = gw.is_local_domain(p.domain());
        let mut r = policy::Recipient {
            local,
            ..Default::default()
        };
        if !looped {
            if local {
                if cfg.policy.auto_keygen
                    && cfg.policy.decrypt
                    && access::permitted(&cfg.policy.decrypt_allow, &cfg.policy.decrypt_deny, &[&p])
                {
                    auto_keygen(gw, &p.address).await;
                }
                r.has_secret_key = gw.keys.has_secret(&p.address).await?;
            } else {
                let mut cert = gw.keys.encryption_cert(&p.address).await?;
                if cert.is_none()
                    && let Some(lookup) = &gw.wkd_lookup
                    && let Some(data) = lookup.fetch(&p.address).await
                {
                    for r in learn::outside_keys(gw, &p.address, &data).await {
                        match r {
                            Ok(what) => {
                                tracing::info!(address = %p.address, ?what, "imported a key found by WKD")
                            }
                            Err(why) => {
                                tracing::info!(address = %p.address, %why, "WKD key not imported")
                            }
                        }
                    }
                    cert = gw.keys.encryption_cert(&p.address).await?;
                }
                if let Some(cert) = cert {
                    r.has_public_key = true;
                    recipient_certs.insert(p.address.clone(), cert);
                }
            }
        }
        r.party = p;
        recipients.push(r);
    }
    Ok(Gathered {
        facts: Facts {
            sender: policy::Sender {
                party: sender_party,
                local: sender_local,
                has_secret_key: sender_has_secret,
            },
            recipients,
            format,
            looped,
        },
        recipient_certs,
        sender_cert,
    })
}

/// Builds the content of one copy.
async fn build(
    gw: &Gateway,
    env: &Envelope,
    parsed: &Parsed,
    message: Option<&Arc<Vec<u8>>>,
    gathered: &Gathered,
    copy: &CopyPlan,
) -> Result<Content, GatewayError> {
    let message_id = header::first_value(&parsed.header, "message-id").unwrap_or_default();
    let field = |value: &str| gw.trace_key.field(value, &message_id);
    let need = || {
        message.cloned().ok_or_else(|| {
            GatewayError::io(
                "building a copy",
                std::io::Error::other("message not loaded"),
            )
        })
    };
    let protected = gw.config.policy.protected_headers;
    match &copy.treatment {
        Treatment::Pass { note } => Ok(parsed.passthrough(note.map(field))),
        Treatment::Hold { sign: false } => Ok(parsed.passthrough(None)),
        Treatment::Reject => Ok(parsed.passthrough(None)),
        Treatment::Encrypt { sign } => {
            let msg = need()?;
            let mut certs: Vec<Cert> = copy
                .recipients
                .iter()
                .filter_map(|&i| {
                    gathered
                        .recipient_certs
                        .get(&gathered.facts.recipients[i].party.address)
                        .cloned()
                })
                .collect();
            if let Some(own) = &gathered.sender_cert {
                certs.push(own.clone());
            }
            let signer = match sign {
                true => gw.keys.signing_cert(&env.from).await?,
                false => None,
            };
            let signed = signer.is_some();
            let out = tokio::task::spawn_blocking(move || {
                postern_pgp::encrypt_message(&msg, certs.iter(), signer.as_ref(), protected)
            })
            .await??;
            Ok(with_trace(
                gw,
                out,
                if signed {
                    "encrypted signed"
                } else {
                    "encrypted"
                },
            ))
        }
        Treatment::Sign | Treatment::Hold { sign: true } => {
            let msg = need()?;
            let Some(signer) = gw.keys.signing_cert(&env.from).await? else {
                return Ok(parsed.passthrough(None));
            };
            let out = tokio::task::spawn_blocking(move || postern_pgp::sign_message(&msg, &signer))
                .await??;
            Ok(with_trace(gw, out, "signed"))
        }
        Treatment::Decrypt => {
            let msg = need()?;
            let rcpt = &gathered.facts.recipients[copy.recipients[0]].party.address;
            let secrets = gw.keys.secret_certs(rcpt).await?;
            let verify = verification_certs(gw, env, &parsed.header).await?;
            let result = tokio::task::spawn_blocking(move || {
                postern_pgp::decrypt_message(&msg, &secrets, &verify)
            })
            .await?;
            match result {
                Ok(opened) => {
                    let verdict = postern_pgp::summarize(&opened.signatures);
                    tracing::info!(recipient = %rcpt, key = %opened.decrypted_with, signature = %verdict, "decrypted");
                    Ok(with_trace(
                        gw,
                        opened.message,
                        &format!("decrypted; signature={verdict}"),
                    ))
                }
                Err(PgpError::NoDecryptionKey) => {
                    Ok(parsed.passthrough(Some(field("not-decrypted; reason=no-matching-key"))))
                }
                Err(e) => {
                    tracing::warn!(error = %e, recipient = %rcpt, "cannot decrypt; delivering unchanged");
                    Ok(parsed.passthrough(Some(field(&format!(
                        "garbled; reason={}",
                        short(&e.to_string())
                    )))))
                }
            }
        }
        Treatment::Verify => {
            let msg = need()?;
            let certs = verification_certs(gw, env, &parsed.header).await?;
            let result =
                tokio::task::spawn_blocking(move || postern_pgp::verify_message(&msg, &certs))
                    .await?;
            let value = match result {
                Ok(results) => format!("verified; signature={}", postern_pgp::summarize(&results)),
                Err(e) => format!(
                    "verified; signature=error; reason={}",
                    short(&e.to_string())
                ),
            };
            Ok(parsed.passthrough(Some(field(&value))))
        }
    }
}

/// Public certs of the envelope sender and of the From address, to check signatures.
async fn verification_certs(
    gw: &Gateway,
    env: &Envelope,
    header_block: &[u8],
) -> Result<Vec<Cert>, GatewayError> {
    let mut certs = Vec::new();
    let mut addresses = vec![env.from.to_lowercase()];
    if let Some(from) =
        header::first_value(header_block, "from").and_then(|v| header::first_address(&v))
        && !addresses.contains(&from)
    {
        addresses.push(from);
    }
    for a in addresses.iter().filter(|a| !a.is_empty()) {
        certs.extend(gw.keys.public_certs(a).await?);
    }
    Ok(certs)
}

/// A transformed message with our trace field on top.
fn with_trace(gw: &Gateway, message: Vec<u8>, value: &str) -> Content {
    let message_id =
        header::first_value(&header::parse(&message).fields, "message-id").unwrap_or_default();
    let field = gw.trace_key.field(value, &message_id);
    let mut out = Vec::with_capacity(field.len() + message.len());
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&message);
    Content::Bytes(Arc::new(out))
}

/// The PGP/MIME structure the header announces (inline PGP needs the body).
fn header_format(fields: &[u8]) -> Format {
    let mut head = fields.to_vec();
    head.extend_from_slice(b"\r\n");
    match postern_pgp::detect(&head) {
        PgpFormat::PgpMimeEncrypted => Format::Encrypted,
        PgpFormat::PgpMimeSigned => Format::Signed,
        _ => Format::Plain,
    }
}

/// An address with its groups (none for the null sender or on a lookup failure).
async fn party(gw: &Gateway, address: &str) -> Party {
    let mut p = Party::new(address);
    if !address.is_empty() {
        match gw.accounts.groups_of(address).await {
            Ok(groups) => p.groups = groups,
            Err(e) => tracing::debug!(error = %e, address, "no groups"),
        }
    }
    p
}

/// Generates a key for an active local account without one (`auto_keygen`).
async fn auto_keygen(gw: &Gateway, address: &str) {
    match gw.keys.has_secret(address).await {
        Ok(false) => {}
        _ => return,
    }
    if !gw.accounts.is_active(address).await.unwrap_or(false) {
        return;
    }
    {
        let Ok(mut in_flight) = gw.keygen_in_flight.lock() else {
            return;
        };
        if !in_flight.insert(address.to_owned()) {
            return;
        }
    }
    let k = &gw.config.keygen;
    let mut spec = KeySpec::new(address);
    spec.algorithm = k.algorithm;
    spec.profile = k.profile;
    spec.validity = k.expires;
    match gw.keys.generate(spec).await {
        Ok(cert) => {
            tracing::info!(address, fingerprint = %cert.fingerprint(), "generated a key automatically")
        }
        Err(e) => tracing::error!(address, error = %e, "automatic key generation failed"),
    }
    if let Ok(mut in_flight) = gw.keygen_in_flight.lock() {
        in_flight.remove(address);
    }
}

async fn content_bytes(content: &Content) -> Result<Vec<u8>, GatewayError> {
    match content {
        Content::Bytes(b) => Ok(b.to_vec()),
        Content::Spooled {
            header,
            spooled,
            offset,
        } => {
            let all = spooled
                .read_all()
                .await
                .map_err(|e| GatewayError::io("reading the spooled message", e))?;
            let mut out = header.to_vec();
            out.extend_from_slice(all.get(*offset as usize..).unwrap_or_default());
            Ok(out)
        }
        Content::File(p) => tokio::fs::read(p)
            .await
            .map_err(|e| GatewayError::io(format!("reading {}", p.display()), e)),
    }
}

fn treatment_name(t: &Treatment) -> &'static str {
    match t {
        Treatment::Pass { .. } => "plain",
        Treatment::Encrypt { sign: true } => "encrypted+signed",
        Treatment::Encrypt { sign: false } => "encrypted",
        Treatment::Sign => "signed",
        Treatment::Decrypt => "decrypted",
        Treatment::Verify => "verified",
        Treatment::Hold { .. } => "held",
        Treatment::Reject => "rejected",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One short line for a header.
fn short(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() || c == ';' { ' ' } else { c })
        .collect();
    one.chars().take(120).collect()
}
