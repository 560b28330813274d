-- ABAC policies and document ACLs.
--
-- A policy is a named set of rules in the language of common/nx_policy.h,
-- owned by a tenant or, with tenant_id NULL, by the platform (it then
-- applies to every tenant). The module checks a document with nx_policy
-- before it is written here, so the column holds only sets that compile
-- (a set that stops compiling, say for a time zone removed from the host,
-- denies every request of its tenants until it is fixed).
--
-- Every nginx worker compiles the enabled policies of a tenant once, on
-- the tenant's first request, and keeps the tree until a change fires
-- NOTIFY nexus_keys (the channel the key cache listens on):
--   'a:<tenant_id>'   a policy of that tenant changed
--   'a:0'             a platform-wide policy changed (every tenant)

CREATE TABLE authz_policies (
    id          bigserial   PRIMARY KEY,
    tenant_id   bigint      REFERENCES tenants (id) ON DELETE CASCADE,
    name        text        NOT NULL CHECK
                            (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    document    jsonb       NOT NULL
                            CHECK (jsonb_typeof(document) = 'array'
                                   AND jsonb_array_length(document)
                                       BETWEEN 1 AND 100),
    version     integer     NOT NULL DEFAULT 1,
    enabled     boolean     NOT NULL DEFAULT true,
    created_by  text,
    updated_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- names are unique within a tenant, and among platform-wide policies
CREATE UNIQUE INDEX authz_policies_name_idx
    ON authz_policies (coalesce(tenant_id, 0), name);

CREATE FUNCTION nexus_notify_policy() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('nexus_keys', 'a:' || coalesce(OLD.tenant_id, 0));
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE'
       AND coalesce(OLD.tenant_id, 0) <> coalesce(NEW.tenant_id, 0)
    THEN
        PERFORM pg_notify('nexus_keys', 'a:' || coalesce(OLD.tenant_id, 0));
    END IF;
    PERFORM pg_notify('nexus_keys', 'a:' || coalesce(NEW.tenant_id, 0));
    RETURN NEW;
END;
$$;

CREATE TRIGGER authz_policies_notify
    AFTER INSERT OR UPDATE OR DELETE ON authz_policies
    FOR EACH ROW EXECUTE FUNCTION nexus_notify_policy();

-- Document ACLs: explicit grants on a document to a key (by its prefix),
-- to every key of a role, or to every key of the tenant. 'owner' is given
-- to a document's creator and implies every other permission. A document
-- belongs to one tenant: every grant on it carries that tenant, and the
-- first grant (the owner's, on create) fixes it. Documents themselves are
-- not here yet, so document_id is the caller's opaque id.
--
-- Nothing caches grants: each check reads them, so a revocation or an
-- expiry holds from the next check on, on every node.

CREATE TABLE document_acl (
    id              bigserial   PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants (id)
                                ON DELETE CASCADE,
    document_id     text        NOT NULL CHECK
                                (document_id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    principal_type  text        NOT NULL
                                CHECK (principal_type IN ('key', 'role',
                                                          'tenant')),
    principal_id    text        NOT NULL
                                CHECK (length(principal_id) BETWEEN 1 AND 128),
    permission      text        NOT NULL
                                CHECK (permission IN ('read', 'write',
                                                      'delete', 'share',
                                                      'owner')),
    expires_at      timestamptz,
    granted_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, principal_type, principal_id, permission)
);

CREATE INDEX document_acl_tenant_idx ON document_acl (tenant_id, document_id);

-- the tenant boundary: a document never has grants of two tenants
CREATE FUNCTION nexus_document_acl_tenant() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('nexus_document_acl'),
                                  hashtext(NEW.document_id));
    IF EXISTS (SELECT 1 FROM document_acl
               WHERE document_id = NEW.document_id
                 AND tenant_id <> NEW.tenant_id) THEN
        RAISE EXCEPTION 'document % belongs to another tenant',
                        NEW.document_id
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER document_acl_tenant
    BEFORE INSERT OR UPDATE OF tenant_id, document_id ON document_acl
    FOR EACH ROW EXECUTE FUNCTION nexus_document_acl_tenant();
