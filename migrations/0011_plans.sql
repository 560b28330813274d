-- Plans and entitlements.
--
-- The catalog (features, plans, plan_features) comes from
-- config/plans.json: nexusctl migrate loads it into an empty catalog and
-- nexusctl load-plans replaces it. A tenant without a row in tenant_plans
-- is on the default plan. Its effective features are its plan's, plus the
-- overrides that enable a feature, minus the overrides that disable one.
--
-- The module receives the effective set with every key lookup
-- (nexus_features_text), so each change evicts the cached keys it affects,
-- on the channel the key cache already listens to:
--   tenant_plans, tenant_feature_overrides   't:<tenant_id>' (its keys)
--   features, plans, plan_features           'p:catalog'     (every key)

-- Feature names may hold dots (nexus_feature identity.sso), and so may the
-- kill switch that turns such a feature off.
ALTER TABLE kill_switches DROP CONSTRAINT kill_switches_name_check;
ALTER TABLE kill_switches ADD CONSTRAINT kill_switches_name_check
    CHECK (name ~ '^kill\.[a-z0-9_]+(\.[a-z0-9_]+)*$'
           AND length(name) <= 37);

CREATE TABLE features (
    key          text        PRIMARY KEY
                             CHECK (key ~ '^feature\.[a-z0-9_]+(\.[a-z0-9_]+)*$'
                                    AND length(key) <= 40),
    description  text        NOT NULL DEFAULT ''
                             CHECK (length(description) <= 256),
    position     integer     NOT NULL DEFAULT 0
);

CREATE TABLE plans (
    id           text        PRIMARY KEY
                             CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    description  text        NOT NULL DEFAULT ''
                             CHECK (length(description) <= 256),
    is_default   boolean     NOT NULL DEFAULT false,
    position     integer     NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- at most one default plan; nexusctl load-plans always sets one
CREATE UNIQUE INDEX plans_default_idx ON plans (is_default) WHERE is_default;

CREATE TABLE plan_features (
    plan_id      text        NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    feature_key  text        NOT NULL REFERENCES features (key)
                                      ON DELETE CASCADE,
    PRIMARY KEY (plan_id, feature_key)
);

-- A plan that tenants are on, or a feature that has overrides, cannot
-- leave the catalog (no ON DELETE): load-plans says which one is in use.
CREATE TABLE tenant_plans (
    tenant_id    bigint      PRIMARY KEY REFERENCES tenants (id)
                                         ON DELETE CASCADE,
    plan_id      text        NOT NULL REFERENCES plans (id),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text
);

CREATE TABLE tenant_feature_overrides (
    tenant_id    bigint      NOT NULL REFERENCES tenants (id)
                                      ON DELETE CASCADE,
    feature_key  text        NOT NULL REFERENCES features (key),
    enabled      boolean     NOT NULL,
    config       jsonb       NOT NULL DEFAULT '{}'
                             CHECK (jsonb_typeof(config) = 'object'
                                    AND length(config::text) <= 4096),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text,
    PRIMARY KEY (tenant_id, feature_key)
);

CREATE INDEX tenant_plans_plan_idx ON tenant_plans (plan_id);
CREATE INDEX tenant_feature_overrides_key_idx
    ON tenant_feature_overrides (feature_key);


-- The module keeps a key's features in a fixed field of its cache entry:
-- the names of the whole catalog, joined with ",", must fit in 1024 bytes
-- (NGX_NEXUS_FEATURES_MAX), so that any effective set does.
CREATE FUNCTION nexus_features_bound() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT coalesce(sum(length(key) - 7), 0) - 1 FROM features) > 1024
    THEN
        RAISE EXCEPTION 'the feature catalog is too large: its names'
                        ' joined with "," exceed 1024 bytes'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER features_bound
    AFTER INSERT OR UPDATE ON features
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION nexus_features_bound();


-- The plan a tenant is on: its own, else the default.
CREATE FUNCTION nexus_tenant_plan(tid bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT plan_id FROM tenant_plans WHERE tenant_id = tid),
                    (SELECT id FROM plans WHERE is_default))
$$;

-- The effective feature keys of a tenant: (plan ∪ enabled) \ disabled.
CREATE FUNCTION nexus_features(tid bigint) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT feature_key FROM plan_features
     WHERE plan_id = nexus_tenant_plan(tid)
    UNION
    SELECT feature_key FROM tenant_feature_overrides
     WHERE tenant_id = tid AND enabled
    EXCEPT
    SELECT feature_key FROM tenant_feature_overrides
     WHERE tenant_id = tid AND NOT enabled
$$;

-- The same set for the module's key lookup: names without "feature.",
-- joined with ",".
CREATE FUNCTION nexus_features_text(tid bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(substr(f, 9), ',' ORDER BY f), '')
      FROM nexus_features(tid) AS x(f)
$$;

-- A tenant's plan, effective features and overrides, as the admin and
-- self-serve endpoints and nexusctl show-plan return them.
CREATE FUNCTION nexus_plan_json(tid bigint) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'tenant', t.name,
        'plan', (SELECT json_build_object('id', p.id, 'name', p.name,
                                          'description', p.description)
                   FROM plans p WHERE p.id = nexus_tenant_plan(t.id)),
        'assigned', EXISTS (SELECT 1 FROM tenant_plans tp
                             WHERE tp.tenant_id = t.id),
        'features', coalesce((SELECT json_agg(f ORDER BY f)
                                FROM nexus_features(t.id) AS x(f)), '[]'),
        'overrides', coalesce((SELECT json_agg(json_build_object(
                                   'feature_key', o.feature_key,
                                   'enabled', o.enabled,
                                   'config_json', o.config,
                                   'updated_at', o.updated_at,
                                   'updated_by', o.updated_by)
                                   ORDER BY o.feature_key)
                                 FROM tenant_feature_overrides o
                                WHERE o.tenant_id = t.id), '[]'))
      FROM tenants t WHERE t.id = tid
$$;

-- The catalog, as GET /v1/admin/plans returns it.
CREATE FUNCTION nexus_plans_json() RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'plans', coalesce((SELECT json_agg(json_build_object(
                     'id', p.id, 'name', p.name,
                     'description', p.description,
                     'default', p.is_default,
                     'features', coalesce((SELECT json_agg(pf.feature_key
                                                  ORDER BY f.position,
                                                           pf.feature_key)
                                             FROM plan_features pf
                                             JOIN features f
                                               ON f.key = pf.feature_key
                                            WHERE pf.plan_id = p.id), '[]'))
                     ORDER BY p.position, p.id) FROM plans p), '[]'),
        'features', coalesce((SELECT json_agg(json_build_object(
                        'key', f.key, 'description', f.description)
                        ORDER BY f.position, f.key) FROM features f), '[]'))
$$;


-- Writes, each returning the tenant's nexus_plan_json(), or NULL when
-- there is no such tenant within scope (0: any tenant). A plan or feature
-- that is not in the catalog fails with foreign_key_violation.

-- plan NULL: back to the default plan
CREATE FUNCTION nexus_plan_assign(tname text, scope bigint, plan text,
                                  actor text) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    tid  bigint;
BEGIN
    SELECT id INTO tid FROM tenants
     WHERE name = tname AND (scope = 0 OR id = scope);
    IF tid IS NULL THEN
        RETURN NULL;
    END IF;

    IF plan IS NULL THEN
        DELETE FROM tenant_plans WHERE tenant_id = tid;
    ELSE
        INSERT INTO tenant_plans (tenant_id, plan_id, updated_by)
        VALUES (tid, plan, actor)
        ON CONFLICT (tenant_id) DO UPDATE
           SET plan_id = EXCLUDED.plan_id, updated_at = now(),
               updated_by = EXCLUDED.updated_by;
    END IF;

    RETURN nexus_plan_json(tid);
END;
$$;

CREATE FUNCTION nexus_plan_override(tname text, scope bigint, fkey text,
                                    en boolean, cfg jsonb, actor text)
RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    tid  bigint;
BEGIN
    SELECT id INTO tid FROM tenants
     WHERE name = tname AND (scope = 0 OR id = scope);
    IF tid IS NULL THEN
        RETURN NULL;
    END IF;

    INSERT INTO tenant_feature_overrides AS o
           (tenant_id, feature_key, enabled, config, updated_by)
    VALUES (tid, fkey, en, coalesce(cfg, '{}'), actor)
    ON CONFLICT (tenant_id, feature_key) DO UPDATE
       SET enabled = EXCLUDED.enabled,
           config = coalesce(cfg, o.config),
           updated_at = now(), updated_by = EXCLUDED.updated_by;

    RETURN nexus_plan_json(tid);
END;
$$;

-- fkey NULL: every override of the tenant
CREATE FUNCTION nexus_plan_override_delete(tname text, scope bigint,
                                           fkey text) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    tid  bigint;
BEGIN
    SELECT id INTO tid FROM tenants
     WHERE name = tname AND (scope = 0 OR id = scope);
    IF tid IS NULL THEN
        RETURN NULL;
    END IF;

    DELETE FROM tenant_feature_overrides
     WHERE tenant_id = tid AND (fkey IS NULL OR feature_key = fkey);

    RETURN nexus_plan_json(tid);
END;
$$;


CREATE FUNCTION nexus_notify_tenant_plan() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('nexus_keys', 't:' || OLD.tenant_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('nexus_keys', 't:' || NEW.tenant_id);
        RETURN NEW;
    END IF;
    RETURN OLD;
END;
$$;

CREATE TRIGGER tenant_plans_notify
    AFTER INSERT OR UPDATE OR DELETE ON tenant_plans
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant_plan();

CREATE TRIGGER tenant_feature_overrides_notify
    AFTER INSERT OR UPDATE OR DELETE ON tenant_feature_overrides
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_tenant_plan();

-- A catalog change may touch every tenant: one notification per statement
-- (PostgreSQL folds identical ones of a transaction), and every node drops
-- its whole key cache.
CREATE FUNCTION nexus_notify_plan_catalog() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nexus_keys', 'p:catalog');
    RETURN NULL;
END;
$$;

CREATE TRIGGER features_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON features
    FOR EACH STATEMENT EXECUTE FUNCTION nexus_notify_plan_catalog();

CREATE TRIGGER plans_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION nexus_notify_plan_catalog();

CREATE TRIGGER plan_features_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON plan_features
    FOR EACH STATEMENT EXECUTE FUNCTION nexus_notify_plan_catalog();
