//! Server side of SCRAM (RFC 5802), with SHA-256 (RFC 7677) and SHA-512 alike, and the -PLUS
//! variants with channel binding (`tls-exporter`, RFC 9266; `tls-server-end-point`,
//! RFC 5929). Pure: no I/O; the XMPP layer feeds it the decoded SASL payloads.
//!
//! The exchange, and which method handles each step:
//!
//! ```text
//! client-first  n,,n=user,r=cnonce            -> ScramServer::client_first  (who is it?)
//! server-first  r=cnonce+snonce,s=salt,i=4096 <- ScramServer::server_first  (with their keys)
//! client-final  c=biws,r=...,p=proof          -> ScramServer::client_final  (check proof)
//! server-final  v=signature                   <- returned by client_final on success
//! ```
//!
//! The server stores only StoredKey and ServerKey (see [`ScramKeys`]), never the password or
//! the SaltedPassword, so a stolen database does not let anyone log in with SCRAM directly.
//! Unknown users get a deterministic fake salt, so the exchange looks the same as for a real
//! user with a wrong password.

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::digest::{Digest, FixedOutput, KeyInit, Update};
use hmac::{EagerHash, Hmac};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;

/// The hash function of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-1: weakest, but still the only one some clients offer.
    Sha1,
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    /// Every supported hash, strongest first (the order mechanisms are advertised in).
    pub const ALL: [ScramHash; 3] = [ScramHash::Sha512, ScramHash::Sha256, ScramHash::Sha1];

    /// The SASL mechanism name, e.g. `SCRAM-SHA-256-PLUS`.
    pub fn mechanism_name(self, plus: bool) -> &'static str {
        match (self, plus) {
            (ScramHash::Sha1, false) => "SCRAM-SHA-1",
            (ScramHash::Sha1, true) => "SCRAM-SHA-1-PLUS",
            (ScramHash::Sha256, false) => "SCRAM-SHA-256",
            (ScramHash::Sha256, true) => "SCRAM-SHA-256-PLUS",
            (ScramHash::Sha512, false) => "SCRAM-SHA-512",
            (ScramHash::Sha512, true) => "SCRAM-SHA-512-PLUS",
        }
    }

    /// PBKDF2 iterations for new credentials: RFC 7677's 4096 minimum for SHA-1 and SHA-256;
    /// more for SHA-512, whose rounds are cheaper per byte of output.
    pub fn default_iterations(self) -> u32 {
        match self {
            ScramHash::Sha1 | ScramHash::Sha256 => 4096,
            ScramHash::Sha512 => 10_000,
        }
    }

    /// Output length in bytes (the length of keys, proofs and signatures).
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
            ScramHash::Sha512 => 64,
        }
    }

    /// H(data).
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => hmac_with::<sha1::Sha1>(key, data),
            ScramHash::Sha256 => hmac_with::<sha2::Sha256>(key, data),
            ScramHash::Sha512 => hmac_with::<sha2::Sha512>(key, data),
        }
    }

    /// Hi(password, salt, i) = PBKDF2 with HMAC-H, output one hash length.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            ScramHash::Sha1 => {
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out)
            }
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
            }
            ScramHash::Sha512 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out);
            }
        }
        out
    }
}

fn hmac_with<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8>
where
    Hmac<D>: KeyInit + Update + FixedOutput,
{
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize_fixed().to_vec()
}

/// What the server stores per account and hash function (RFC 5802 section 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    /// Random salt, sent to the client.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count, sent to the client.
    pub iterations: u32,
    /// H(ClientKey): verifies the client's proof.
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key"): proves the server knows the credentials.
    pub server_key: Vec<u8>,
}

impl ScramKeys {
    /// Derives the stored keys from a password. The password is used as its UTF-8 bytes
    /// without SASLprep: mail passwords are checked the same way by the PLAIN path, and
    /// clients that apply SASLprep leave ordinary ASCII passwords unchanged.
    pub fn derive(hash: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password, salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }
}

/// Channel-binding data the connection can offer; `None` where it is not TLS or the value
/// is not available (e.g. `tls-exporter` needs TLS 1.3 or extended master secret).
#[derive(Clone, Debug, Default)]
pub struct ChannelBindings {
    /// RFC 9266: TLS exporter with label "EXPORTER-Channel-Binding", 32 bytes.
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929: hash of the server's certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    /// Whether any channel binding can be offered, i.e. whether to advertise -PLUS.
    pub fn any(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }

    /// The names of the available types, for XEP-0440 `<sasl-channel-binding/>`.
    pub fn available_types(&self) -> Vec<&'static str> {
        let mut types = Vec::new();
        if self.tls_exporter.is_some() {
            types.push("tls-exporter");
        }
        if self.tls_server_end_point.is_some() {
            types.push("tls-server-end-point");
        }
        types
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }
}

/// The identities named in client-first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// Authentication identity (`n=`), SASLname-decoded.
    pub username: String,
    /// Authorization identity (`a=`) when the client asked to act as someone else; the caller
    /// decides whether that is allowed (normally only when it equals the user's own JID).
    pub authzid: Option<String>,
}

/// Why a SCRAM exchange failed. Mapped to an RFC 6120 section 6.5 condition by
/// [`ScramError::sasl_condition`]; the variants say more, for the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The message does not follow the RFC 5802 grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Not UTF-8, or bad base64.
    #[error("bad encoding in SCRAM message: {0}")]
    Encoding(&'static str),
    /// Wrong password, unknown user, or a nonce that is not ours.
    #[error("SCRAM authentication failed")]
    NotAuthorized,
    /// The client's channel-binding data differs from ours (a man in the middle, or a
    /// changed gs2 header).
    #[error("channel binding data does not match")]
    ChannelBindingMismatch,
    /// The client asked for a channel-binding type we cannot provide on this connection.
    #[error("unsupported channel binding type {0:?}")]
    UnsupportedChannelBinding(String),
    /// The client asked for -PLUS but this connection has no channel binding at all.
    #[error("channel binding requires TLS")]
    ChannelBindingUnavailable,
    /// The client claims (flag `y`) that we do not support channel binding although we
    /// advertised -PLUS: someone stripped the -PLUS mechanisms on the way (RFC 5802
    /// section 6).
    #[error("channel binding downgrade detected")]
    Downgrade,
    /// A method was called out of order (a bug in the caller, or a client message at the
    /// wrong step).
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

impl ScramError {
    /// The RFC 6120 section 6.5 SASL failure condition to send.
    pub fn sasl_condition(&self) -> &'static str {
        match self {
            ScramError::Malformed(_)
            | ScramError::UnsupportedChannelBinding(_)
            | ScramError::OutOfOrder => "malformed-request",
            ScramError::Encoding(_) => "incorrect-encoding",
            ScramError::NotAuthorized
            | ScramError::ChannelBindingMismatch
            | ScramError::Downgrade => "not-authorized",
            ScramError::ChannelBindingUnavailable => "encryption-required",
        }
    }
}

/// One SCRAM exchange on the server side. Create one per authentication attempt.
#[derive(Debug)]
pub struct ScramServer {
    hash: ScramHash,
    plus: bool,
    plus_offered: bool,
    bindings: ChannelBindings,
    /// Fixed server nonce part, only in tests of published vectors.
    fixed_nonce_suffix: Option<String>,
    state: State,
}

#[derive(Debug)]
enum State {
    Start,
    GotClientFirst(Started),
    SentServerFirst {
        started: Started,
        server_first: String,
        nonce: String,
        keys: ScramKeys,
        /// Keys are fake (unknown user): the proof must fail however well it is made.
        fake: bool,
    },
    Done,
}

#[derive(Debug)]
struct Started {
    /// gs2-header as sent, e.g. `p=tls-exporter,,`: the client must echo it in `c=`.
    gs2_header: String,
    /// Channel-binding bytes that must follow the header in `c=` (empty without -PLUS).
    cb_data: Vec<u8>,
    client_first_bare: String,
    client_nonce: String,
    username: String,
}

impl ScramServer {
    /// Starts an exchange. `plus`: the client chose the -PLUS mechanism. `plus_offered`: we
    /// advertised -PLUS mechanisms, so a client saying "y" (it could bind but thinks we
    /// cannot) reveals a downgrade.
    pub fn new(hash: ScramHash, plus: bool, plus_offered: bool, bindings: ChannelBindings) -> Self {
        ScramServer {
            hash,
            plus,
            plus_offered,
            bindings,
            fixed_nonce_suffix: None,
            state: State::Start,
        }
    }

    /// Test-only: uses `suffix` as the server's part of the nonce, to replay RFC vectors.
    #[cfg(test)]
    pub(crate) fn with_nonce_suffix(mut self, suffix: &str) -> Self {
        self.fixed_nonce_suffix = Some(suffix.to_owned());
        self
    }

    /// The hash function of this exchange.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// Parses client-first and returns who wants to log in. The caller then looks up that
    /// user's keys and calls [`ScramServer::server_first`].
    pub fn client_first(&mut self, msg: &[u8]) -> Result<ClientFirst, ScramError> {
        if !matches!(self.state, State::Start) {
            self.state = State::Done;
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Done; // until proven good
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Encoding("client-first is not UTF-8"))?;

        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let gs2_header = &msg[..flag.len() + authzid.len() + 2];

        let cb_data = self.check_cbind_flag(flag)?;
        let authzid = match authzid {
            "" => None,
            a => Some(decode_saslname(
                a.strip_prefix("a=")
                    .ok_or(ScramError::Malformed("bad authzid"))?,
            )?),
        };

        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(',');
        let first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension not supported"));
        }
        let username = decode_saslname(
            first
                .strip_prefix("n=")
                .ok_or(ScramError::Malformed("no username"))?,
        )?;
        if username.is_empty() {
            return Err(ScramError::Malformed("empty username"));
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(is_printable) {
            return Err(ScramError::Malformed("bad nonce"));
        }
        // Optional extensions are ignored, as RFC 5802 allows.

        self.state = State::GotClientFirst(Started {
            gs2_header: gs2_header.to_owned(),
            cb_data,
            client_first_bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
            username: username.clone(),
        });
        Ok(ClientFirst { username, authzid })
    }

    /// Builds server-first. `keys` is `None` for an unknown (or disabled) user: the exchange
    /// then continues with fake keys whose salt is derived from the username and a secret
    /// of this process, so repeated probes see a stable salt and cannot tell the user does
    /// not exist; the proof will fail at [`ScramServer::client_final`].
    ///
    /// Called out of order it returns an empty message and the exchange fails.
    pub fn server_first(&mut self, keys: Option<ScramKeys>) -> Vec<u8> {
        let State::GotClientFirst(started) = std::mem::replace(&mut self.state, State::Done) else {
            return Vec::new();
        };
        let (keys, fake) = match keys {
            Some(keys) => (keys, false),
            None => (fake_keys(self.hash, &started.username), true),
        };
        let suffix = match &self.fixed_nonce_suffix {
            Some(s) => s.clone(),
            None => {
                let mut bytes = [0u8; 24];
                rand::rng().fill_bytes(&mut bytes);
                B64.encode(bytes)
            }
        };
        let nonce = format!("{}{suffix}", started.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        let out = server_first.clone().into_bytes();
        self.state = State::SentServerFirst {
            started,
            server_first,
            nonce,
            keys,
            fake,
        };
        out
    }

    /// Checks client-final: the gs2 header and channel binding echoed in `c=`, the nonce, and
    /// the proof (in constant time). Returns server-final (`v=...`) to send with `<success/>`.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::SentServerFirst {
            started,
            server_first,
            nonce,
            keys,
            fake,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Encoding("client-final is not UTF-8"))?;

        // client-final-message = "c=" cbind "," "r=" nonce ["," extensions] "," "p=" proof
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        let their_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        let cbind = B64
            .decode(cbind)
            .map_err(|_| ScramError::Encoding("channel binding is not base64"))?;
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Encoding("proof is not base64"))?;

        let mut expected_cbind = started.gs2_header.clone().into_bytes();
        expected_cbind.extend_from_slice(&started.cb_data);
        if cbind != expected_cbind {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if their_nonce != nonce {
            return Err(ScramError::NotAuthorized);
        }

        let hash = self.hash;
        let auth_message = format!(
            "{},{server_first},{without_proof}",
            started.client_first_bare
        );
        let client_signature = hash.hmac(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::NotAuthorized);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let matches: bool = hash.hash(&client_key).ct_eq(&keys.stored_key).into();
        if !matches || fake {
            return Err(ScramError::NotAuthorized);
        }
        let server_signature = hash.hmac(&keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }

    /// Checks the gs2 channel-binding flag against the mechanism and connection; returns the
    /// channel-binding bytes the client must echo.
    fn check_cbind_flag(&self, flag: &str) -> Result<Vec<u8>, ScramError> {
        match (flag, self.plus) {
            ("n", false) => Ok(Vec::new()),
            ("y", false) if self.plus_offered => Err(ScramError::Downgrade),
            ("y", false) => Ok(Vec::new()),
            (flag, true) => {
                let name = flag.strip_prefix("p=").ok_or(ScramError::Malformed(
                    "-PLUS mechanism without channel binding",
                ))?;
                if !self.bindings.any() {
                    return Err(ScramError::ChannelBindingUnavailable);
                }
                self.bindings
                    .get(name)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| ScramError::UnsupportedChannelBinding(name.to_owned()))
            }
            (f, false) if f.starts_with("p=") => Err(ScramError::Malformed(
                "channel binding requested without -PLUS",
            )),
            _ => Err(ScramError::Malformed("bad channel binding flag")),
        }
    }
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E (visible ASCII except ',').
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// Decodes a SASLname: `=2C` is ',' and `=3D` is '='; any other '=' is an error.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest
            .get(i..i + 3)
            .ok_or(ScramError::Malformed("bad saslname escape"))?;
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(ScramError::Malformed("bad saslname escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Keys for a user who does not exist: a salt that is stable for the username (so two
/// probes agree, as they would for a real user) and random keys no proof can match.
fn fake_keys(hash: ScramHash, username: &str) -> ScramKeys {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        rand::rng().fill_bytes(&mut s);
        s
    });
    let mut input = hash.mechanism_name(false).as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(username.as_bytes());
    let mut salt = hmac_with::<sha2::Sha256>(secret, &input);
    salt.truncate(16);
    let mut key = vec![0u8; hash.output_len()];
    rand::rng().fill_bytes(&mut key);
    ScramKeys {
        salt,
        iterations: hash.default_iterations(),
        stored_key: key.clone(),
        server_key: key,
    }
}
