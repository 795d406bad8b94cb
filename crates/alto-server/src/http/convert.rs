//! Database rows to wire types.

use alto_api_types as api;
use alto_db::{
    audit::EntryRow, hosts::CredentialRow, hosts::HostRow, tenants::CustomerRow, users::UserRow,
};
use alto_model::Role;
use chrono::{DateTime, Utc};

pub(super) fn tenant(r: CustomerRow) -> api::Tenant {
    api::Tenant {
        id: r.id,
        name: r.name,
        status: r.status,
        tier2_location: r.tier2_location,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

pub(super) fn user(r: UserRow) -> api::User {
    api::User {
        id: r.id,
        tenant_id: r.customer_id,
        username: r.username,
        display_name: r.display_name,
        disabled: r.disabled,
        roles: r.roles.iter().filter_map(|s| Role::parse(s)).collect(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

pub(super) fn host(r: HostRow) -> api::Host {
    api::Host {
        id: r.id,
        tenant_id: r.customer_id,
        name: r.name,
        description: r.description,
        status: r.status,
        agent_version: r.agent_version,
        os: r.os,
        reported_hostname: r.reported_hostname,
        last_seen_at: r.last_seen_at,
        volumes: serde_json::from_value(r.volumes).unwrap_or_default(),
        last_scan_at: r.last_scan_at,
        file_count: r.file_count,
        total_bytes: r.total_bytes,
        groups: r.groups,
        bandwidth_limit_bytes_per_second: r.bandwidth_limit_bytes_per_second,
        recall_bandwidth_limit_bytes_per_second: r.recall_bandwidth_limit_bytes_per_second,
        created_at: r.created_at,
        // A stored status this build cannot read is shown as absent rather than failing.
        on_access: r.on_access.and_then(|v| serde_json::from_value(v).ok()),
        on_access_reported_at: r.on_access_reported_at,
    }
}

pub(super) fn credential(r: CredentialRow, now: DateTime<Utc>) -> api::Credential {
    let state = if r.revoked_at.is_some() {
        "revoked"
    } else {
        match r.expires_at {
            Some(e) if e <= now => "expired",
            Some(_) => "expiring",
            None => "active",
        }
    };
    api::Credential {
        id: r.id,
        created_via: r.created_via,
        created_at: r.created_at,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
        last_used_at: r.last_used_at,
        state: state.to_owned(),
    }
}

pub(super) fn audit_entry(r: EntryRow) -> api::AuditEntry {
    api::AuditEntry {
        tenant_id: r.customer_id,
        seq: r.seq,
        occurred_at: r.occurred_at,
        actor_kind: r.actor_kind,
        actor_id: r.actor_id,
        actor_name: r.actor_name,
        action: r.action,
        target_kind: r.target_kind,
        target_id: r.target_id,
        outcome: r.outcome,
        source_ip: r.source_ip,
        details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}
