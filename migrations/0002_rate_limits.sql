-- Rate limit overrides per tenant (its bucket) and per key (its bucket),
-- by route class: {"read": {"rps": 5, "burst": 20}, "run": {...}}.
-- Validated here so that a bad value can never break a key lookup.

CREATE FUNCTION nexus_rate_limits_valid(j jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(j) = 'object'
       AND NOT EXISTS (
           SELECT 1 FROM jsonb_each(j) AS e(cls, v)
           WHERE cls NOT IN ('run', 'mutation', 'read', 'ops')
              OR jsonb_typeof(v) <> 'object'
              OR EXISTS (SELECT 1 FROM jsonb_object_keys(v) AS f(k)
                         WHERE k NOT IN ('rps', 'burst'))
              OR NOT (v ? 'rps')
              OR jsonb_typeof(v -> 'rps') <> 'number'
              OR (v ->> 'rps') !~ '^[1-9][0-9]{0,5}$'
              OR (v ? 'burst' AND (jsonb_typeof(v -> 'burst') <> 'number'
                                   OR (v ->> 'burst') !~ '^[1-9][0-9]{0,6}$'))
       )
$$;

-- "krps,kburst,trps,tburst" for run, mutation, read and ops (16 numbers,
-- 0 where nothing is set): one column for the module's key lookup
CREATE FUNCTION nexus_rate_limits_text(k jsonb, t jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(concat_ws(',',
               coalesce((k #>> ARRAY[c, 'rps'])::int, 0),
               coalesce((k #>> ARRAY[c, 'burst'])::int,
                        (k #>> ARRAY[c, 'rps'])::int, 0),
               coalesce((t #>> ARRAY[c, 'rps'])::int, 0),
               coalesce((t #>> ARRAY[c, 'burst'])::int,
                        (t #>> ARRAY[c, 'rps'])::int, 0)),
           ',' ORDER BY o)
    FROM unnest(ARRAY['run', 'mutation', 'read', 'ops'])
         WITH ORDINALITY AS x(c, o)
$$;

ALTER TABLE tenants ADD COLUMN rate_limits jsonb NOT NULL DEFAULT '{}'
    CHECK (nexus_rate_limits_valid(rate_limits));
ALTER TABLE api_keys ADD COLUMN rate_limits jsonb NOT NULL DEFAULT '{}'
    CHECK (nexus_rate_limits_valid(rate_limits));

-- a change of limits reaches every node's key cache like any other change
DROP TRIGGER api_keys_notify ON api_keys;
CREATE TRIGGER api_keys_notify
    AFTER UPDATE OF status, role, scopes, expires_at, tenant_id, key_hash,
                    rate_limits
    OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_key();

DROP TRIGGER tenants_notify ON tenants;
CREATE TRIGGER tenants_notify
    AFTER UPDATE OF status, name, platform, rate_limits ON tenants
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant();
