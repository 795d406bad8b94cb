//! Who is calling: the authenticated agent ([`Host`]) and the client's address
//! ([`ClientIp`]). Plain values that domain code (execution, the link) takes as parameters;
//! how they are extracted from a request lives with each transport (`auth.rs`,
//! `http/extract.rs`, `link/session.rs`).
//!
//! **Must never:** depend on the HTTP layer, the application state or the database.

use std::net::IpAddr;

use alto_db::TenantCtx;
use alto_model::CustomerId;
use uuid::Uuid;

use crate::audit::Actor;

/// The client's address (the peer, or `X-Forwarded-For` when configured to trust it).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn to_opt_string(self) -> Option<String> {
        self.0.map(|ip| ip.to_string())
    }
}

/// An authenticated agent, by its per-host credential.
#[derive(Debug, Clone)]
pub struct Host {
    pub host_id: Uuid,
    pub customer_id: CustomerId,
    pub credential_id: Uuid,
    pub ip: ClientIp,
}

impl Host {
    pub fn actor(&self) -> Actor {
        Actor {
            kind: "host",
            id: Some(self.host_id.to_string()),
            name: None,
            ip: self.ip.to_opt_string(),
        }
    }

    pub fn ctx(&self) -> TenantCtx {
        TenantCtx::Tenant(self.customer_id)
    }
}
