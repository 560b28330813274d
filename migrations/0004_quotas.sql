-- Request quotas per tenant: {"daily": N, "monthly": N, "soft_ratio": 0.8,
-- "mode": "enforce" | "observe"}. Counted in Redis per UTC day and month
-- (a /v1/run request, route class run, counts 3 units); validated here so
-- that a bad value can never break a key lookup.

CREATE FUNCTION nexus_quota_valid(q jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(q) = 'object'
       AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(q) AS f(k)
                       WHERE k NOT IN ('daily', 'monthly', 'soft_ratio',
                                       'mode'))
       AND (NOT q ? 'daily' OR (jsonb_typeof(q -> 'daily') = 'number'
                                AND (q ->> 'daily') ~ '^[1-9][0-9]{0,11}$'))
       AND (NOT q ? 'monthly' OR (jsonb_typeof(q -> 'monthly') = 'number'
                                  AND (q ->> 'monthly') ~ '^[1-9][0-9]{0,11}$'))
       AND (NOT q ? 'soft_ratio'
            OR (jsonb_typeof(q -> 'soft_ratio') = 'number'
                AND (q ->> 'soft_ratio')::numeric > 0
                AND (q ->> 'soft_ratio')::numeric <= 1))
       AND (NOT q ? 'mode' OR q ->> 'mode' IN ('enforce', 'observe'))
$$;

-- "daily,monthly,soft_permille,observe" for the module's key lookup
CREATE FUNCTION nexus_quota_text(q jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(',',
        coalesce((q ->> 'daily')::bigint, 0),
        coalesce((q ->> 'monthly')::bigint, 0),
        round(coalesce((q ->> 'soft_ratio')::numeric, 0.8) * 1000)::int,
        CASE WHEN q ->> 'mode' = 'observe' THEN 1 ELSE 0 END)
$$;

ALTER TABLE tenants ADD COLUMN quota jsonb NOT NULL DEFAULT '{}'
    CHECK (nexus_quota_valid(quota));

DROP TRIGGER tenants_notify ON tenants;
CREATE TRIGGER tenants_notify
    AFTER UPDATE OF status, name, platform, rate_limits, quota ON tenants
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant();
