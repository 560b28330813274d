-- Model policy: which model names a tenant (and a key) may use.
--
-- A tenant's effective set is allowed_models ∩ the models its providers
-- have discovered, or everything discovered when allow_all_models is on
-- (off by default: a new tenant uses no model until it is given some).
-- A key with allowed_models narrows its tenant's set; NULL inherits it.

ALTER TABLE tenants
    ADD COLUMN allow_all_models boolean NOT NULL DEFAULT false,
    ADD COLUMN allowed_models text[] NOT NULL DEFAULT '{}';

ALTER TABLE api_keys
    ADD COLUMN allowed_models text[];

-- Names are what a client writes in "model": no separators, no blanks.
CREATE FUNCTION nexus_models_valid(m text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT m IS NULL
        OR (cardinality(m) <= 64
            AND length(array_to_string(m, ',')) <= 2000
            AND NOT EXISTS (SELECT 1 FROM unnest(m) AS x(name)
                            WHERE name IS NULL
                               OR name !~ '^[A-Za-z0-9._:/@+-]{1,128}$'))
$$;

ALTER TABLE tenants ADD CONSTRAINT tenants_allowed_models_valid
    CHECK (nexus_models_valid(allowed_models));
ALTER TABLE api_keys ADD CONSTRAINT api_keys_allowed_models_valid
    CHECK (nexus_models_valid(allowed_models));

-- The set a key lookup carries: "*" alone for every discovered model,
-- else the names joined with ",".
CREATE FUNCTION nexus_models_text(key_models text[], tenant_all boolean,
                                  tenant_models text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN key_models IS NULL AND tenant_all THEN '*'
        WHEN key_models IS NULL THEN array_to_string(tenant_models, ',')
        WHEN tenant_all THEN array_to_string(key_models, ',')
        ELSE array_to_string(ARRAY(SELECT unnest(key_models)
                                   INTERSECT
                                   SELECT unnest(tenant_models)
                                   ORDER BY 1), ',')
    END
$$;

-- A change of either set evicts the cached keys on every node.
DROP TRIGGER api_keys_notify ON api_keys;
CREATE TRIGGER api_keys_notify
    AFTER UPDATE OF status, role, scopes, expires_at, tenant_id, key_hash,
                    rate_limits, allowed_models
    OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_key();

DROP TRIGGER tenants_notify ON tenants;
CREATE TRIGGER tenants_notify
    AFTER UPDATE OF status, name, platform, rate_limits, quota,
                    allow_all_models, allowed_models ON tenants
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant();
