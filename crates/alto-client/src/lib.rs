//! A typed client for the Alto REST API. `altoctl` is a thin shell over it, and the
//! integration tests drive the server through it, so the CLI and the tests exercise the same
//! code paths a console or script would.
//!
//! **Must never:** embed server logic or talk to the database; every call is an HTTP request.

use alto_api_types as api;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String, request_id: Option<String> },
    #[error("cannot reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("unexpected response (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },
    #[error("invalid server URL: {0}")]
    BadUrl(String),
}

impl ClientError {
    /// The stable error code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Which user collection or audit chain: a tenant's, or the platform's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Platform,
    Tenant(Uuid),
}

impl Scope {
    fn users(self) -> String {
        match self {
            Scope::Platform => "/api/v1/platform/users".into(),
            Scope::Tenant(t) => format!("/api/v1/tenants/{t}/users"),
        }
    }

    fn audit(self) -> String {
        match self {
            Scope::Platform => "/api/v1/platform/audit".into(),
            Scope::Tenant(t) => format!("/api/v1/tenants/{t}/audit"),
        }
    }
}

/// Audit list filters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// `?limit=` and `?cursor=` of every paginated list (the cursor is the previous page's
/// `next_cursor`, opaque), with the few filters of the lists that have no query type of their
/// own.
#[derive(Debug, Clone, Default, Serialize)]
struct PageQ<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_id: Option<Uuid>,
}

/// Stub-registry filters (`GET …/stubs`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StubQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// `pending`, `stubbed`, `rehydrated`, `orphaned` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Job list filters (`GET …/jobs`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobQuery {
    /// `planned`, `queued`, `dispatched`, `running`, `succeeded`, `failed` or `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<Uuid>,
    /// `tier`, `plan` or `ingest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// An API client, optionally holding a bearer token (session or host credential).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    pub fn new(base_url: &str) -> Result<Client> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("altoctl/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Client { base, http, token: None })
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` (starting with `/`) carrying the token, for calls without a typed
    /// method.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send<T: DeserializeOwned>(rb: RequestBuilder) -> Result<T> {
        let resp = rb.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(body).map_err(|_| ClientError::Unexpected {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        match serde_json::from_slice::<api::ErrorBody>(&bytes) {
            Ok(e) => Err(ClientError::Api {
                status: status.as_u16(),
                code: e.error.code.as_str().to_owned(),
                message: e.error.message,
                request_id: e.error.request_id,
            }),
            Err(_) => Err(ClientError::Unexpected {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Self::send(self.request(Method::GET, path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Self::send(self.request(Method::POST, path).json(body)).await
    }

    async fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Self::send(self.request(Method::PATCH, path).json(body)).await
    }

    async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Self::send(self.request(Method::PUT, path).json(body)).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Self::send(self.request(Method::DELETE, path)).await
    }

    /// A `POST` without a body.
    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Self::send(self.request(Method::POST, path)).await
    }

    // --- Auth ------------------------------------------------------------------------------

    /// Logs in and keeps the returned bearer token.
    pub async fn login(&mut self, username: &str, password: &str) -> Result<api::LoginResponse> {
        let body = api::LoginRequest { username: username.into(), password: password.into() };
        let resp: api::LoginResponse = self.post("/api/v1/auth/login", &body).await?;
        self.token = Some(resp.token.clone());
        Ok(resp)
    }

    pub async fn logout(&self) -> Result<()> {
        Self::send::<serde_json::Value>(self.request(Method::POST, "/api/v1/auth/logout")).await?;
        Ok(())
    }

    pub async fn me(&self) -> Result<api::Me> {
        self.get("/api/v1/auth/me").await
    }

    // --- Tenants ---------------------------------------------------------------------------

    pub async fn list_tenants(
        &self,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<api::Page<api::Tenant>> {
        Self::send(self.request(Method::GET, "/api/v1/tenants").query(&PageQ {
            limit,
            cursor,
            ..PageQ::default()
        }))
        .await
    }

    pub async fn create_tenant(&self, req: &api::CreateTenant) -> Result<api::CreatedTenant> {
        self.post("/api/v1/tenants", req).await
    }

    pub async fn get_tenant(&self, id: Uuid) -> Result<api::Tenant> {
        self.get(&format!("/api/v1/tenants/{id}")).await
    }

    pub async fn update_tenant(&self, id: Uuid, req: &api::UpdateTenant) -> Result<api::Tenant> {
        self.patch(&format!("/api/v1/tenants/{id}"), req).await
    }

    // --- Users -----------------------------------------------------------------------------

    pub async fn list_users(
        &self,
        scope: Scope,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<api::Page<api::User>> {
        Self::send(self.request(Method::GET, &scope.users()).query(&PageQ {
            limit,
            cursor,
            ..PageQ::default()
        }))
        .await
    }

    pub async fn create_user(&self, scope: Scope, req: &api::CreateUser) -> Result<api::User> {
        self.post(&scope.users(), req).await
    }

    pub async fn get_user(&self, scope: Scope, id: Uuid) -> Result<api::User> {
        self.get(&format!("{}/{id}", scope.users())).await
    }

    pub async fn update_user(
        &self,
        scope: Scope,
        id: Uuid,
        req: &api::UpdateUser,
    ) -> Result<api::User> {
        self.patch(&format!("{}/{id}", scope.users()), req).await
    }

    pub async fn set_roles(
        &self,
        scope: Scope,
        id: Uuid,
        roles: &[alto_model::Role],
    ) -> Result<api::User> {
        self.put(&format!("{}/{id}/roles", scope.users()), &api::SetRoles { roles: roles.to_vec() })
            .await
    }

    // --- Hosts -----------------------------------------------------------------------------

    pub async fn list_hosts(
        &self,
        tenant: Uuid,
        status: Option<&str>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<api::Page<api::Host>> {
        Self::send(
            self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/hosts")).query(&PageQ {
                limit,
                cursor,
                status,
                ..PageQ::default()
            }),
        )
        .await
    }

    pub async fn create_host(
        &self,
        tenant: Uuid,
        req: &api::CreateHost,
    ) -> Result<api::CreatedHost> {
        self.post(&format!("/api/v1/tenants/{tenant}/hosts"), req).await
    }

    pub async fn get_host(&self, tenant: Uuid, host: Uuid) -> Result<api::Host> {
        self.get(&format!("/api/v1/tenants/{tenant}/hosts/{host}")).await
    }

    pub async fn update_host(
        &self,
        tenant: Uuid,
        host: Uuid,
        req: &api::UpdateHost,
    ) -> Result<api::Host> {
        self.patch(&format!("/api/v1/tenants/{tenant}/hosts/{host}"), req).await
    }

    pub async fn decommission_host(&self, tenant: Uuid, host: Uuid) -> Result<api::Host> {
        Self::send(self.request(Method::DELETE, &format!("/api/v1/tenants/{tenant}/hosts/{host}")))
            .await
    }

    pub async fn new_enrollment_token(
        &self,
        tenant: Uuid,
        host: Uuid,
    ) -> Result<api::EnrollmentToken> {
        Self::send(self.request(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/hosts/{host}/enrollment-tokens"),
        ))
        .await
    }

    pub async fn list_credentials(&self, tenant: Uuid, host: Uuid) -> Result<Vec<api::Credential>> {
        self.get(&format!("/api/v1/tenants/{tenant}/hosts/{host}/credentials")).await
    }

    pub async fn revoke_credential(
        &self,
        tenant: Uuid,
        host: Uuid,
        cred: Uuid,
    ) -> Result<api::Credential> {
        Self::send(self.request(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/hosts/{host}/credentials/{cred}/revoke"),
        ))
        .await
    }

    /// Replaces a host's groups (the names rules' `scope.host_groups` refer to).
    pub async fn set_host_groups(
        &self,
        tenant: Uuid,
        host: Uuid,
        groups: &[String],
    ) -> Result<api::Host> {
        self.put(
            &format!("/api/v1/tenants/{tenant}/hosts/{host}/groups"),
            &api::SetHostGroups { groups: groups.to_vec() },
        )
        .await
    }

    // --- Rules -----------------------------------------------------------------------------

    /// Every live rule of the tenant.
    pub async fn list_rules(&self, tenant: Uuid) -> Result<Vec<api::Rule>> {
        self.get(&format!("/api/v1/tenants/{tenant}/rules")).await
    }

    pub async fn create_rule(&self, tenant: Uuid, spec: &api::RuleSpec) -> Result<api::Rule> {
        self.post(&format!("/api/v1/tenants/{tenant}/rules"), spec).await
    }

    pub async fn get_rule(&self, tenant: Uuid, rule: Uuid) -> Result<api::Rule> {
        self.get(&format!("/api/v1/tenants/{tenant}/rules/{rule}")).await
    }

    /// Replaces a rule's definition. With `expected_version`, the server refuses (409
    /// `conflict`) if the rule has changed since that version.
    pub async fn update_rule(
        &self,
        tenant: Uuid,
        rule: Uuid,
        spec: &api::RuleSpec,
        expected_version: Option<i32>,
    ) -> Result<api::Rule> {
        let mut rb =
            self.request(Method::PUT, &format!("/api/v1/tenants/{tenant}/rules/{rule}")).json(spec);
        if let Some(v) = expected_version {
            rb = rb.query(&[("expected_version", v.to_string())]);
        }
        Self::send(rb).await
    }

    /// Deletes a rule; returns it as it was.
    pub async fn delete_rule(&self, tenant: Uuid, rule: Uuid) -> Result<api::Rule> {
        self.delete(&format!("/api/v1/tenants/{tenant}/rules/{rule}")).await
    }

    pub async fn rule_versions(&self, tenant: Uuid, rule: Uuid) -> Result<Vec<api::RuleVersion>> {
        self.get(&format!("/api/v1/tenants/{tenant}/rules/{rule}/versions")).await
    }

    /// Sets the evaluation order: `rule_ids` must name every live rule exactly once.
    pub async fn reorder_rules(&self, tenant: Uuid, rule_ids: &[Uuid]) -> Result<Vec<api::Rule>> {
        self.post(
            &format!("/api/v1/tenants/{tenant}/rules/reorder"),
            &api::ReorderRules { rule_ids: rule_ids.to_vec() },
        )
        .await
    }

    /// Validates a draft without saving it (an invalid rule is a successful answer).
    pub async fn validate_rule(
        &self,
        tenant: Uuid,
        spec: &api::RuleSpec,
    ) -> Result<api::RuleValidation> {
        self.post(&format!("/api/v1/tenants/{tenant}/rules/validate"), spec).await
    }

    /// What a draft (or the current rule set) would move, without creating jobs.
    pub async fn preview_rules(
        &self,
        tenant: Uuid,
        req: &api::PreviewRequest,
    ) -> Result<api::Preview> {
        self.post(&format!("/api/v1/tenants/{tenant}/rules/preview"), req).await
    }

    /// Why one file of a host will or will not move.
    pub async fn explain_file(
        &self,
        tenant: Uuid,
        host: Uuid,
        path: &str,
    ) -> Result<api::ExplainResponse> {
        Self::send(
            self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/rules/explain"))
                .query(&[("host_id", host.to_string()), ("path", path.to_owned())]),
        )
        .await
    }

    // --- Planner ---------------------------------------------------------------------------

    pub async fn get_planner_settings(&self, tenant: Uuid) -> Result<api::PlannerSettings> {
        self.get(&format!("/api/v1/tenants/{tenant}/planner-settings")).await
    }

    pub async fn put_planner_settings(
        &self,
        tenant: Uuid,
        settings: &api::PlannerSettings,
    ) -> Result<api::PlannerSettings> {
        self.put(&format!("/api/v1/tenants/{tenant}/planner-settings"), settings).await
    }

    /// Starts a planning run now.
    pub async fn run_plan(&self, tenant: Uuid, req: &api::RunPlan) -> Result<api::Plan> {
        self.post(&format!("/api/v1/tenants/{tenant}/plans"), req).await
    }

    pub async fn list_plans(
        &self,
        tenant: Uuid,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<api::Page<api::Plan>> {
        Self::send(
            self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/plans")).query(&PageQ {
                limit,
                cursor,
                ..PageQ::default()
            }),
        )
        .await
    }

    pub async fn get_plan(&self, tenant: Uuid, plan: Uuid) -> Result<api::Plan> {
        self.get(&format!("/api/v1/tenants/{tenant}/plans/{plan}")).await
    }

    /// Queues the held (`planned`) jobs of a plan.
    pub async fn release_plan(&self, tenant: Uuid, plan: Uuid) -> Result<api::Plan> {
        self.post_empty(&format!("/api/v1/tenants/{tenant}/plans/{plan}/release")).await
    }

    // --- Stub registry ---------------------------------------------------------------------

    pub async fn list_stubs(&self, tenant: Uuid, q: &StubQuery) -> Result<api::Page<api::Stub>> {
        Self::send(self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/stubs")).query(q))
            .await
    }

    pub async fn stub_summary(&self, tenant: Uuid) -> Result<api::StubSummary> {
        self.get(&format!("/api/v1/tenants/{tenant}/stubs/summary")).await
    }

    // --- Jobs ------------------------------------------------------------------------------

    pub async fn list_jobs(&self, tenant: Uuid, q: &JobQuery) -> Result<api::Page<api::Job>> {
        Self::send(self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/jobs")).query(q))
            .await
    }

    pub async fn get_job(&self, tenant: Uuid, job: Uuid) -> Result<api::Job> {
        self.get(&format!("/api/v1/tenants/{tenant}/jobs/{job}")).await
    }

    /// A page of a job's files in `seq` order.
    pub async fn job_files(
        &self,
        tenant: Uuid,
        job: Uuid,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<api::Page<api::JobFile>> {
        Self::send(
            self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/jobs/{job}/files"))
                .query(&PageQ { limit, cursor, ..PageQ::default() }),
        )
        .await
    }

    /// The job document the agent receives (seed format), as JSON.
    pub async fn job_document(&self, tenant: Uuid, job: Uuid) -> Result<serde_json::Value> {
        self.get(&format!("/api/v1/tenants/{tenant}/jobs/{job}/document")).await
    }

    pub async fn cancel_job(&self, tenant: Uuid, job: Uuid) -> Result<api::Job> {
        self.post_empty(&format!("/api/v1/tenants/{tenant}/jobs/{job}/cancel")).await
    }

    pub async fn retry_job(&self, tenant: Uuid, job: Uuid) -> Result<api::Job> {
        self.post_empty(&format!("/api/v1/tenants/{tenant}/jobs/{job}/retry")).await
    }

    // --- Storage targets -------------------------------------------------------------------

    pub async fn list_storage_targets(&self, tenant: Uuid) -> Result<Vec<api::StorageTarget>> {
        self.get(&format!("/api/v1/tenants/{tenant}/storage-targets")).await
    }

    pub async fn create_storage_target(
        &self,
        tenant: Uuid,
        req: &api::CreateStorageTarget,
    ) -> Result<api::StorageTarget> {
        self.post(&format!("/api/v1/tenants/{tenant}/storage-targets"), req).await
    }

    pub async fn get_storage_target(
        &self,
        tenant: Uuid,
        target: Uuid,
    ) -> Result<api::StorageTarget> {
        self.get(&format!("/api/v1/tenants/{tenant}/storage-targets/{target}")).await
    }

    pub async fn delete_storage_target(
        &self,
        tenant: Uuid,
        target: Uuid,
    ) -> Result<api::StorageTarget> {
        self.delete(&format!("/api/v1/tenants/{tenant}/storage-targets/{target}")).await
    }

    /// `PUT`: replaces kind, location and config (secrets left out or `"***"` are kept).
    pub async fn replace_storage_target(
        &self,
        tenant: Uuid,
        target: Uuid,
        req: &api::ReplaceStorageTarget,
    ) -> Result<api::StorageTarget> {
        self.put(&format!("/api/v1/tenants/{tenant}/storage-targets/{target}"), req).await
    }

    /// `PATCH`: changes only what is given; `config` is merged key by key.
    pub async fn update_storage_target(
        &self,
        tenant: Uuid,
        target: Uuid,
        req: &api::UpdateStorageTarget,
    ) -> Result<api::StorageTarget> {
        self.patch(&format!("/api/v1/tenants/{tenant}/storage-targets/{target}"), req).await
    }

    /// Checks the target from the server; a failed check is `Ok` with `ok: false`.
    pub async fn test_storage_target(
        &self,
        tenant: Uuid,
        target: Uuid,
    ) -> Result<api::StorageTestResult> {
        self.post_empty(&format!("/api/v1/tenants/{tenant}/storage-targets/{target}/test")).await
    }

    // --- Tags ------------------------------------------------------------------------------

    /// Path tags; with `host`, only those that apply to it.
    pub async fn list_tags(
        &self,
        tenant: Uuid,
        host: Option<Uuid>,
    ) -> Result<Vec<api::PathTagEntry>> {
        let mut rb = self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/tags"));
        if let Some(h) = host {
            rb = rb.query(&[("host_id", h.to_string())]);
        }
        Self::send(rb).await
    }

    pub async fn create_tag(
        &self,
        tenant: Uuid,
        req: &api::CreateTag,
    ) -> Result<api::PathTagEntry> {
        self.post(&format!("/api/v1/tenants/{tenant}/tags"), req).await
    }

    pub async fn delete_tag(&self, tenant: Uuid, tag: Uuid) -> Result<api::PathTagEntry> {
        self.delete(&format!("/api/v1/tenants/{tenant}/tags/{tag}")).await
    }

    // --- Recall ----------------------------------------------------------------------------

    /// Queues recall jobs for a host's stubs under the request's paths.
    pub async fn create_recall(
        &self,
        tenant: Uuid,
        req: &api::CreateRecall,
    ) -> Result<api::RecallCreated> {
        self.post(&format!("/api/v1/tenants/{tenant}/recalls"), req).await
    }

    pub async fn list_recall_schedules(&self, tenant: Uuid) -> Result<Vec<api::RecallSchedule>> {
        self.get(&format!("/api/v1/tenants/{tenant}/recall-schedules")).await
    }

    pub async fn create_recall_schedule(
        &self,
        tenant: Uuid,
        req: &api::CreateRecallSchedule,
    ) -> Result<api::RecallSchedule> {
        self.post(&format!("/api/v1/tenants/{tenant}/recall-schedules"), req).await
    }

    pub async fn update_recall_schedule(
        &self,
        tenant: Uuid,
        id: Uuid,
        req: &api::UpdateRecallSchedule,
    ) -> Result<api::RecallSchedule> {
        self.patch(&format!("/api/v1/tenants/{tenant}/recall-schedules/{id}"), req).await
    }

    pub async fn delete_recall_schedule(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<api::RecallSchedule> {
        self.delete(&format!("/api/v1/tenants/{tenant}/recall-schedules/{id}")).await
    }

    // --- Agent -----------------------------------------------------------------------------

    /// Enrolls with a one-time token (no bearer needed).
    pub async fn enroll(&self, req: &api::EnrollRequest) -> Result<api::IssuedCredential> {
        self.post("/api/v1/agent/enroll", req).await
    }

    /// Heartbeat; the client's token must be a host credential.
    pub async fn heartbeat(&self, req: &api::HeartbeatRequest) -> Result<api::HeartbeatResponse> {
        self.post("/api/v1/agent/heartbeat", req).await
    }

    pub async fn rotate_credential(&self) -> Result<api::IssuedCredential> {
        Self::send(self.request(Method::POST, "/api/v1/agent/credentials/rotate")).await
    }

    /// Uploads one part of a scan (the client's token must be a host credential).
    /// `content_type` is the batch format's (e.g. `application/vnd.apache.parquet`).
    pub async fn upload_scan_part(
        &self,
        scan_id: Uuid,
        part: i32,
        last: bool,
        kind: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<api::ScanPartAccepted> {
        use sha2::Digest as _;
        let sha = hex::encode(sha2::Sha256::digest(&body));
        Self::send(
            self.request(Method::POST, "/api/v1/scan-results")
                .query(&[
                    ("scan_id", scan_id.to_string()),
                    ("part", part.to_string()),
                    ("last", last.to_string()),
                    ("kind", kind.to_owned()),
                ])
                .header("content-type", content_type)
                .header("x-alto-sha256", sha)
                .body(body),
        )
        .await
    }

    pub async fn get_scan(&self, tenant: Uuid, scan: Uuid) -> Result<api::Scan> {
        self.get(&format!("/api/v1/tenants/{tenant}/scans/{scan}")).await
    }

    /// A page of scans (of one host, or all), newest first.
    pub async fn list_scans(
        &self,
        tenant: Uuid,
        host: Option<Uuid>,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<api::Page<api::Scan>> {
        Self::send(
            self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/scans")).query(&PageQ {
                limit,
                cursor,
                host_id: host,
                ..PageQ::default()
            }),
        )
        .await
    }

    /// Inventory summary of a tenant, or one host.
    pub async fn inventory_summary(
        &self,
        tenant: Uuid,
        host: Option<Uuid>,
    ) -> Result<api::InventorySummary> {
        let mut rb =
            self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/inventory/summary"));
        if let Some(h) = host {
            rb = rb.query(&[("host_id", h.to_string())]);
        }
        Self::send(rb).await
    }

    /// Inventory files; `query` holds the filters as `(name, value)` pairs.
    pub async fn inventory_files(
        &self,
        tenant: Uuid,
        query: &[(&str, String)],
    ) -> Result<api::Page<api::InventoryFile>> {
        Self::send(
            self.request(Method::GET, &format!("/api/v1/tenants/{tenant}/inventory/files"))
                .query(query),
        )
        .await
    }

    // --- Audit -----------------------------------------------------------------------------

    pub async fn list_audit(
        &self,
        scope: Scope,
        q: &AuditQuery,
    ) -> Result<api::Page<api::AuditEntry>> {
        Self::send(self.request(Method::GET, &scope.audit()).query(q)).await
    }

    pub async fn verify_audit(&self, scope: Scope) -> Result<api::AuditVerifyReport> {
        self.get(&format!("{}/verify", scope.audit())).await
    }
}
