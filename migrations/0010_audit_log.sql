-- Audit log: who did what to which tenant, with what outcome. Every row is
-- a link of a keyed HMAC-SHA256 chain (common/nx_audit.h), one chain per
-- tenant, so that nexusctl audit verify can tell an edited, deleted,
-- reordered, truncated or restamped row from an intact log.
--
-- The chains are extended by the gateway's workers, on every node, in
-- batches. The HMAC key never reaches the database: a worker computes the
-- links of its batch from the chain heads it believes current and calls
-- nexus_audit_append(), which locks those heads (audit_chains) and writes
-- the rows only if no other writer moved them in the meantime; otherwise
-- it answers with the current heads, and the worker computes the batch
-- again from them. One lock per chain head puts every chain in a single
-- writer order, whatever the number of workers and nodes.
--
-- tenant_id is the tenant the event concerns; 0 is the platform's own
-- chain, for events that belong to no tenant. No foreign keys: the log
-- outlives the tenants and keys it names, and must never block, or be
-- blocked by, a change to them.

-- the head of each chain: its last row, or seq 0 and no hash when empty
CREATE TABLE audit_chains (
    tenant_id   bigint      PRIMARY KEY,
    seq         bigint      NOT NULL DEFAULT 0,
    row_hmac    bytea,
    ts_us       bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the writer's own id for the event: a batch sent twice lands once
    event_id    text        NOT NULL UNIQUE,
    request_id  text,
    tenant_id   bigint      NOT NULL,
    actor       text,                       -- the key prefix
    event_type  text        NOT NULL,
    outcome     text        NOT NULL,
    -- redacted by the writer, and kept byte for byte as hashed: json, not
    -- jsonb, which would reorder the members (cast to jsonb to query it)
    metadata    json        NOT NULL,
    created_at  timestamptz NOT NULL,
    -- the chain: seq counts from 1 without gaps per tenant_id;
    -- row_hmac = HMAC(chain key, prev_hash || canonical row)
    seq         bigint      NOT NULL CHECK (seq > 0),
    prev_hash   bytea       NOT NULL,
    row_hmac    bytea       NOT NULL,
    CONSTRAINT audit_events_chain UNIQUE (tenant_id, seq)
);

-- GET /v1/audit/events: newest first, per tenant or across all of them,
-- by event type or by actor
CREATE INDEX audit_events_tenant_idx
    ON audit_events (tenant_id, created_at DESC, id DESC);
CREATE INDEX audit_events_created_idx
    ON audit_events (created_at DESC, id DESC);
CREATE INDEX audit_events_type_idx
    ON audit_events (event_type, created_at DESC, id DESC);
CREATE INDEX audit_events_actor_idx
    ON audit_events (actor, created_at DESC, id DESC);

-- Signed checkpoints of the chain heads: mac = HMAC(checkpoint key,
-- "NXCHKPT1" || tenant_id || seq || count || signed_at || row_hmac). The
-- only defence against a log cut at its tail.
CREATE TABLE audit_checkpoints (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   bigint      NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 0),
    count       bigint      NOT NULL,
    signed_at   timestamptz NOT NULL,
    row_hmac    bytea       NOT NULL,
    mac         bytea       NOT NULL,
    UNIQUE (tenant_id, seq)
);


-- The log is append-only for everyone who goes through the schema's rules;
-- the chain and the checkpoints catch whoever goes around them.
CREATE FUNCTION nexus_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION nexus_audit_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION nexus_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION nexus_audit_append_only();


-- Appends a batch of chained rows, as one writer:
--
--   {"heads": [{"tenant_id": 3, "seq": 41, "hash": "<hex>"}, ...],
--    "rows":  [{"event_id": ..., "tenant_id": 3, "seq": 42, "ts": <us>,
--               "request_id", "actor", "event_type", "outcome",
--               "metadata": "<JSON text>", "prev": "<hex>",
--               "hash": "<hex>"}, ...]}
--
-- heads names every chain of the batch with the head the writer chained
-- from (seq 0 and hash "" for an empty chain). Returns 'ok' when the rows
-- were written, 'written' when this batch had been written already (sent
-- again after a lost answer), or, when a head moved, the current heads of
-- the batch's chains as a JSON array [{"tenant_id", "seq", "hash", "ts"}]
-- and nothing is written. Heads are locked in tenant_id order, so two
-- writers never deadlock.

CREATE FUNCTION nexus_audit_append(batch json)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    moved  json;
BEGIN
    INSERT INTO audit_chains (tenant_id)
    SELECT h.tenant_id
    FROM json_to_recordset(batch->'heads') AS h (tenant_id bigint)
    ORDER BY h.tenant_id
    ON CONFLICT DO NOTHING;

    PERFORM 1 FROM audit_chains c
    WHERE c.tenant_id IN (SELECT h.tenant_id
                          FROM json_to_recordset(batch->'heads')
                               AS h (tenant_id bigint))
    ORDER BY c.tenant_id
    FOR UPDATE;

    -- a batch is written whole or not at all: its first row tells
    IF EXISTS (SELECT 1 FROM audit_events e
               WHERE e.event_id = batch->'rows'->0->>'event_id')
    THEN
        RETURN 'written';
    END IF;

    SELECT json_agg(json_build_object('tenant_id', c.tenant_id,
                                      'seq', c.seq,
                                      'hash', encode(c.row_hmac, 'hex'),
                                      'ts', c.ts_us)
                    ORDER BY c.tenant_id)
    INTO moved
    FROM audit_chains c
    JOIN json_to_recordset(batch->'heads')
         AS h (tenant_id bigint, seq bigint, hash text)
      ON h.tenant_id = c.tenant_id
    WHERE c.seq <> h.seq
       OR coalesce(encode(c.row_hmac, 'hex'), '') <> coalesce(h.hash, '');

    IF moved IS NOT NULL THEN
        RETURN moved::text;
    END IF;

    -- each chain's rows follow its head without gaps
    IF EXISTS (SELECT 1
               FROM json_to_recordset(batch->'rows')
                    AS r (tenant_id bigint, seq bigint)
               LEFT JOIN json_to_recordset(batch->'heads')
                    AS h (tenant_id bigint, seq bigint)
                 ON h.tenant_id = r.tenant_id
               GROUP BY r.tenant_id
               HAVING min(r.seq) <> min(h.seq) + 1
                   OR max(r.seq) - min(r.seq) + 1 <> count(*)
                   OR count(*) <> count(DISTINCT r.seq))
    THEN
        RAISE EXCEPTION 'audit batch does not extend its chains'
            USING ERRCODE = 'data_exception';
    END IF;

    INSERT INTO audit_events (event_id, request_id, tenant_id, actor,
                              event_type, outcome, metadata, created_at,
                              seq, prev_hash, row_hmac)
    SELECT r.event_id, nullif(r.request_id, ''), r.tenant_id,
           nullif(r.actor, ''), r.event_type, r.outcome, r.metadata::json,
           timestamptz 'epoch' + r.ts * interval '1 microsecond',
           r.seq, decode(r.prev, 'hex'), decode(r.hash, 'hex')
    FROM json_to_recordset(batch->'rows')
         AS r (event_id text, request_id text, tenant_id bigint, actor text,
               event_type text, outcome text, metadata text, ts bigint,
               seq bigint, prev text, hash text)
    ORDER BY r.tenant_id, r.seq;

    UPDATE audit_chains c
    SET seq = l.seq, row_hmac = decode(l.hash, 'hex'), ts_us = l.ts,
        updated_at = now()
    FROM (SELECT DISTINCT ON (r.tenant_id) r.tenant_id, r.seq, r.hash, r.ts
          FROM json_to_recordset(batch->'rows')
               AS r (tenant_id bigint, seq bigint, hash text, ts bigint)
          ORDER BY r.tenant_id, r.seq DESC) l
    WHERE c.tenant_id = l.tenant_id;

    RETURN 'ok';
END;
$$;


-- One page of GET /v1/audit/events, newest first:
--
--   {"scope": tenant id or null for all, "tenant": name or null,
--    "event_type", "outcome", "actor", "since", "until" (null: any),
--    "after_ts", "after_id" (the cursor: the last row of the page before),
--    "limit"}
--
-- Returns one row: the items as a JSON array, whether more follow, and
-- the (created_at in microseconds, id) of the last item for the next
-- cursor. The query is built with only the filters given, so each runs
-- on its own plan; an invalid since or until fails with SQLSTATE 22007
-- or 22008.

CREATE FUNCTION nexus_audit_events(f json,
                                   OUT items text, OUT has_more boolean,
                                   OUT last_ts bigint, OUT last_id bigint)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    q      text := 'SELECT e.* FROM audit_events e WHERE true';
    lim    integer := least(greatest(coalesce((f->>'limit')::integer, 50),
                                     1), 200);
    since  timestamptz := (f->>'since')::timestamptz;
    until  timestamptz := (f->>'until')::timestamptz;
    after  timestamptz;
BEGIN
    IF f->>'scope' IS NOT NULL THEN
        q := q || ' AND e.tenant_id = ($1->>''scope'')::bigint';
    END IF;
    IF f->>'tenant' IS NOT NULL THEN
        q := q || ' AND e.tenant_id = (SELECT t.id FROM tenants t'
                  ' WHERE t.name = $1->>''tenant'')';
    END IF;
    IF f->>'event_type' IS NOT NULL THEN
        q := q || ' AND e.event_type = $1->>''event_type''';
    END IF;
    IF f->>'outcome' IS NOT NULL THEN
        q := q || ' AND e.outcome = $1->>''outcome''';
    END IF;
    IF f->>'actor' IS NOT NULL THEN
        q := q || ' AND e.actor = $1->>''actor''';
    END IF;
    IF since IS NOT NULL THEN
        q := q || ' AND e.created_at >= $2';
    END IF;
    IF until IS NOT NULL THEN
        q := q || ' AND e.created_at < $3';
    END IF;
    IF f->>'after_id' IS NOT NULL THEN
        after := timestamptz 'epoch'
                 + (f->>'after_ts')::bigint * interval '1 microsecond';
        q := q || ' AND (e.created_at, e.id) < ($4, ($1->>''after_id'')'
                  '::bigint)';
    END IF;

    q := 'WITH page AS (' || q
         || ' ORDER BY e.created_at DESC, e.id DESC LIMIT $5 + 1),'
         || ' shown AS (SELECT p.*, row_number() OVER'
         || ' (ORDER BY p.created_at DESC, p.id DESC) AS n FROM page p'
         || ' ORDER BY p.created_at DESC, p.id DESC LIMIT $5)'
         || ' SELECT coalesce((SELECT json_agg(json_build_object('
         || '''id'', s.id, ''request_id'', s.request_id,'
         || ' ''tenant'', t.name, ''tenant_id'', s.tenant_id,'
         || ' ''actor'', s.actor, ''event_type'', s.event_type,'
         || ' ''outcome'', s.outcome, ''metadata'', s.metadata,'
         || ' ''created_at'', to_char(s.created_at AT TIME ZONE ''UTC'','
         || ' ''YYYY-MM-DD"T"HH24:MI:SS.US"Z"''), ''seq'', s.seq)'
         || ' ORDER BY s.n)'
         || ' FROM shown s LEFT JOIN tenants t ON t.id = s.tenant_id),'
         || ' ''[]'')::text,'
         || ' (SELECT count(*) FROM page) > $5,'
         || ' (SELECT (extract(epoch FROM s.created_at) * 1000000)::bigint'
         || ' FROM shown s ORDER BY s.n DESC LIMIT 1),'
         || ' (SELECT s.id FROM shown s ORDER BY s.n DESC LIMIT 1)';

    EXECUTE q INTO items, has_more, last_ts, last_id
        USING f, since, until, after, lim;
END;
$$;
