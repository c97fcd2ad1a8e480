//! Rosters (RFC 6121 section 2) with roster versioning (XEP-0237), and inbound subscription
//! requests that wait for an answer (RFC 6121 section 3.1.3).
//!
//! Each owner has one version counter, bumped in the same transaction as every change to
//! their roster, so a client that cached version N can be told "nothing changed" exactly when
//! nothing did. The counter survives [`Store::roster_delete_owner`]: should the address be
//! reused, versions keep growing and a device holding the old account's cache still resyncs.

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::{Store, StoreError, int_bool};

/// Subscription state of a roster item (RFC 6121 section 2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Neither side sees the other's presence.
    None,
    /// The owner sees the contact's presence.
    To,
    /// The contact sees the owner's presence.
    From,
    /// Both see each other's presence.
    Both,
}

impl Subscription {
    /// The protocol value, which is also how it is stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// Parses a protocol value; `None` for anything else (including `remove`, which is an
    /// operation, not a state).
    pub fn parse(s: &str) -> Option<Subscription> {
        match s {
            "none" => Some(Subscription::None),
            "to" => Some(Subscription::To),
            "from" => Some(Subscription::From),
            "both" => Some(Subscription::Both),
            _ => None,
        }
    }
}

/// One contact in a roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// Bare JID of the contact, normalised (lowercase) by the caller.
    pub contact: String,
    /// Display name the owner chose.
    pub name: Option<String>,
    /// Presence subscription state.
    pub subscription: Subscription,
    /// An outbound subscription request is pending (`ask='subscribe'`).
    pub ask: bool,
    /// Roster groups. Stored as a set: duplicates are dropped and reads return them sorted.
    pub groups: Vec<String>,
}

impl Store {
    /// The owner's roster version and all items, sorted by contact (groups sorted too).
    /// The version is 0 for an owner who never had a roster.
    pub async fn roster_get(&self, owner: &str) -> Result<(i64, Vec<RosterItem>), StoreError> {
        // The version is read first: if the roster changes between the two reads, the client
        // gets newer items under an older version, which costs one redundant resync later;
        // the other order could pair old items with a new version and hide a change forever.
        let version = self.roster_version(owner).await?;
        let rows =
            sqlx::query("SELECT contact, name, subscription, ask FROM roster WHERE owner = $1")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;
        let group_rows =
            sqlx::query("SELECT contact, group_name FROM roster_groups WHERE owner = $1")
                .bind(owner)
                .fetch_all(&self.pool)
                .await?;

        // Sorted here rather than by ORDER BY, whose order depends on the database collation.
        let mut items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by(|a, b| a.contact.cmp(&b.contact));
        for r in &group_rows {
            let contact: String = r.try_get("contact")?;
            let group: String = r.try_get("group_name")?;
            if let Ok(i) = items.binary_search_by(|item| item.contact.as_str().cmp(&contact)) {
                items[i].groups.push(group);
            }
        }
        for item in &mut items {
            item.groups.sort();
        }
        Ok((version, items))
    }

    /// One item of the owner's roster.
    pub async fn roster_item(
        &self,
        owner: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StoreError> {
        let row = sqlx::query(
            "SELECT contact, name, subscription, ask FROM roster WHERE owner = $1 AND contact = $2",
        )
        .bind(owner)
        .bind(contact)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut item = item_from_row(&row)?;
        let groups =
            sqlx::query("SELECT group_name FROM roster_groups WHERE owner = $1 AND contact = $2")
                .bind(owner)
                .bind(contact)
                .fetch_all(&self.pool)
                .await?;
        item.groups = groups
            .iter()
            .map(|r| r.try_get("group_name"))
            .collect::<Result<_, _>>()?;
        item.groups.sort();
        Ok(Some(item))
    }

    /// Adds or replaces a roster item and returns the owner's new roster version.
    pub async fn roster_put(&self, owner: &str, item: &RosterItem) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let version = bump_version(&mut tx, owner).await?;
        sqlx::query(
            "INSERT INTO roster (owner, contact, name, subscription, ask) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (owner, contact) DO UPDATE SET \
             name = excluded.name, subscription = excluded.subscription, ask = excluded.ask",
        )
        .bind(owner)
        .bind(&item.contact)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(i64::from(item.ask))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM roster_groups WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(&item.contact)
            .execute(&mut *tx)
            .await?;
        let groups: BTreeSet<&str> = item.groups.iter().map(String::as_str).collect();
        for group in groups {
            sqlx::query(
                "INSERT INTO roster_groups (owner, contact, group_name) VALUES ($1, $2, $3)",
            )
            .bind(owner)
            .bind(&item.contact)
            .bind(group)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(version)
    }

    /// Removes a roster item. Returns the owner's new roster version, or `None` (and no
    /// version bump) when the item did not exist.
    pub async fn roster_remove(
        &self,
        owner: &str,
        contact: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM roster_groups WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM roster WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let version = bump_version(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(Some(version))
    }

    /// The owner's current roster version; 0 when they never had a roster.
    pub async fn roster_version(&self, owner: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM roster_versions WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(r.try_get("version")?),
            None => Ok(0),
        }
    }

    /// Stores (or replaces) an inbound subscription request from `contact`, kept as the
    /// presence stanza to redeliver at every login until the owner answers.
    pub async fn pending_in_put(
        &self,
        owner: &str,
        contact: &str,
        presence_xml: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pending_in (owner, contact, xml) VALUES ($1, $2, $3) \
             ON CONFLICT (owner, contact) DO UPDATE SET xml = excluded.xml",
        )
        .bind(owner)
        .bind(contact)
        .bind(presence_xml)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets an inbound subscription request (answered or cancelled). Returns whether one
    /// was pending.
    pub async fn pending_in_remove(&self, owner: &str, contact: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM pending_in WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// All pending inbound subscription requests of the owner as `(contact, presence xml)`,
    /// sorted by contact.
    pub async fn pending_in_list(&self, owner: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT contact, xml FROM pending_in WHERE owner = $1")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        let mut list = rows
            .iter()
            .map(|r| Ok((r.try_get("contact")?, r.try_get("xml")?)))
            .collect::<Result<Vec<(String, String)>, StoreError>>()?;
        list.sort();
        Ok(list)
    }

    /// Deletes the owner's roster, pending requests and offline messages (the account is
    /// being deleted). The roster version counter is kept; see the module docs.
    pub async fn roster_delete_owner(&self, owner: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        delete_owner_data(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Deletes what an address owns, inside the caller's transaction. The roster version is
/// bumped rather than deleted so cached rosters of the old account never look current.
pub(crate) async fn delete_owner_data(
    conn: &mut AnyConnection,
    owner: &str,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM roster_groups WHERE owner = $1",
        "DELETE FROM roster WHERE owner = $1",
        "DELETE FROM pending_in WHERE owner = $1",
        "DELETE FROM offline WHERE owner = $1",
    ] {
        sqlx::query(sql).bind(owner).execute(&mut *conn).await?;
    }
    bump_version(conn, owner).await?;
    Ok(())
}

/// Increments (or starts at 1) the owner's roster version and returns it. An upsert with
/// `RETURNING` is one atomic statement on both backends, and it writes, so on SQLite it also
/// takes the write lock for the rest of the transaction.
async fn bump_version(conn: &mut AnyConnection, owner: &str) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO roster_versions (owner, version) VALUES ($1, 1) \
         ON CONFLICT (owner) DO UPDATE SET version = roster_versions.version + 1 \
         RETURNING version",
    )
    .bind(owner)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("version")?)
}

fn item_from_row(r: &AnyRow) -> Result<RosterItem, StoreError> {
    let sub: String = r.try_get("subscription")?;
    Ok(RosterItem {
        contact: r.try_get("contact")?,
        name: r.try_get("name")?,
        subscription: Subscription::parse(&sub).ok_or_else(|| StoreError::Corrupt {
            table: "roster",
            detail: format!("subscription {sub:?}"),
        })?,
        ask: int_bool(r.try_get("ask")?),
        groups: Vec::new(),
    })
}
