//! Named groups of addresses. The mail gateway's rules match on group membership ("encrypt
//! everything sent by `legal`"), so members are plain addresses: they need not be local
//! accounts.

use sqlx::Row as _;

use crate::{Store, StoreError};

impl Store {
    /// Creates a group. Returns `false` when it already exists.
    pub async fn group_create(&self, name: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("INSERT INTO groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a group and its memberships. Returns `false` when there was no such group.
    pub async fn group_delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM group_members WHERE group_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM groups WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// All group names, sorted.
    pub async fn group_list(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM groups")
            .fetch_all(&self.pool)
            .await?;
        sorted(rows.iter().map(|r| r.try_get("name")))
    }

    /// Members of a group, sorted; `None` when the group does not exist (an empty group is
    /// `Some(vec![])`).
    pub async fn group_members(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        if !self.group_exists(name).await? {
            return Ok(None);
        }
        let rows = sqlx::query("SELECT address FROM group_members WHERE group_name = $1")
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(sorted(rows.iter().map(|r| r.try_get("address")))?))
    }

    /// Adds an address to a group. Returns `false` when it was already a member;
    /// [`StoreError::NoSuchGroup`] when the group does not exist.
    pub async fn group_add_member(&self, name: &str, address: &str) -> Result<bool, StoreError> {
        // Insert-select instead of relying on the foreign key, so a missing group is told
        // apart from a duplicate member without parsing backend-specific error codes.
        let done = sqlx::query(
            "INSERT INTO group_members (group_name, address) \
             SELECT name, $1 FROM groups WHERE name = $2 \
             ON CONFLICT (group_name, address) DO NOTHING",
        )
        .bind(address)
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        if self.group_exists(name).await? {
            Ok(false)
        } else {
            Err(StoreError::NoSuchGroup(name.to_owned()))
        }
    }

    /// Removes an address from a group. Returns `false` when it was not a member;
    /// [`StoreError::NoSuchGroup`] when the group does not exist.
    pub async fn group_remove_member(&self, name: &str, address: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM group_members WHERE group_name = $1 AND address = $2")
            .bind(name)
            .bind(address)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        if self.group_exists(name).await? {
            Ok(false)
        } else {
            Err(StoreError::NoSuchGroup(name.to_owned()))
        }
    }

    /// Groups an address belongs to, sorted.
    pub async fn groups_of(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT group_name FROM group_members WHERE address = $1")
            .bind(address)
            .fetch_all(&self.pool)
            .await?;
        sorted(rows.iter().map(|r| r.try_get("group_name")))
    }

    async fn group_exists(&self, name: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

/// Collects names sorted byte-wise: ORDER BY would follow the database collation, which
/// differs between SQLite and PostgreSQL.
fn sorted(
    names: impl Iterator<Item = Result<String, sqlx::Error>>,
) -> Result<Vec<String>, StoreError> {
    let mut names = names.collect::<Result<Vec<_>, _>>()?;
    names.sort();
    Ok(names)
}
