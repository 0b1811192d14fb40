//! Accounts: users and their API tokens.

use sqlx::FromRow;

use crate::{Result, Store, new_id, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub is_admin: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Store {
    pub async fn user_count(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.db)
            .await?;
        Ok(n)
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<UserRow> {
        let row = UserRow {
            id: new_id(),
            username: username.to_string(),
            password_hash: password_hash.to_string(),
            is_admin: i64::from(is_admin),
            created_at: now_ms(),
        };
        let query = sqlx::query("INSERT INTO users (id, username, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(&row.username)
            .bind(&row.password_hash)
            .bind(row.is_admin)
            .bind(row.created_at);
        self.insert_unique(query, || format!("user '{username}' already exists"))
            .await?;
        Ok(row)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.db)
            .await?)
    }

    pub async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        token_hash: &str,
        prefix: &str,
    ) -> Result<TokenRow> {
        let row = TokenRow {
            id: new_id(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            prefix: prefix.to_string(),
            created_at: now_ms(),
            last_used_at: None,
        };
        let query = sqlx::query("INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&row.id)
            .bind(&row.user_id)
            .bind(&row.name)
            .bind(token_hash)
            .bind(&row.prefix)
            .bind(row.created_at);
        self.execute(query).await?;
        Ok(row)
    }

    /// The user a token hash belongs to.
    pub async fn user_by_token(&self, token_hash: &str) -> Result<Option<(UserRow, String)>> {
        let row: Option<(String, String, String, i64, i64, String)> = sqlx::query_as(
            "SELECT u.id, u.username, u.password_hash, u.is_admin, u.created_at, t.id \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.db)
        .await?;
        Ok(row.map(
            |(id, username, password_hash, is_admin, created_at, token_id)| {
                (
                    UserRow {
                        id,
                        username,
                        password_hash,
                        is_admin,
                        created_at,
                    },
                    token_id,
                )
            },
        ))
    }

    pub async fn touch_token(&self, token_id: &str) -> Result<()> {
        let query = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(token_id);
        self.execute(query).await?;
        Ok(())
    }

    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, prefix, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.db)
        .await?)
    }

    /// Deletes a token of `user_id`; false when there was none.
    pub async fn delete_token(&self, user_id: &str, token_id: &str) -> Result<bool> {
        let query = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(token_id)
            .bind(user_id);
        Ok(self.execute(query).await? > 0)
    }

    /// Revokes the token with this hash, if it is the user's.
    pub async fn delete_token_by_hash(&self, user_id: &str, hash: &str) -> Result<bool> {
        let query = sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1 AND user_id = $2")
            .bind(hash)
            .bind(user_id);
        Ok(self.execute(query).await? > 0)
    }
}
