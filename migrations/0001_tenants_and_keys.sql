-- Tenants and API keys.
--
-- Keys are stored only as HMAC-SHA256(pepper, key) plus a display prefix.
-- Any change that can affect an authentication decision fires
-- NOTIFY nexus_keys so every nginx worker evicts its cached copy at once:
--   'k:<prefix>'    one key changed
--   't:<tenant_id>' a tenant changed (all of its keys)

CREATE TABLE tenants (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL UNIQUE
                            CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    status      text        NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'suspended')),
    platform    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            bigserial   PRIMARY KEY,
    tenant_id     bigint      NOT NULL REFERENCES tenants (id),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    prefix        text        NOT NULL UNIQUE
                              CHECK (prefix ~ '^[0-9a-f]{12}$'),
    key_hash      bytea       NOT NULL UNIQUE
                              CHECK (length(key_hash) = 32),
    role          text        NOT NULL DEFAULT 'reader'
                              CHECK (role IN ('reader', 'editor', 'admin')),
    scopes        text[]      NOT NULL DEFAULT '{chat,embeddings}',
    status        text        NOT NULL DEFAULT 'active'
                              CHECK (status IN ('active', 'revoked')),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

CREATE FUNCTION nexus_notify_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('nexus_keys', 'k:' || OLD.prefix);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('nexus_keys', 'k:' || NEW.prefix);
    RETURN NEW;
END;
$$;

-- last_used_at is written in batches and never changes a decision, so it
-- does not notify.
CREATE TRIGGER api_keys_notify
    AFTER UPDATE OF status, role, scopes, expires_at, tenant_id, key_hash
    OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_key();

CREATE FUNCTION nexus_notify_tenant() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nexus_keys', 't:' || NEW.id);
    RETURN NEW;
END;
$$;

CREATE TRIGGER tenants_notify
    AFTER UPDATE OF status, name, platform ON tenants
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant();
