//! Account rows: who may log in, and the credentials to check them with.
//!
//! A row holds only derived secrets: an argon2id PHC string (for PLAIN and the admin web)
//! and SCRAM salted keys for SHA-1, SHA-256 and SHA-512 (for SCRAM logins, which need the
//! keys, not a password). Hashing and checking happen in `postern-accounts`; this module only
//! moves rows. Binary values are stored as base64 text, which both backends handle alike.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, int_bool};

/// SCRAM salted keys for one hash function (RFC 5802 section 3): enough for the server to
/// verify a client proof and prove itself, and useless for logging in elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// Random per-account salt sent to the client.
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count sent to the client.
    pub iterations: u32,
    /// H(ClientKey): checks the client's proof.
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key"): signs the server's final message.
    pub server_key: Vec<u8>,
}

/// Everything derived from one password. Written as a whole so the hashes never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// argon2id PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// Keys for SCRAM-SHA-1(-PLUS).
    pub scram_sha1: ScramCredential,
    /// Keys for SCRAM-SHA-256(-PLUS).
    pub scram_sha256: ScramCredential,
    /// Keys for SCRAM-SHA-512(-PLUS).
    pub scram_sha512: ScramCredential,
}

/// An external backend's confirmation of an account's password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// When (ms since the Unix epoch); 0: never, or withdrawn.
    pub at_ms: i64,
    /// SHA-256 (hex) of the hash the backend had then, for backends that expose it.
    pub tag: Option<String>,
}

/// One account. The address is split so that listing a domain is an indexed lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Part before the `@`, already normalised by the caller.
    pub localpart: String,
    /// Part after the `@`, already normalised by the caller.
    pub domain: String,
    /// Derived secrets; never the password itself.
    pub credentials: Credentials,
    /// A disabled account cannot log in but keeps its data (e.g. after hijack detection).
    pub disabled: bool,
    /// May use the admin web and read chat logs.
    pub is_admin: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// An account without its secrets, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// Part before the `@`.
    pub localpart: String,
    /// Part after the `@`.
    pub domain: String,
    /// See [`AccountRow::disabled`].
    pub disabled: bool,
    /// See [`AccountRow::is_admin`].
    pub is_admin: bool,
}

/// The columns of [`AccountRow`], as a macro so queries stay `&'static str` (sqlx audits
/// dynamic SQL).
macro_rules! select_account {
    () => {
        "SELECT localpart, domain, password_hash, \
     scram_sha1_salt, scram_sha1_iterations, scram_sha1_stored_key, scram_sha1_server_key, \
     scram_sha256_salt, scram_sha256_iterations, scram_sha256_stored_key, scram_sha256_server_key, \
     scram_sha512_salt, scram_sha512_iterations, scram_sha512_stored_key, scram_sha512_server_key, \
     disabled, is_admin, created_at FROM accounts"
    };
}

impl Store {
    /// Inserts a new account. Returns `false` (and changes nothing) when the address is taken,
    /// so callers can report "exists" without a racy check-then-insert.
    pub async fn account_insert(&self, row: &AccountRow) -> Result<bool, StoreError> {
        let c = &row.credentials;
        let mut q = sqlx::query(
            "INSERT INTO accounts (localpart, domain, password_hash, \
             scram_sha1_salt, scram_sha1_iterations, scram_sha1_stored_key, scram_sha1_server_key, \
             scram_sha256_salt, scram_sha256_iterations, scram_sha256_stored_key, scram_sha256_server_key, \
             scram_sha512_salt, scram_sha512_iterations, scram_sha512_stored_key, scram_sha512_server_key, \
             disabled, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (localpart, domain) DO NOTHING",
        )
        .bind(&row.localpart)
        .bind(&row.domain)
        .bind(&c.password_hash);
        for s in [&c.scram_sha1, &c.scram_sha256, &c.scram_sha512] {
            q = q
                .bind(B64.encode(&s.salt))
                .bind(i64::from(s.iterations))
                .bind(B64.encode(&s.stored_key))
                .bind(B64.encode(&s.server_key));
        }
        let done = q
            .bind(i64::from(row.disabled))
            .bind(i64::from(row.is_admin))
            .bind(row.created_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Reads one account with its credentials.
    pub async fn account_get(
        &self,
        localpart: &str,
        domain: &str,
    ) -> Result<Option<AccountRow>, StoreError> {
        let sql = concat!(select_account!(), " WHERE localpart = $1 AND domain = $2");
        let row = sqlx::query(sql)
            .bind(localpart)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    /// Replaces an account's credentials (password change). Returns `false` when there is no
    /// such account.
    pub async fn account_set_credentials(
        &self,
        localpart: &str,
        domain: &str,
        c: &Credentials,
    ) -> Result<bool, StoreError> {
        let q = credentials_update(c, "").bind(localpart).bind(domain);
        let mut tx = self.begin_write().await?;
        let done = q.execute(&mut *tx).await?;
        // A new password revokes every FAST token (XEP-0484 §8).
        crate::fast::delete_owner_data(&mut tx, &format!("{localpart}@{domain}")).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces an imported password hash with `c` (the same password, Postern's own
    /// credentials), only while the stored hash is still `from`: a password changed
    /// meanwhile stays. FAST tokens stay too (the password did not change). Returns whether
    /// it replaced anything.
    pub async fn account_upgrade_credentials(
        &self,
        localpart: &str,
        domain: &str,
        from: &str,
        c: &Credentials,
    ) -> Result<bool, StoreError> {
        let done = credentials_update(c, " AND password_hash = $16")
            .bind(localpart)
            .bind(domain)
            .bind(from)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// When an external backend last confirmed the account's password (ms; 0: never, or an
    /// account whose password Postern holds), and the tag of the hash it confirmed (backends
    /// that expose it). `None` without such an account.
    pub async fn account_confirmation(
        &self,
        localpart: &str,
        domain: &str,
    ) -> Result<Option<Confirmation>, StoreError> {
        let row = sqlx::query(
            "SELECT checked_at_ms, backend_tag FROM accounts WHERE localpart = $1 AND domain = $2",
        )
        .bind(localpart)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Confirmation {
                at_ms: r.try_get("checked_at_ms")?,
                tag: r.try_get("backend_tag")?,
            })
        })
        .transpose()
    }

    /// Records that an external backend confirmed the account's password at `at_ms` (0:
    /// the confirmation is withdrawn), with the tag of the hash it confirmed.
    pub async fn account_set_confirmation(
        &self,
        localpart: &str,
        domain: &str,
        confirmation: &Confirmation,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET checked_at_ms = $1, backend_tag = $2 \
             WHERE localpart = $3 AND domain = $4",
        )
        .bind(confirmation.at_ms)
        .bind(confirmation.tag.as_deref())
        .bind(localpart)
        .bind(domain)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Enables or disables an account. Returns `false` when there is no such account.
    pub async fn account_set_disabled(
        &self,
        localpart: &str,
        domain: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE accounts SET disabled = $1 WHERE localpart = $2 AND domain = $3";
        self.account_set_flag(sql, localpart, domain, disabled)
            .await
    }

    /// Grants or revokes admin rights. Returns `false` when there is no such account.
    pub async fn account_set_admin(
        &self,
        localpart: &str,
        domain: &str,
        is_admin: bool,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE accounts SET is_admin = $1 WHERE localpart = $2 AND domain = $3";
        self.account_set_flag(sql, localpart, domain, is_admin)
            .await
    }

    /// Deletes an account together with what hangs off its address (group memberships,
    /// roster, pending subscription requests, offline messages, blocklist), in one transaction so that a
    /// half-deleted account never exists. Returns `false` when there was no such account.
    pub async fn account_delete(&self, localpart: &str, domain: &str) -> Result<bool, StoreError> {
        let address = format!("{localpart}@{domain}");
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM accounts WHERE localpart = $1 AND domain = $2")
            .bind(localpart)
            .bind(domain)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM group_members WHERE address = $1")
            .bind(&address)
            .execute(&mut *tx)
            .await?;
        crate::roster::delete_owner_data(&mut tx, &address).await?;
        crate::blocking::delete_owner_data(&mut tx, &address).await?;
        crate::fast::delete_owner_data(&mut tx, &address).await?;
        crate::archive::forget_owner(&mut tx, &address).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lists accounts (all, or of one domain), sorted by domain then localpart (byte-wise,
    /// independent of the database collation).
    pub async fn account_list(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<AccountSummary>, StoreError> {
        macro_rules! cols {
            () => {
                "SELECT localpart, domain, disabled, is_admin FROM accounts"
            };
        }
        let rows = match domain {
            Some(d) => {
                sqlx::query(concat!(cols!(), " WHERE domain = $1"))
                    .bind(d)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(cols!()).fetch_all(&self.pool).await?,
        };
        let mut list = rows
            .iter()
            .map(|r| {
                Ok(AccountSummary {
                    localpart: r.try_get("localpart")?,
                    domain: r.try_get("domain")?,
                    disabled: int_bool(r.try_get("disabled")?),
                    is_admin: int_bool(r.try_get("is_admin")?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        list.sort_by(|a, b| (&a.domain, &a.localpart).cmp(&(&b.domain, &b.localpart)));
        Ok(list)
    }

    async fn account_set_flag(
        &self,
        sql: &'static str,
        localpart: &str,
        domain: &str,
        value: bool,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql)
            .bind(i64::from(value))
            .bind(localpart)
            .bind(domain)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn account_from_row(r: &AnyRow) -> Result<AccountRow, StoreError> {
    Ok(AccountRow {
        localpart: r.try_get("localpart")?,
        domain: r.try_get("domain")?,
        credentials: Credentials {
            password_hash: r.try_get("password_hash")?,
            scram_sha1: scram_from_row(r, "sha1")?,
            scram_sha256: scram_from_row(r, "sha256")?,
            scram_sha512: scram_from_row(r, "sha512")?,
        },
        disabled: int_bool(r.try_get("disabled")?),
        is_admin: int_bool(r.try_get("is_admin")?),
        created_at_ms: r.try_get("created_at")?,
    })
}

fn scram_from_row(r: &AnyRow, hash: &str) -> Result<ScramCredential, StoreError> {
    let text = |col: &str| -> Result<Vec<u8>, StoreError> {
        let name = format!("scram_{hash}_{col}");
        let s: String = r.try_get(name.as_str())?;
        B64.decode(s.as_bytes())
            .map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let name = format!("scram_{hash}_iterations");
    let iterations: i64 = r.try_get(name.as_str())?;
    Ok(ScramCredential {
        salt: text("salt")?,
        iterations: u32::try_from(iterations)
            .map_err(|_| corrupt(format!("{name}: {iterations} out of range")))?,
        stored_key: text("stored_key")?,
        server_key: text("server_key")?,
    })
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        table: "accounts",
        detail,
    }
}

/// `UPDATE accounts SET` every credential column from `c` (`$1` to `$13`) `WHERE localpart =
/// $14 AND domain = $15` and `more`; the caller binds `$14` on.
fn credentials_update<'q>(
    c: &Credentials,
    more: &str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let sql = format!(
        "UPDATE accounts SET password_hash = $1, \
         scram_sha1_salt = $2, scram_sha1_iterations = $3, scram_sha1_stored_key = $4, scram_sha1_server_key = $5, \
         scram_sha256_salt = $6, scram_sha256_iterations = $7, scram_sha256_stored_key = $8, scram_sha256_server_key = $9, \
         scram_sha512_salt = $10, scram_sha512_iterations = $11, scram_sha512_stored_key = $12, scram_sha512_server_key = $13 \
         WHERE localpart = $14 AND domain = $15{more}"
    );
    // Fixed SQL and numbered placeholders; every value is bound.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(c.password_hash.clone());
    for s in [&c.scram_sha1, &c.scram_sha256, &c.scram_sha512] {
        q = q
            .bind(B64.encode(&s.salt))
            .bind(i64::from(s.iterations))
            .bind(B64.encode(&s.stored_key))
            .bind(B64.encode(&s.server_key));
    }
    q
}
