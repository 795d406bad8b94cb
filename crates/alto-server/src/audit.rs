//! Writing the audit trail from handlers and services. Needs a time and a transaction (or the
//! pool), never the application state.
//!
//! Mutations call [`record`] inside their own transaction, so the entry commits if and only
//! if the change does. Security events that accompany a refusal (failed login, denied
//! access) use [`record_alone`].

use alto_db::audit::NewEntry;
use alto_db::TenantCtx;
use alto_model::CustomerId;

/// Who did something.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user`, `host`, `system` or `anonymous`.
    pub kind: &'static str,
    pub id: Option<String>,
    pub name: Option<String>,
    pub ip: Option<String>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor { kind: "system", id: None, name: Some("alto-server".into()), ip: None }
    }
}

/// Builds an entry stamped `at` (the caller's clock reading: `state.now()`).
pub fn entry(
    at: chrono::DateTime<chrono::Utc>,
    tenant: Option<CustomerId>,
    actor: &Actor,
    action: &str,
    target: Option<(&str, String)>,
    outcome: &str,
    details: serde_json::Value,
) -> NewEntry {
    let (target_kind, target_id) = match target {
        Some((k, id)) => (Some(k.to_owned()), Some(id)),
        None => (None, None),
    };
    NewEntry {
        customer_id: tenant.map(|t| t.0),
        at,
        actor_kind: actor.kind.to_owned(),
        actor_id: actor.id.clone(),
        actor_name: actor.name.clone(),
        action: action.to_owned(),
        target_kind,
        target_id,
        outcome: outcome.to_owned(),
        source_ip: actor.ip.clone(),
        details,
    }
}

/// Appends inside the caller's transaction.
pub async fn record(tx: &mut alto_db::Tx, e: &NewEntry) -> Result<(), alto_db::DbError> {
    alto_db::audit::append(tx, e).await?;
    metrics::counter!("alto_audit_entries_total", "outcome" => e.outcome.clone()).increment(1);
    Ok(())
}

/// Appends in a transaction of its own. Failure to audit is logged loudly; the caller's
/// response (already a refusal) is unchanged.
pub async fn record_alone(db: &alto_db::Db, ctx: TenantCtx, e: NewEntry) {
    let res = async {
        let mut tx = db.begin(ctx).await?;
        record(&mut tx, &e).await?;
        tx.commit().await?;
        Ok::<_, alto_db::DbError>(())
    }
    .await;
    if let Err(err) = res {
        tracing::error!(error = %err, action = %e.action, "could not write audit entry");
    }
}
