-- Usage events: one row per gateway request, written in batches by every
-- nginx worker (ngx_nexus_usage.c), never one insert per request.
--
-- Partitioned by UTC day on created_at, so that a day's or a month's rows
-- are read without touching the others, and old days are dropped as whole
-- tables. The primary key (created_at, request_id) makes a batch that is
-- sent again harmless: the writer inserts with ON CONFLICT DO NOTHING.
-- A row whose day has no partition yet lands in usage_events_default, the
-- safety net; nexus_usage_partitions() moves such rows into their day's
-- partition when it creates it.
--
-- No foreign keys: a high-volume log must not block, or be blocked by, a
-- change to tenants or keys. Key material never reaches this table: the
-- key is known by its id and its display prefix only.

CREATE TABLE usage_events (
    request_id         text        NOT NULL,
    tenant_id          bigint,
    key_id             bigint,
    key_prefix         text,
    endpoint           text,
    model_requested    text,
    model_served       text,
    provider           text,
    attempts           integer     NOT NULL DEFAULT 0,
    status             integer     NOT NULL,
    outcome            text,
    error_code         text,
    prompt_tokens      bigint      NOT NULL DEFAULT 0,
    completion_tokens  bigint      NOT NULL DEFAULT 0,
    total_tokens       bigint      NOT NULL DEFAULT 0,
    estimated          boolean     NOT NULL DEFAULT false,
    stream             boolean     NOT NULL DEFAULT false,
    latency_ms         bigint      NOT NULL DEFAULT 0,
    ttft_ms            bigint,                 -- NULL: no first token
    bytes_in           bigint      NOT NULL DEFAULT 0,
    bytes_out          bigint      NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL,
    PRIMARY KEY (created_at, request_id)
) PARTITION BY RANGE (created_at);

-- a tenant's day or month (show-usage, GET /v1/admin/usage/{tenant})
CREATE INDEX usage_events_tenant_idx ON usage_events (tenant_id, created_at);

CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;


-- Creates the daily partitions from from_day (today, UTC, by default) to
-- days_ahead days after it, those that do not exist yet; returns how many
-- it created. Safe to run at any time, from any number of nodes at once:
-- callers take turns on an advisory lock. Creating a partition needs a
-- short exclusive lock on usage_events; lock_timeout bounds the wait, so a
-- long reader makes the call fail (and the next one retry) rather than
-- hold up every insert queued behind it.

CREATE FUNCTION nexus_usage_partitions(days_ahead integer DEFAULT 7,
                                       from_day date DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
DECLARE
    first  date := coalesce(from_day, (now() AT TIME ZONE 'UTC')::date);
    d      date;
    lo     timestamptz;
    hi     timestamptz;
    part   text;
    n      integer := 0;
BEGIN
    IF days_ahead IS NULL OR days_ahead < 0 OR days_ahead > 366 THEN
        RAISE EXCEPTION 'days_ahead must be between 0 and 366'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('nexus_usage_partitions'));

    FOR i IN 0 .. days_ahead LOOP
        d := first + i;
        part := 'usage_events_p' || to_char(d, 'YYYYMMDD');

        CONTINUE WHEN to_regclass(part) IS NOT NULL;

        lo := d::timestamp AT TIME ZONE 'UTC';
        hi := (d + 1)::timestamp AT TIME ZONE 'UTC';

        IF EXISTS (SELECT 1 FROM usage_events_default
                   WHERE created_at >= lo AND created_at < hi)
        THEN
            -- the day's rows arrived first: move them in, then attach
            EXECUTE format('CREATE TABLE %I (LIKE usage_events'
                           ' INCLUDING DEFAULTS)', part);
            EXECUTE format('WITH moved AS (DELETE FROM usage_events_default'
                           ' WHERE created_at >= $1 AND created_at < $2'
                           ' RETURNING *) INSERT INTO %I SELECT * FROM moved',
                           part) USING lo, hi;
            EXECUTE format('ALTER TABLE usage_events ATTACH PARTITION %I'
                           ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF usage_events'
                           ' FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        END IF;

        n := n + 1;
    END LOOP;

    RETURN n;
END;
$$;

SELECT nexus_usage_partitions(7);
