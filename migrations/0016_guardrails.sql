-- Request guardrails per tenant, applied by the gateway to the body of a
-- chat or embeddings request before any provider sees it (see
-- ngx_nexus_guard.c):
--
--   {"pii": {"mode": "block" | "redact" | "log",
--            "kinds": ["card", "ssn", "email", "phone", "iban"]},
--    "max_prompt_bytes": N,
--    "max_tokens": N}
--
-- Every member is optional; '{}' is no guardrail.  "kinds" absent means
-- every kind.  The per-location nexus_pii_guard, where configured, still
-- runs first, in the access phase.

CREATE FUNCTION nexus_guardrails_valid(g jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(g) = 'object'
       AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(g) AS f(k)
                       WHERE k NOT IN ('pii', 'max_prompt_bytes',
                                       'max_tokens'))
       AND (NOT g ? 'max_prompt_bytes'
            OR (jsonb_typeof(g -> 'max_prompt_bytes') = 'number'
                AND (g ->> 'max_prompt_bytes') ~ '^[1-9][0-9]{0,9}$'))
       AND (NOT g ? 'max_tokens'
            OR (jsonb_typeof(g -> 'max_tokens') = 'number'
                AND (g ->> 'max_tokens') ~ '^[1-9][0-9]{0,8}$'))
       AND (NOT g ? 'pii'
            OR (jsonb_typeof(g -> 'pii') = 'object'
                AND NOT EXISTS (SELECT 1
                                FROM jsonb_object_keys(g -> 'pii') AS f(k)
                                WHERE k NOT IN ('mode', 'kinds'))
                AND coalesce(g #>> '{pii,mode}', '')
                    IN ('block', 'redact', 'log')
                AND jsonb_typeof(g #> '{pii,mode}') = 'string'
                AND (NOT (g -> 'pii') ? 'kinds'
                     OR (jsonb_typeof(g #> '{pii,kinds}') = 'array'
                         AND jsonb_array_length(g #> '{pii,kinds}') > 0
                         AND NOT EXISTS
                             (SELECT 1
                              FROM jsonb_array_elements(g #> '{pii,kinds}')
                                   AS e(v)
                              WHERE jsonb_typeof(v) <> 'string'
                                 OR v #>> '{}' NOT IN ('card', 'ssn',
                                        'email', 'phone', 'iban'))))))
$$;

ALTER TABLE tenants
    ADD COLUMN guardrails jsonb NOT NULL DEFAULT '{}'
        CHECK (nexus_guardrails_valid(guardrails));

-- "pii_mode,pii_kinds,max_prompt_bytes,max_tokens" for the module's key
-- lookup: pii_mode 0 none, 1 block, 2 redact, 3 log (NGX_NEXUS_PII_*);
-- pii_kinds the bits of nx_pii_kind_t (card 1, ssn 2, email 4, phone 8,
-- iban 16); 0 where a limit is not set
CREATE FUNCTION nexus_guardrails_text(g jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(',',
        CASE g #>> '{pii,mode}'
            WHEN 'block' THEN 1 WHEN 'redact' THEN 2 WHEN 'log' THEN 3
            ELSE 0 END,
        CASE WHEN NOT g ? 'pii' THEN 0
             WHEN NOT (g -> 'pii') ? 'kinds' THEN 31
             ELSE (SELECT coalesce(bit_or(CASE v #>> '{}'
                                     WHEN 'card' THEN 1 WHEN 'ssn' THEN 2
                                     WHEN 'email' THEN 4 WHEN 'phone' THEN 8
                                     WHEN 'iban' THEN 16 END), 0)
                   FROM jsonb_array_elements(g #> '{pii,kinds}') AS e(v))
        END,
        coalesce((g ->> 'max_prompt_bytes')::bigint, 0),
        coalesce((g ->> 'max_tokens')::bigint, 0))
$$;

-- A change reaches every node's key cache (NOTIFY nexus_keys 't:<id>'),
-- so it applies from the next request without a reload.  A trigger of its
-- own, as in 0009_token_budgets.sql, so that a later migration that
-- redefines tenants_notify (last in 0005_models.sql) cannot drop the
-- column from it.
CREATE TRIGGER tenants_guardrails_notify
    AFTER UPDATE OF guardrails ON tenants
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant();
