//! Roles, permissions and the permission matrix.
//!
//! The matrix is the single source of truth: the server enforces it on every endpoint and the
//! documentation (`docs/permissions.md`) is checked against [`matrix_markdown`] by a test.

use serde::{Deserialize, Serialize};

use crate::CustomerId;

/// A role a user holds, either platform-wide or within one tenant.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the whole service: every tenant, tenant lifecycle, platform users.
    PlatformAdmin,
    /// Administers one tenant: users, roles, hosts, credentials, storage, rules.
    TenantAdmin,
    /// Day-to-day operation of one tenant: rules, jobs, recalls; reads hosts.
    Operator,
    /// Read-only, including the audit trail and its verification.
    Auditor,
    /// Read-only support views; no audit trail, no secrets.
    Support,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::PlatformAdmin, Role::TenantAdmin, Role::Operator, Role::Auditor, Role::Support];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::TenantAdmin => "tenant_admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Support => "support",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role may be held at platform scope (no tenant), at tenant scope, or both.
    pub fn allowed_at(self, scope: Scope) -> bool {
        match (self, scope) {
            (Role::PlatformAdmin, Scope::Platform) => true,
            (Role::PlatformAdmin, Scope::Tenant(_)) => false,
            (Role::TenantAdmin | Role::Operator, Scope::Platform) => false,
            (Role::TenantAdmin | Role::Operator, Scope::Tenant(_)) => true,
            (Role::Auditor | Role::Support, _) => true,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a user's roles apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every tenant (the provider's own staff).
    Platform,
    /// One tenant only.
    Tenant(CustomerId),
}

/// One thing an endpoint may require. Endpoints name exactly one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    TenantRead,
    TenantManage,
    UserRead,
    UserManage,
    HostRead,
    HostManage,
    InventoryRead,
    AuditRead,
    AuditVerify,
    EventsSubscribe,
    RuleRead,
    RuleManage,
    JobRead,
    JobOperate,
    StorageRead,
    StorageManage,
    RecallRequest,
}

impl Permission {
    pub const ALL: [Permission; 17] = [
        Permission::TenantRead,
        Permission::TenantManage,
        Permission::UserRead,
        Permission::UserManage,
        Permission::HostRead,
        Permission::HostManage,
        Permission::InventoryRead,
        Permission::AuditRead,
        Permission::AuditVerify,
        Permission::EventsSubscribe,
        Permission::RuleRead,
        Permission::RuleManage,
        Permission::JobRead,
        Permission::JobOperate,
        Permission::StorageRead,
        Permission::StorageManage,
        Permission::RecallRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TenantRead => "tenant.read",
            Permission::TenantManage => "tenant.manage",
            Permission::UserRead => "user.read",
            Permission::UserManage => "user.manage",
            Permission::HostRead => "host.read",
            Permission::HostManage => "host.manage",
            Permission::InventoryRead => "inventory.read",
            Permission::AuditRead => "audit.read",
            Permission::AuditVerify => "audit.verify",
            Permission::EventsSubscribe => "events.subscribe",
            Permission::RuleRead => "rule.read",
            Permission::RuleManage => "rule.manage",
            Permission::JobRead => "job.read",
            Permission::JobOperate => "job.operate",
            Permission::StorageRead => "storage.read",
            Permission::StorageManage => "storage.manage",
            Permission::RecallRequest => "recall.request",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Permission::TenantRead => "read tenant details",
            Permission::TenantManage => "create, rename, suspend tenants (platform only)",
            Permission::UserRead => "list users and their roles",
            Permission::UserManage => "create, disable users; grant and revoke roles",
            Permission::HostRead => "list hosts, status, volumes, credentials metadata",
            Permission::HostManage => "register hosts, enrollment tokens, revoke credentials",
            Permission::InventoryRead => "browse the file inventory and scans",
            Permission::AuditRead => "read the audit trail",
            Permission::AuditVerify => "verify the audit hash chain",
            Permission::EventsSubscribe => "subscribe to live events",
            Permission::RuleRead => "read tiering rules and previews",
            Permission::RuleManage => "create, change, delete tiering rules",
            Permission::JobRead => "read jobs and stubs",
            Permission::JobOperate => "cancel and retry jobs",
            Permission::StorageRead => "read storage targets",
            Permission::StorageManage => "create and change storage targets",
            Permission::RecallRequest => "request rehydration of stubs",
        }
    }
}

/// The permission matrix: whether `role` grants `perm`. Platform-only permissions are further
/// restricted by [`Permission::platform_only`].
pub fn role_grants(role: Role, perm: Permission) -> bool {
    use Permission as P;
    match role {
        Role::PlatformAdmin => true,
        Role::TenantAdmin => !perm.platform_only(),
        Role::Operator => matches!(
            perm,
            P::TenantRead
                | P::HostRead
                | P::InventoryRead
                | P::EventsSubscribe
                | P::RuleRead
                | P::RuleManage
                | P::JobRead
                | P::JobOperate
                | P::StorageRead
                | P::RecallRequest
        ),
        Role::Auditor => matches!(
            perm,
            P::TenantRead
                | P::UserRead
                | P::HostRead
                | P::InventoryRead
                | P::AuditRead
                | P::AuditVerify
                | P::EventsSubscribe
                | P::RuleRead
                | P::JobRead
                | P::StorageRead
        ),
        Role::Support => matches!(
            perm,
            P::TenantRead
                | P::UserRead
                | P::HostRead
                | P::InventoryRead
                | P::EventsSubscribe
                | P::RuleRead
                | P::JobRead
                | P::StorageRead
        ),
    }
}

impl Permission {
    /// Permissions that only platform-scoped roles may ever hold.
    pub fn platform_only(self) -> bool {
        matches!(self, Permission::TenantManage)
    }
}

/// Whether a principal with `roles` at `scope` may exercise `perm` on `tenant` (`None` for
/// platform-level objects such as the tenant list itself).
pub fn allows(scope: Scope, roles: &[Role], perm: Permission, tenant: Option<CustomerId>) -> bool {
    let in_scope = match (scope, tenant) {
        (Scope::Platform, _) => true,
        (Scope::Tenant(own), Some(t)) => own == t,
        (Scope::Tenant(_), None) => false,
    };
    if !in_scope {
        return false;
    }
    if perm.platform_only() && scope != Scope::Platform {
        return false;
    }
    roles.iter().any(|r| r.allowed_at(scope) && role_grants(*r, perm))
}

/// The matrix as a Markdown table, for `docs/permissions.md`.
pub fn matrix_markdown() -> String {
    let mut out = String::from("| permission | meaning |");
    for r in Role::ALL {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n|---|---|");
    for _ in Role::ALL {
        out.push_str(":-:|");
    }
    out.push('\n');
    for p in Permission::ALL {
        out.push_str(&format!("| `{}` | {} |", p.as_str(), p.describe()));
        for r in Role::ALL {
            out.push_str(if role_grants(r, p) { " yes |" } else { " – |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn t(n: u128) -> CustomerId {
        CustomerId(Uuid::from_u128(n))
    }

    #[test]
    fn tenant_roles_never_reach_other_tenants() {
        for r in Role::ALL {
            for p in Permission::ALL {
                assert!(!allows(Scope::Tenant(t(1)), &[r], p, Some(t(2))), "{r} {p:?}");
            }
        }
    }

    #[test]
    fn only_platform_admin_manages_tenants() {
        for r in Role::ALL {
            let platform = allows(Scope::Platform, &[r], Permission::TenantManage, None);
            assert_eq!(platform, r == Role::PlatformAdmin && r.allowed_at(Scope::Platform));
            assert!(!allows(Scope::Tenant(t(1)), &[r], Permission::TenantManage, Some(t(1))));
        }
    }

    #[test]
    fn auditor_and_support_are_read_only() {
        let writes = [
            Permission::TenantManage,
            Permission::UserManage,
            Permission::HostManage,
            Permission::RuleManage,
            Permission::JobOperate,
            Permission::StorageManage,
            Permission::RecallRequest,
        ];
        for r in [Role::Auditor, Role::Support] {
            for p in writes {
                assert!(!role_grants(r, p), "{r} must not grant {p:?}");
            }
        }
        assert!(!role_grants(Role::Support, Permission::AuditRead));
        assert!(role_grants(Role::Auditor, Permission::AuditRead));
    }

    #[test]
    fn role_scopes() {
        assert!(!Role::PlatformAdmin.allowed_at(Scope::Tenant(t(1))));
        assert!(!Role::TenantAdmin.allowed_at(Scope::Platform));
        // A misplaced role grants nothing even if stored.
        assert!(!allows(Scope::Platform, &[Role::TenantAdmin], Permission::HostRead, Some(t(1))));
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
