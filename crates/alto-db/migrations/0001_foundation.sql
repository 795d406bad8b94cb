-- Alto foundation schema: tenants, users, roles, sessions, hosts and their credentials, the
-- seed's inventory, stub registry and job tables, and the append-only audit trail.
--
-- Migrations run as the database owner. The server runs as `alto_app`, a role that owns
-- nothing and is subject to row-level security. A transaction selects its tenant with
-- `set_config('alto.tenant', <uuid> | '*' | '', true)`; '*' is platform scope.
-- Forward-only: never edit this file after it has shipped; add a new one.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'alto_app') THEN
    CREATE ROLE alto_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
END
$$;

CREATE FUNCTION alto_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN coalesce(current_setting('alto.tenant', true), '') IN ('', '*') THEN NULL
              ELSE current_setting('alto.tenant', true)::uuid END
$$;

CREATE FUNCTION alto_all_tenants() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(current_setting('alto.tenant', true), '') = '*'
$$;

-- Tenants ---------------------------------------------------------------------------------

CREATE TABLE customers (
  id              uuid PRIMARY KEY,
  name            text NOT NULL,
  status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  tier2_location  text NOT NULL,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX customers_name_key ON customers (lower(name));

-- Users, roles, sessions ------------------------------------------------------------------

CREATE TABLE users (
  id             uuid PRIMARY KEY,
  customer_id    uuid REFERENCES customers (id),          -- NULL: platform staff
  username       text NOT NULL UNIQUE CHECK (username = lower(username)),
  display_name   text,
  password_hash  text NOT NULL,
  disabled       boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL
);
CREATE INDEX users_customer ON users (customer_id, created_at, id);

CREATE TABLE role_memberships (
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  customer_id  uuid REFERENCES customers (id),
  role         text NOT NULL CHECK (role IN ('platform_admin', 'tenant_admin', 'operator', 'auditor', 'support')),
  granted_by   uuid,
  granted_at   timestamptz NOT NULL,
  PRIMARY KEY (user_id, role),
  CHECK (role <> 'platform_admin' OR customer_id IS NULL),
  CHECK (role NOT IN ('tenant_admin', 'operator') OR customer_id IS NOT NULL)
);

CREATE TABLE sessions (
  id            uuid PRIMARY KEY,
  token_hash    bytea NOT NULL UNIQUE,
  user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  customer_id   uuid REFERENCES customers (id),
  kind          text NOT NULL CHECK (kind IN ('cookie', 'token')),
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,
  revoked_at    timestamptz,
  source_ip     text,
  user_agent    text
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed-login throttling, keyed by the attempted name whether or not such a user exists,
-- so the throttle itself reveals nothing. Not tenant data.
CREATE TABLE login_throttle (
  username          text PRIMARY KEY,
  failures          integer NOT NULL,
  window_started_at timestamptz NOT NULL,
  locked_until      timestamptz
);

-- Hosts and agent credentials -------------------------------------------------------------

CREATE TABLE hosts (
  id               uuid PRIMARY KEY,
  customer_id      uuid NOT NULL REFERENCES customers (id),
  name             text NOT NULL,
  description      text,
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'online', 'offline', 'decommissioned')),
  agent_version    text,
  os               text,
  reported_hostname text,
  last_seen_at     timestamptz,
  last_seen_ip     text,
  volumes          jsonb NOT NULL DEFAULT '[]',
  last_scan_at     timestamptz,
  file_count       bigint NOT NULL DEFAULT 0,
  total_bytes      bigint NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  UNIQUE (customer_id, name),
  UNIQUE (customer_id, id)
);
CREATE INDEX hosts_customer ON hosts (customer_id, created_at, id);
CREATE INDEX hosts_online ON hosts (last_seen_at) WHERE status = 'online';

CREATE TABLE host_enrollment_tokens (
  id           uuid PRIMARY KEY,
  customer_id  uuid NOT NULL,
  host_id      uuid NOT NULL,
  token_hash   bytea NOT NULL UNIQUE,
  created_by   uuid,
  created_at   timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL,
  used_at      timestamptz,
  FOREIGN KEY (customer_id, host_id) REFERENCES hosts (customer_id, id)
);

CREATE TABLE host_credentials (
  id            uuid PRIMARY KEY,
  customer_id   uuid NOT NULL,
  host_id       uuid NOT NULL,
  secret_hash   bytea NOT NULL UNIQUE,
  created_via   text NOT NULL CHECK (created_via IN ('enrollment', 'rotation')),
  created_at    timestamptz NOT NULL,
  expires_at    timestamptz,                 -- set when superseded by a rotation
  revoked_at    timestamptz,
  last_used_at  timestamptz,
  FOREIGN KEY (customer_id, host_id) REFERENCES hosts (customer_id, id)
);
CREATE INDEX host_credentials_host ON host_credentials (host_id);

-- The seed's inventory, stub registry and job queue (filled by later work) -----------------

CREATE TABLE file_inventory (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id      uuid NOT NULL,
  host_id          uuid NOT NULL,
  file_path        text NOT NULL,
  file_size        bigint NOT NULL CHECK (file_size >= 0),
  last_modified    timestamptz,
  last_accessed    timestamptz,
  file_extension   text,
  file_hash        varchar(64),
  is_stubbed       boolean NOT NULL DEFAULT false,
  stub_created_at  timestamptz,
  tiered_location  text,
  last_scan_time   timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (customer_id, host_id) REFERENCES hosts (customer_id, id),
  UNIQUE (customer_id, host_id, file_path)
);

CREATE TABLE stub_registry (
  id              uuid PRIMARY KEY,
  customer_id     uuid NOT NULL,
  host_id         uuid NOT NULL,
  file_path       text NOT NULL,
  file_size       bigint NOT NULL CHECK (file_size >= 0),
  sha256          varchar(64) NOT NULL,
  object_key      text NOT NULL,
  tiered_location text NOT NULL,
  state           text NOT NULL CHECK (state IN ('pending', 'stubbed', 'rehydrated', 'orphaned', 'failed')),
  tiered_at       timestamptz,
  rehydrated_at   timestamptz,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  FOREIGN KEY (customer_id, host_id) REFERENCES hosts (customer_id, id)
);
CREATE INDEX stub_registry_path ON stub_registry (customer_id, host_id, file_path);

CREATE TABLE jobs (
  id                uuid PRIMARY KEY,
  customer_id       uuid NOT NULL REFERENCES customers (id),
  host_id           uuid,
  kind              text NOT NULL,
  state             text NOT NULL CHECK (state IN ('planned', 'queued', 'dispatched', 'running',
                                                    'succeeded', 'failed', 'cancelled')),
  priority          integer NOT NULL DEFAULT 0,
  payload           jsonb NOT NULL,
  attempts          integer NOT NULL DEFAULT 0,
  max_attempts      integer NOT NULL DEFAULT 3,
  run_after         timestamptz NOT NULL,
  lease_owner       text,
  lease_expires_at  timestamptz,
  last_error        text,
  result            jsonb,
  created_at        timestamptz NOT NULL,
  updated_at        timestamptz NOT NULL,
  finished_at       timestamptz
);
CREATE INDEX jobs_ready ON jobs (priority DESC, run_after) WHERE state = 'queued';
CREATE INDEX jobs_customer ON jobs (customer_id, created_at, id);

-- Audit trail -----------------------------------------------------------------------------

CREATE TABLE audit_log (
  id           bigserial PRIMARY KEY,
  customer_id  uuid,                          -- NULL: the platform chain
  seq          bigint NOT NULL,
  occurred_at  timestamptz NOT NULL,
  actor_kind   text NOT NULL,
  actor_id     text,
  actor_name   text,
  action       text NOT NULL,
  target_kind  text,
  target_id    text,
  outcome      text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
  source_ip    text,
  details      jsonb NOT NULL DEFAULT '{}',
  prev_hash    text NOT NULL,
  hash         text NOT NULL
);
CREATE UNIQUE INDEX audit_log_chain_seq
  ON audit_log ((coalesce(customer_id, '00000000-0000-0000-0000-000000000000'::uuid)), seq);
CREATE INDEX audit_log_customer_time ON audit_log (customer_id, occurred_at);

CREATE TABLE audit_chain_heads (
  chain        uuid PRIMARY KEY,
  customer_id  uuid,
  last_seq     bigint NOT NULL,
  last_hash    text NOT NULL
);

-- Mirrors alto_model::audit::AuditRecord::canonical: `<bytes>:<value>\n`, or `~\n` for NULL.
CREATE FUNCTION audit_field(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN v IS NULL THEN E'~\n' ELSE octet_length(v)::text || ':' || v || E'\n' END
$$;

CREATE FUNCTION audit_hash(
  p_seq bigint, p_customer uuid, p_at timestamptz, p_actor_kind text, p_actor_id text,
  p_actor_name text, p_action text, p_target_kind text, p_target_id text, p_outcome text,
  p_source_ip text, p_details jsonb, p_prev text
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT encode(sha256(convert_to(
    audit_field(p_seq::text) || audit_field(p_customer::text)
    || audit_field(((extract(epoch FROM p_at) * 1000000)::bigint)::text)
    || audit_field(p_actor_kind) || audit_field(p_actor_id) || audit_field(p_actor_name)
    || audit_field(p_action) || audit_field(p_target_kind) || audit_field(p_target_id)
    || audit_field(p_outcome) || audit_field(p_source_ip) || audit_field(p_details::text)
    || p_prev, 'UTF8')), 'hex')
$$;

-- The only way to write the audit trail. Runs as the owner; the app role cannot touch the
-- tables directly. Appends to the caller's tenant chain (or any chain in platform scope),
-- and publishes a notification that commits with the entry.
CREATE FUNCTION audit_append(
  p_customer uuid, p_at timestamptz, p_actor_kind text, p_actor_id text, p_actor_name text,
  p_action text, p_target_kind text, p_target_id text, p_outcome text, p_source_ip text,
  p_details jsonb
) RETURNS TABLE (seq bigint, hash text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_chain uuid := coalesce(p_customer, '00000000-0000-0000-0000-000000000000'::uuid);
  v_seq bigint;
  v_prev text;
  v_hash text;
  v_at timestamptz := date_trunc('microseconds', p_at);
BEGIN
  IF NOT alto_all_tenants() AND p_customer IS DISTINCT FROM alto_tenant() THEN
    RAISE EXCEPTION 'audit_append: entry for another tenant' USING ERRCODE = '42501';
  END IF;
  INSERT INTO audit_chain_heads (chain, customer_id, last_seq, last_hash)
    VALUES (v_chain, p_customer, 0, repeat('0', 64))
    ON CONFLICT (chain) DO NOTHING;
  SELECT h.last_seq, h.last_hash INTO v_seq, v_prev
    FROM audit_chain_heads h WHERE h.chain = v_chain FOR UPDATE;
  v_seq := v_seq + 1;
  v_hash := audit_hash(v_seq, p_customer, v_at, p_actor_kind, p_actor_id, p_actor_name, p_action,
                       p_target_kind, p_target_id, p_outcome, p_source_ip, p_details, v_prev);
  INSERT INTO audit_log (customer_id, seq, occurred_at, actor_kind, actor_id, actor_name, action,
                         target_kind, target_id, outcome, source_ip, details, prev_hash, hash)
    VALUES (p_customer, v_seq, v_at, p_actor_kind, p_actor_id, p_actor_name, p_action,
            p_target_kind, p_target_id, p_outcome, p_source_ip, p_details, v_prev, v_hash);
  UPDATE audit_chain_heads SET last_seq = v_seq, last_hash = v_hash WHERE chain = v_chain;
  PERFORM pg_notify('alto_events', json_build_object(
    'type', 'audit', 'customer_id', p_customer, 'seq', v_seq, 'occurred_at', v_at,
    'actor_name', p_actor_name, 'action', p_action, 'target_kind', p_target_kind,
    'target_id', p_target_id, 'outcome', p_outcome)::text);
  RETURN QUERY SELECT v_seq, v_hash;
END
$$;

-- Chain heads visible to the caller's scope (verification compares against them).
CREATE FUNCTION audit_heads() RETURNS TABLE (customer_id uuid, last_seq bigint, last_hash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT h.customer_id, h.last_seq, h.last_hash FROM audit_chain_heads h
   WHERE alto_all_tenants() OR h.customer_id = alto_tenant()
$$;

CREATE FUNCTION audit_log_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = '42501';
END
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_immutable();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_immutable();

-- Authentication look-ups that must work before the tenant is known. Each returns only what
-- authentication needs, for one exact secret hash or name.

CREATE FUNCTION auth_user_by_name(p_username text)
RETURNS TABLE (id uuid, customer_id uuid, password_hash text, disabled boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT u.id, u.customer_id, u.password_hash, u.disabled FROM users u WHERE u.username = p_username
$$;

CREATE FUNCTION auth_session(p_hash bytea)
RETURNS TABLE (session_id uuid, user_id uuid, customer_id uuid, username text, disabled boolean,
               expires_at timestamptz, revoked_at timestamptz, roles text[], tenant_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT s.id, u.id, u.customer_id, u.username, u.disabled, s.expires_at, s.revoked_at,
         coalesce((SELECT array_agg(r.role ORDER BY r.role) FROM role_memberships r
                    WHERE r.user_id = u.id), '{}'),
         (SELECT c.status FROM customers c WHERE c.id = u.customer_id)
    FROM sessions s JOIN users u ON u.id = s.user_id
   WHERE s.token_hash = p_hash
$$;

CREATE FUNCTION auth_host_credential(p_hash bytea)
RETURNS TABLE (credential_id uuid, host_id uuid, customer_id uuid, expires_at timestamptz,
               revoked_at timestamptz, host_status text, tenant_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT c.id, c.host_id, c.customer_id, c.expires_at, c.revoked_at, h.status,
         (SELECT cu.status FROM customers cu WHERE cu.id = c.customer_id)
    FROM host_credentials c JOIN hosts h ON h.id = c.host_id
   WHERE c.secret_hash = p_hash
$$;

CREATE FUNCTION auth_enrollment_token(p_hash bytea)
RETURNS TABLE (token_id uuid, host_id uuid, customer_id uuid, expires_at timestamptz,
               used_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT t.id, t.host_id, t.customer_id, t.expires_at, t.used_at
    FROM host_enrollment_tokens t WHERE t.token_hash = p_hash
$$;

-- Row-level security ----------------------------------------------------------------------

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['users', 'role_memberships', 'sessions', 'hosts',
                           'host_enrollment_tokens', 'host_credentials', 'file_inventory',
                           'stub_registry', 'jobs', 'audit_log']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant())) '
                   'WITH CHECK ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant()))', t);
  END LOOP;
END
$$;
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON customers
  USING ((SELECT alto_all_tenants()) OR id = (SELECT alto_tenant()))
  WITH CHECK ((SELECT alto_all_tenants()));

-- Grants: the app role gets exactly what it needs; nothing on the audit tables but SELECT.

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO alto_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON customers, users, role_memberships, sessions, hosts,
  host_enrollment_tokens, host_credentials, file_inventory, stub_registry, jobs, login_throttle
  TO alto_app;
GRANT SELECT ON audit_log TO alto_app;
GRANT EXECUTE ON FUNCTION alto_tenant(), alto_all_tenants(), audit_field(text),
  audit_hash(bigint, uuid, timestamptz, text, text, text, text, text, text, text, text, jsonb, text),
  audit_append(uuid, timestamptz, text, text, text, text, text, text, text, text, jsonb),
  audit_heads(), auth_user_by_name(text), auth_session(bytea), auth_host_credential(bytea),
  auth_enrollment_token(bytea)
  TO alto_app;
