//! A SCRAM client written from RFC 5802/7677 for the tests, independent of the server's code,
//! for the variants the `sasl` crate lacks (SHA-512, `tls-server-end-point`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Digest;

/// Which hash; the names match the SASL mechanism names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha512,
}

impl Hash {
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "SCRAM-SHA-1",
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
            Hash::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
            Hash::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        }
    }

    fn salted(self, password: &[u8], salt: &[u8], i: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 20>(password, salt, i).to_vec(),
            Hash::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(password, salt, i).to_vec()
            }
            Hash::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<sha2::Sha512, 64>(password, salt, i).to_vec()
            }
        }
    }
}

/// The client's channel-binding choice.
#[derive(Debug, Clone)]
pub enum Cb {
    /// `n`: the client does not support channel binding.
    None,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=<type>` with the binding data.
    Bound(&'static str, Vec<u8>),
}

/// One exchange.
pub struct Client {
    hash: Hash,
    user: String,
    password: String,
    cb: Cb,
    nonce: String,
    first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl Client {
    pub fn new(hash: Hash, user: &str, password: &str, cb: Cb) -> Self {
        let nonce = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(7)
        );
        Client {
            hash,
            user: user.into(),
            password: password.into(),
            cb,
            nonce,
            first_bare: String::new(),
            server_signature: None,
        }
    }

    pub fn mechanism(&self) -> String {
        match self.cb {
            Cb::Bound(..) => format!("{}-PLUS", self.hash.name()),
            _ => self.hash.name().to_owned(),
        }
    }

    fn gs2(&self) -> String {
        match &self.cb {
            Cb::None => "n,,".into(),
            Cb::ClientOnly => "y,,".into(),
            Cb::Bound(t, _) => format!("p={t},,"),
        }
    }

    pub fn first(&mut self) -> Vec<u8> {
        self.first_bare = format!(
            "n={},r={}",
            self.user.replace('=', "=3D").replace(',', "=2C"),
            self.nonce
        );
        format!("{}{}", self.gs2(), self.first_bare).into_bytes()
    }

    /// Answers the server-first message.
    pub fn respond(&mut self, server_first: &[u8]) -> anyhow::Result<Vec<u8>> {
        let sf = std::str::from_utf8(server_first)?;
        let mut nonce = None;
        let mut salt = None;
        let mut iters = None;
        for part in sf.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v.to_owned()),
                Some(("s=", v)) => salt = Some(B64.decode(v)?),
                Some(("i=", v)) => iters = Some(v.parse::<u32>()?),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iters)) = (nonce, salt, iters) else {
            anyhow::bail!("bad server-first {sf}");
        };
        anyhow::ensure!(
            nonce.starts_with(&self.nonce),
            "server nonce does not extend ours"
        );
        let mut cbind = self.gs2().into_bytes();
        if let Cb::Bound(_, data) = &self.cb {
            cbind.extend_from_slice(data);
        }
        let without_proof = format!("c={},r={}", B64.encode(&cbind), nonce);
        let auth_message = format!("{},{},{}", self.first_bare, sf, without_proof);
        let h = self.hash;
        let salted = h.salted(self.password.as_bytes(), &salt, iters);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored = h.h(&client_key);
        let signature = h.hmac(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: proves the server knew our keys.
    pub fn verify(&self, server_final: &[u8]) -> bool {
        let Some(expected) = &self.server_signature else {
            return false;
        };
        std::str::from_utf8(server_final)
            .ok()
            .and_then(|s| s.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .is_some_and(|v| &v == expected)
    }
}
