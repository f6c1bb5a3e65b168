//! The one error type of the services' Postgres stores.

/// A storage failure of a service's database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or is unreachable.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is out of the range the service writes.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}
