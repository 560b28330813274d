-- Token budgets per key: {"daily": N, "monthly": N, "total": N}, every
-- field optional, counted in Redis per UTC day, per UTC month and for the
-- key's life (see ngx_nexus_budget.c). And tokens per minute, per key and
-- per tenant (NULL: the location's nexus_tpm, if any).
--
-- Numbered 0009 so that it does not depend on, nor collide with, a 0007
-- or 0008 written at the same time: it only adds columns, functions and
-- triggers of its own.

CREATE FUNCTION nexus_token_budget_valid(b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(b) = 'object'
       AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(b) AS f(k)
                       WHERE k NOT IN ('daily', 'monthly', 'total'))
       AND NOT EXISTS (SELECT 1 FROM jsonb_each(b) AS e(k, v)
                       WHERE jsonb_typeof(v) <> 'number'
                          OR (b ->> k) !~ '^[1-9][0-9]{0,11}$')
$$;

ALTER TABLE api_keys
    ADD COLUMN token_budget jsonb NOT NULL DEFAULT '{}'
        CHECK (nexus_token_budget_valid(token_budget)),
    ADD COLUMN tpm bigint CHECK (tpm BETWEEN 1 AND 999999999999);

ALTER TABLE tenants
    ADD COLUMN tpm bigint CHECK (tpm BETWEEN 1 AND 999999999999);

-- "daily,monthly,total,key_tpm,tenant_tpm", 0 where none is set: one
-- column for the module's key lookup
CREATE FUNCTION nexus_budget_text(b jsonb, key_tpm bigint, tenant_tpm bigint)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(',',
        coalesce((b ->> 'daily')::bigint, 0),
        coalesce((b ->> 'monthly')::bigint, 0),
        coalesce((b ->> 'total')::bigint, 0),
        coalesce(key_tpm, 0),
        coalesce(tenant_tpm, 0))
$$;

-- A change reaches every node's key cache like any other change of a key
-- or a tenant. Triggers of their own, so that a later migration that
-- redefines api_keys_notify or tenants_notify cannot drop these columns
-- from them.
CREATE TRIGGER api_keys_budget_notify
    AFTER UPDATE OF token_budget, tpm ON api_keys
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_key();

CREATE TRIGGER tenants_tpm_notify
    AFTER UPDATE OF tpm ON tenants
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant();
