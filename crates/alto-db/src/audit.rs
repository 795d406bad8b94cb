//! The audit trail: append through `audit_append` (the only writer), list, verify.

use alto_model::audit::{AuditRecord, ChainFault, ChainVerifier};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use uuid::Uuid;

use crate::{DbError, Tx};

/// A new audit entry. `customer_id: None` appends to the platform chain.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub customer_id: Option<Uuid>,
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub details: serde_json::Value,
}

/// Appends an entry in the caller's transaction: it commits or rolls back with the change it
/// records. Returns the entry's sequence number in its chain.
pub async fn append(tx: &mut Tx, e: &NewEntry) -> Result<i64, DbError> {
    let (seq, _hash): (i64, String) =
        sqlx::query_as("SELECT * FROM audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
            .bind(e.customer_id)
            .bind(e.at)
            .bind(&e.actor_kind)
            .bind(&e.actor_id)
            .bind(&e.actor_name)
            .bind(&e.action)
            .bind(&e.target_kind)
            .bind(&e.target_id)
            .bind(&e.outcome)
            .bind(&e.source_ip)
            .bind(&e.details)
            .fetch_one(&mut **tx)
            .await?;
    Ok(seq)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EntryRow {
    pub customer_id: Option<Uuid>,
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl EntryRow {
    pub fn record(&self) -> AuditRecord {
        AuditRecord {
            seq: self.seq,
            customer_id: self.customer_id,
            occurred_at_micros: self.occurred_at.timestamp_micros(),
            actor_kind: self.actor_kind.clone(),
            actor_id: self.actor_id.clone(),
            actor_name: self.actor_name.clone(),
            action: self.action.clone(),
            target_kind: self.target_kind.clone(),
            target_id: self.target_id.clone(),
            outcome: self.outcome.clone(),
            source_ip: self.source_ip.clone(),
            details: self.details.clone(),
        }
    }
}

const COLS: &str = "customer_id, seq, occurred_at, actor_kind, actor_id, actor_name, action,
    target_kind, target_id, outcome, source_ip, details::text AS details, prev_hash, hash";

/// Filters for listing a chain.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub action_prefix: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The condition selecting one chain (`$1`, the tenant or `NULL` for the platform) in a form
/// the `(customer_id, seq)` indexes serve under row-level security: `IS NOT DISTINCT FROM`
/// is not indexable, so each chain has its own plain condition.
fn chain_is(chain: Option<Uuid>) -> &'static str {
    match chain {
        Some(_) => "customer_id = $1",
        None => "customer_id IS NULL AND $1::uuid IS NULL",
    }
}

/// Newest first: entries of one chain (`None` = platform) with `seq < before`.
pub async fn list(
    tx: &mut Tx,
    chain: Option<Uuid>,
    filter: &ListFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<EntryRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM audit_log
          WHERE {chain_is}
            AND ($2::bigint IS NULL OR seq < $2)
            AND ($3::text IS NULL OR starts_with(action, $3))
            AND ($4::text IS NULL OR outcome = $4)
            AND ($5::timestamptz IS NULL OR occurred_at >= $5)
            AND ($6::timestamptz IS NULL OR occurred_at < $6)
          ORDER BY seq DESC
          LIMIT $7",
        chain_is = chain_is(chain)
    ))
    .bind(chain)
    .bind(before)
    .bind(&filter.action_prefix)
    .bind(&filter.outcome)
    .bind(filter.since)
    .bind(filter.until)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// The result of walking one chain.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub customer_id: Option<Uuid>,
    pub entries_checked: u64,
    pub head_seq: i64,
    pub fault: Option<ChainFault>,
}

/// Chains visible in the transaction's scope (their heads).
pub async fn heads(tx: &mut Tx) -> Result<Vec<(Option<Uuid>, i64, String)>, DbError> {
    Ok(sqlx::query_as("SELECT customer_id, last_seq, last_hash FROM audit_heads()")
        .fetch_all(&mut **tx)
        .await?)
}

/// Walks one chain from its first entry, recomputing every hash, and compares the end with
/// the chain head. Streams rows, so memory stays flat for long chains.
pub async fn verify_chain(tx: &mut Tx, chain: Option<Uuid>) -> Result<ChainReport, DbError> {
    let head = heads(tx).await?.into_iter().find(|(c, _, _)| *c == chain);
    let (head_seq, head_hash) = head.map(|(_, s, h)| (s, h)).unwrap_or((0, String::new()));
    let mut verifier = ChainVerifier::new();
    let mut fault = None;
    let sql = format!("SELECT {COLS} FROM audit_log WHERE {} ORDER BY seq", chain_is(chain));
    {
        let mut rows = sqlx::query_as::<_, EntryRow>(&sql).bind(chain).fetch(&mut **tx);
        while let Some(row) = rows.try_next().await? {
            if let Err(f) = verifier.push(&row.record(), &row.prev_hash, &row.hash) {
                fault = Some(f);
                break;
            }
        }
    }
    if fault.is_none() {
        if let Err(f) = verifier.finish(head_seq, &head_hash) {
            fault = Some(f);
        }
    }
    Ok(ChainReport { customer_id: chain, entries_checked: verifier.checked(), head_seq, fault })
}
