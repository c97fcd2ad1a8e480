//! XEP-0484 FAST tokens with the HT-SHA-256-NONE mechanism (draft-schmaus-kitten-sasl-ht):
//! a device gets a random token after a password login and later proves it holds it with
//! `HMAC-SHA-256(token, "Initiator")`; the server answers `HMAC-SHA-256(token, "Responder")`.
//!
//! Tokens belong to one device (the SASL2 user-agent id) and one mechanism, expire, and all
//! of an account's go when its password changes (the store does that with the new
//! credentials). Using a token deletes that device's older ones (rotation: a newly issued
//! token replaces the one it was issued with once the client uses it); the client may ask
//! for the used token to be invalidated instead.

use std::time::Duration;

use hmac::Hmac;
use hmac::digest::{FixedOutput, KeyInit, Update};
use postern_store::FastToken;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use postern_core::AsAddress;

use crate::{AccountError, Accounts, parse_address};

/// The one FAST mechanism offered: no channel binding, so it works on any TLS version.
pub const HT_SHA_256_NONE: &str = "HT-SHA-256-NONE";

/// A token as handed to the client.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: i64,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key");
    mac.update(data);
    mac.finalize_fixed().to_vec()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Accounts {
    /// Issues a new token for `address`'s device `agent`.
    pub async fn fast_issue(
        &self,
        address: &(impl AsAddress + ?Sized),
        agent: &str,
        mechanism: &str,
        lifetime: Duration,
    ) -> Result<IssuedToken, AccountError> {
        use base64::Engine;
        use rand::RngExt;
        let addr = parse_address(address)?;
        let bytes: [u8; 32] = rand::rng().random();
        let token = base64::engine::general_purpose::STANDARD.encode(bytes);
        let issued_ms = now_ms();
        let expires_ms =
            issued_ms.saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX));
        let row = FastToken {
            secret: token.clone(),
            issued_ms,
            expires_ms,
        };
        self.store
            .fast_token_add(&addr.to_string(), agent, mechanism, &row)
            .await?;
        Ok(IssuedToken { token, expires_ms })
    }

    /// Checks an HT proof (`HMAC(token, "Initiator")`) from `address`'s device `agent`;
    /// returns the server's proof (`HMAC(token, "Responder")`) when a live token matches.
    /// A disabled account's tokens match nothing.
    pub async fn fast_verify(
        &self,
        address: &(impl AsAddress + ?Sized),
        agent: &str,
        mechanism: &str,
        proof: &[u8],
        invalidate: bool,
    ) -> Result<Option<Vec<u8>>, AccountError> {
        let Ok(addr) = parse_address(address) else {
            return Ok(None);
        };
        if !self.is_active(&*addr).await? || !self.still_confirmed(&addr).await? {
            return Ok(None);
        }
        let owner = addr.to_string();
        let tokens = self
            .store
            .fast_tokens(&owner, agent, mechanism, now_ms())
            .await?;
        let used = tokens
            .into_iter()
            .find(|t| bool::from(hmac(t.secret.as_bytes(), b"Initiator").ct_eq(proof)));
        let Some(used) = used else {
            return Ok(None);
        };
        if invalidate {
            self.store
                .fast_tokens_delete(&owner, agent, 0, Some(&used.secret))
                .await?;
        } else {
            self.store
                .fast_tokens_delete(&owner, agent, used.issued_ms, None)
                .await?;
        }
        Ok(Some(hmac(used.secret.as_bytes(), b"Responder")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HT proofs are HMAC-SHA-256 keyed by the token's text (RFC 4231 test case 2 shape).
    #[test]
    fn proofs_are_hmac_sha256_keyed_by_the_token() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
