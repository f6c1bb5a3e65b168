//! Undoing a range of events (a reorg rollback, a range written again) and rebuilding the
//! entity tables from the stored event log. Every function runs inside the caller's
//! transaction.

use serde_json::{Map, Value};
use sqlx::{PgConnection, types::Json};

use super::{
    EventRef, Fold,
    write::{add_revenue, add_tenant_spend, merge, merge_leases, merge_providers},
};
use crate::store::StoreError;

/// Events read back from `berth.events`, in chain order.
type StoredEvent = (
    String,
    String,
    Option<String>,
    Option<String>,
    Json<Map<String, Value>>,
    i64,
);

/// Which stored events to fold.
#[derive(Debug, Clone, Copy)]
enum Events<'a> {
    /// Every event of blocks `from..=to`.
    Blocks(i64, i64),
    /// Every escrow event of these leases.
    Leases(&'a [String]),
    /// Every registry event of these providers.
    Providers(&'a [String]),
}

/// Folds stored events, in chain order.
async fn load(
    conn: &mut PgConnection,
    chain_id: i64,
    which: Events<'_>,
) -> Result<Fold, StoreError> {
    let filter = match which {
        Events::Blocks(..) => "block_number BETWEEN $2 AND $3",
        Events::Leases(_) => "contract = 'escrow' AND lease_id = ANY($2::TEXT[]::NUMERIC[])",
        Events::Providers(_) => {
            "contract = 'registry' AND provider_id = ANY($2::TEXT[]::NUMERIC[])"
        }
    };
    let sql = format!(
        "SELECT contract, event, lease_id::TEXT, provider_id::TEXT, args, EXTRACT(EPOCH FROM block_time)::BIGINT
         FROM berth.events
         WHERE chain_id = $1 AND {filter} ORDER BY block_number, log_index"
    );
    let query = sqlx::query_as::<_, StoredEvent>(&sql).bind(chain_id);
    let query = match which {
        Events::Blocks(from, to) => query.bind(from).bind(to),
        Events::Leases(ids) | Events::Providers(ids) => query.bind(ids),
    };
    let rows = query.fetch_all(&mut *conn).await?;
    let mut fold = Fold::default();
    for (contract, event, lease_id, provider_id, args, time) in &rows {
        fold.apply(EventRef {
            contract,
            event,
            lease_id: lease_id.as_deref(),
            provider_id: provider_id.as_deref(),
            args,
            block_time: u64::try_from(*time).unwrap_or_default(),
        });
    }
    Ok(fold)
}

/// Deletes the events of blocks `from..=to` and undoes what they did to the entity tables:
/// their sums are subtracted from the additive tables, and the leases and providers they
/// touched are folded again from the events that remain. Nothing to do when the range holds
/// no event (the usual case: a batch above the checkpoint).
pub async fn undo_range(
    conn: &mut PgConnection,
    chain_id: i64,
    from: i64,
    to: i64,
) -> Result<(), StoreError> {
    let removed = load(conn, chain_id, Events::Blocks(from, to)).await?;
    if removed.is_empty() {
        return Ok(());
    }
    add_revenue(conn, chain_id, &removed, -1).await?;
    add_tenant_spend(conn, chain_id, &removed, -1).await?;
    sqlx::query("DELETE FROM berth.events WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3")
        .bind(chain_id)
        .bind(from)
        .bind(to)
        .execute(&mut *conn)
        .await?;
    let leases: Vec<String> = removed.leases.into_keys().collect();
    let providers: Vec<String> = removed.providers.into_keys().collect();
    sqlx::query("DELETE FROM berth.lease_state WHERE chain_id = $1 AND lease_id = ANY($2::TEXT[]::NUMERIC[])")
        .bind(chain_id)
        .bind(&leases)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM berth.provider_state WHERE chain_id = $1 AND provider_id = ANY($2::TEXT[]::NUMERIC[])",
    )
    .bind(chain_id)
    .bind(&providers)
    .execute(&mut *conn)
    .await?;
    let kept = load(conn, chain_id, Events::Leases(&leases)).await?;
    merge_leases(conn, chain_id, kept.leases.iter()).await?;
    let kept = load(conn, chain_id, Events::Providers(&providers)).await?;
    merge_providers(conn, chain_id, kept.providers.iter()).await?;
    sqlx::query("DELETE FROM berth.provider_revenue_daily WHERE chain_id = $1 AND reports = 0")
        .bind(chain_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM berth.tenant_spend WHERE chain_id = $1 AND leases = 0")
        .bind(chain_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Events folded per pass of [`rebuild`].
const REBUILD_CHUNK: i64 = 50_000;

/// Empties the entity tables of `chain_id` and folds the whole event log into them again,
/// in chunks of blocks (memory stays bounded whatever the history).
pub async fn rebuild(conn: &mut PgConnection, chain_id: i64) -> Result<(), StoreError> {
    for table in [
        "lease_state",
        "provider_state",
        "provider_revenue_daily",
        "tenant_spend",
    ] {
        sqlx::query(&format!("DELETE FROM berth.{table} WHERE chain_id = $1"))
            .bind(chain_id)
            .execute(&mut *conn)
            .await?;
    }
    let mut after = -1_i64;
    loop {
        // Whole blocks per chunk: the first block reaching REBUILD_CHUNK events ends it.
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(block_number) FROM (
               SELECT block_number FROM berth.events WHERE chain_id = $1 AND block_number > $2
               ORDER BY block_number, log_index LIMIT $3) c",
        )
        .bind(chain_id)
        .bind(after)
        .bind(REBUILD_CHUNK)
        .fetch_one(&mut *conn)
        .await?;
        let Some(last) = last else {
            return Ok(());
        };
        let fold = load(conn, chain_id, Events::Blocks(after + 1, last)).await?;
        merge(conn, chain_id, &fold).await?;
        after = last;
    }
}

/// Whether the entity tables are empty while the event log is not (a database indexed
/// before the tables existed): then [`rebuild`] fills them.
pub async fn need_rebuild(conn: &mut PgConnection, chain_id: i64) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM berth.events WHERE chain_id = $1)
            AND NOT EXISTS (SELECT 1 FROM berth.lease_state WHERE chain_id = $1)
            AND NOT EXISTS (SELECT 1 FROM berth.provider_state WHERE chain_id = $1)",
    )
    .bind(chain_id)
    .fetch_one(&mut *conn)
    .await?)
}
