-- Webhook notifications: destinations and routes per tenant, delivery
-- jobs with their attempts, and the dead-letter queue.
--
-- nexus-notify turns events of the Redis stream nx:events into jobs (one
-- per destination the event is routed to), delivers them, and records
-- every attempt. The functions below are the worker's transactions; the
-- admin API (the module) reads and changes the same tables. See
-- docs/architecture.md, "Notifications".

CREATE TABLE notify_destinations (
    id              bigserial   PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants (id)
                                ON DELETE CASCADE,
    name            text        CHECK (length(name) BETWEEN 1 AND 128),
    -- checked for http(s) by the admin API and again by the worker
    url             text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    headers         jsonb       NOT NULL DEFAULT '{}'
                                CHECK (jsonb_typeof(headers) = 'object'),
    -- AES-256-GCM, tenant id bound as AAD (common/nx_seal.h); NULL: none
    secret_sealed   bytea,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notify_destinations_tenant_idx
    ON notify_destinations (tenant_id);

CREATE TABLE notify_routes (
    id              bigserial   PRIMARY KEY,
    tenant_id       bigint      NOT NULL REFERENCES tenants (id)
                                ON DELETE CASCADE,
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    enabled         boolean     NOT NULL DEFAULT true,
    -- lower first; the first enabled route that matches wins
    priority        integer     NOT NULL DEFAULT 100
                                CHECK (priority BETWEEN 0 AND 1000000),
    match           jsonb       NOT NULL DEFAULT '{}'
                                CHECK (jsonb_typeof(match) = 'object'),
    -- in delivery order; each a destination of the same tenant
    destination_ids bigint[]    NOT NULL
                                CHECK (cardinality(destination_ids)
                                       BETWEEN 1 AND 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE notify_jobs (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- the order jobs were made in (a route's destinations, in order)
    seq             bigserial   NOT NULL,
    tenant_id       bigint      REFERENCES tenants (id) ON DELETE CASCADE,
    -- "destination": destination_id; "fallback": a global fallback URL
    kind            text        NOT NULL
                                CHECK (kind IN ('destination', 'fallback')),
    destination_id  bigint      REFERENCES notify_destinations (id)
                                ON DELETE SET NULL,
    -- the URL when the job was made (the destination's may change since)
    url             text        NOT NULL,
    route_id        bigint,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    severity        text        NOT NULL,
    payload         text        NOT NULL,
    payload_sha256  text        NOT NULL CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
    -- "<event id>:d:<destination id>" or ":u:<url>"; NULL for a replay
    dedupe_key      text        UNIQUE,
    status          text        NOT NULL DEFAULT 'queued'
                                CHECK (status IN ('queued', 'delivering',
                                       'retrying', 'delivered', 'dlq')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    locked_until    timestamptz,
    last_status     integer,
    last_error      text,
    replay_of       bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);

CREATE INDEX notify_jobs_due_idx ON notify_jobs (next_attempt_at, seq)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX notify_jobs_lease_idx ON notify_jobs (locked_until)
    WHERE status = 'delivering';
CREATE INDEX notify_jobs_status_idx ON notify_jobs (status, created_at);
CREATE INDEX notify_jobs_tenant_idx ON notify_jobs (tenant_id, created_at);

CREATE TABLE notify_attempts (
    id              bigserial   PRIMARY KEY,
    job_id          uuid        NOT NULL REFERENCES notify_jobs (id)
                                ON DELETE CASCADE,
    attempt         integer     NOT NULL CHECK (attempt >= 1),
    started_at      timestamptz NOT NULL,
    duration_ms     integer     NOT NULL CHECK (duration_ms >= 0),
    outcome         text        NOT NULL
                                CHECK (outcome IN ('delivered', 'failed',
                                       'timeout', 'error', 'blocked', 'gone',
                                       'redirect', 'lost')),
    http_status     integer,
    error           text,
    -- at most 1 KiB of what the receiver answered
    response_body   text        CHECK (octet_length(response_body) <= 1024),
    payload_sha256  text        NOT NULL,
    worker          text
);

CREATE INDEX notify_attempts_job_idx ON notify_attempts (job_id, attempt);
CREATE INDEX notify_attempts_started_idx ON notify_attempts (started_at);

CREATE TABLE notify_dlq (
    id              bigserial   PRIMARY KEY,
    job_id          uuid        NOT NULL UNIQUE REFERENCES notify_jobs (id)
                                ON DELETE CASCADE,
    tenant_id       bigint      REFERENCES tenants (id) ON DELETE CASCADE,
    reason          text        NOT NULL
                                CHECK (reason IN ('max_attempts', 'expired',
                                       'gone', 'blocked', 'redirect',
                                       'destination_disabled')),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz,
    replay_job_id   uuid        REFERENCES notify_jobs (id) ON DELETE SET NULL
);

CREATE INDEX notify_dlq_tenant_idx ON notify_dlq (tenant_id, created_at);

ALTER TABLE notify_jobs ADD FOREIGN KEY (replay_of) REFERENCES notify_dlq (id)
    ON DELETE SET NULL;


-- What the worker needs to route a tenant's events: its name, its enabled
-- routes in order, and its destinations. No row: no such tenant.

CREATE FUNCTION notify_routing(p_tenant bigint)
RETURNS TABLE (tenant text, routes text, destinations text)
LANGUAGE sql STABLE AS $$
    SELECT t.name,
        coalesce((SELECT json_agg(json_build_object('id', r.id,
                      'match', r.match, 'destinations', r.destination_ids)
                      ORDER BY r.priority, r.id)
                  FROM notify_routes r
                  WHERE r.tenant_id = t.id AND r.enabled), '[]')::text,
        coalesce((SELECT json_agg(json_build_object('id', d.id,
                      'url', d.url, 'enabled', d.enabled) ORDER BY d.id)
                  FROM notify_destinations d
                  WHERE d.tenant_id = t.id), '[]')::text
    FROM tenants t
    WHERE t.id = p_tenant
$$;


-- Claims up to p_limit due jobs for p_worker, at most p_per_target in
-- flight per destination (or fallback URL) across all workers, so that a
-- slow receiver cannot take every slot. A claim counts as an attempt and
-- holds a lease for p_visibility_ms.

CREATE FUNCTION notify_claim(p_worker text, p_limit integer,
    p_per_target integer, p_visibility_ms integer, p_max_attempts integer,
    p_max_age_s integer)
RETURNS TABLE (id uuid, attempt integer, tenant_id bigint, tenant text,
    destination_id bigint, url text, headers text, secret_sealed bytea,
    event_type text, payload text, payload_sha256 text)
LANGUAGE sql AS $$
    WITH busy AS (
        SELECT coalesce(j.destination_id::text, j.url) AS target,
               count(*) AS n
        FROM notify_jobs j
        WHERE j.status = 'delivering'
        GROUP BY 1
    ),
    due AS (
        -- targets already at their cap are left out before the LIMIT, so
        -- that a backlog for one receiver cannot hide everyone else's
        SELECT j.id, j.next_attempt_at, j.seq, j.destination_id, j.url,
               j.kind
        FROM notify_jobs j
        WHERE j.status IN ('queued', 'retrying')
          AND j.next_attempt_at <= now()
          AND j.attempts < p_max_attempts
          AND j.created_at >= now() - make_interval(secs => p_max_age_s)
          AND coalesce(j.destination_id::text, j.url) NOT IN (
              SELECT busy.target FROM busy WHERE busy.n >= p_per_target)
        ORDER BY j.next_attempt_at, j.seq
        LIMIT greatest(p_limit * 8, 256)
    ),
    ranked AS (
        SELECT due.id, due.next_attempt_at, due.seq,
               row_number() OVER (
                   PARTITION BY coalesce(due.destination_id::text, due.url)
                   ORDER BY due.next_attempt_at, due.seq) AS rn,
               coalesce(b.n, 0) AS busy
        FROM due
        LEFT JOIN notify_destinations d ON d.id = due.destination_id
        LEFT JOIN busy b
               ON b.target = coalesce(due.destination_id::text, due.url)
        WHERE due.kind = 'fallback' OR d.enabled
    ),
    picked AS (
        -- the status is checked again on the locked row: another worker
        -- may have claimed it since this statement's snapshot
        SELECT j.id
        FROM notify_jobs j
        WHERE j.status IN ('queued', 'retrying')
          AND j.next_attempt_at <= now()
          AND j.id IN (SELECT r.id FROM ranked r
                       WHERE r.rn + r.busy <= p_per_target
                       ORDER BY r.next_attempt_at, r.seq
                       LIMIT p_limit)
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE notify_jobs j
        SET status = 'delivering', attempts = j.attempts + 1,
            locked_by = p_worker,
            locked_until = now() + make_interval(
                               secs => p_visibility_ms / 1000.0),
            updated_at = now()
        FROM picked
        WHERE j.id = picked.id
        RETURNING j.*
    )
    SELECT c.id, c.attempts, c.tenant_id, t.name, c.destination_id,
           coalesce(d.url, c.url), coalesce(d.headers, '{}')::text,
           d.secret_sealed, c.event_type, c.payload, c.payload_sha256
    FROM claimed c
    LEFT JOIN notify_destinations d ON d.id = c.destination_id
    LEFT JOIN tenants t ON t.id = c.tenant_id
    ORDER BY c.next_attempt_at, c.seq
$$;


-- Records one attempt and, if p_worker still holds the job's lease for
-- that attempt, moves the job on: 'delivered', 'retrying' (after
-- p_delay_ms) or 'dlq' (with p_dlq_reason). p_disable turns the
-- destination off (an HTTP 410). Returns the DLQ entry's id, if any.

CREATE FUNCTION notify_finish(p_job uuid, p_worker text, p_attempt integer,
    p_started_ms bigint, p_duration_ms integer, p_outcome text,
    p_http_status integer, p_error text, p_body text, p_sha text,
    p_status text, p_delay_ms bigint, p_dlq_reason text, p_disable boolean)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_job  notify_jobs%ROWTYPE;
    v_dlq  bigint;
BEGIN
    INSERT INTO notify_attempts (job_id, attempt, started_at, duration_ms,
        outcome, http_status, error, response_body, payload_sha256, worker)
    VALUES (p_job, p_attempt, to_timestamp(p_started_ms / 1000.0),
        p_duration_ms, p_outcome, p_http_status, p_error, p_body, p_sha,
        p_worker);

    SELECT * INTO v_job FROM notify_jobs
    WHERE id = p_job AND status = 'delivering' AND locked_by = p_worker
      AND attempts = p_attempt
    FOR UPDATE;

    IF NOT FOUND THEN
        -- the lease was lost (expired and taken over): only the attempt
        -- is recorded
        RETURN NULL;
    END IF;

    IF p_disable AND v_job.destination_id IS NOT NULL THEN
        UPDATE notify_destinations
        SET enabled = false, disabled_reason = 'gone', disabled_at = now(),
            updated_at = now()
        WHERE id = v_job.destination_id AND enabled;
    END IF;

    UPDATE notify_jobs
    SET status = p_status, locked_by = NULL, locked_until = NULL,
        last_status = p_http_status, last_error = p_error,
        updated_at = now(),
        next_attempt_at = CASE WHEN p_status = 'retrying'
                          THEN now() + make_interval(
                                           secs => p_delay_ms / 1000.0)
                          ELSE next_attempt_at END,
        delivered_at = CASE WHEN p_status = 'delivered' THEN now() END
    WHERE id = p_job;

    IF p_status = 'dlq' THEN
        INSERT INTO notify_dlq (job_id, tenant_id, reason, last_error)
        VALUES (p_job, v_job.tenant_id, p_dlq_reason, p_error)
        ON CONFLICT (job_id) DO NOTHING
        RETURNING id INTO v_dlq;
    END IF;

    RETURN v_dlq;
END;
$$;


-- Moves waiting jobs that can no longer be delivered to the DLQ: older
-- than p_max_age_s ('expired'), of a disabled or deleted destination, or
-- out of attempts.

CREATE FUNCTION notify_sweep(p_max_attempts integer, p_max_age_s integer)
RETURNS TABLE (dlq_id bigint, job_id uuid, tenant_id bigint, reason text)
LANGUAGE sql AS $$
    WITH stuck AS (
        SELECT j.id,
               CASE WHEN j.created_at
                         < now() - make_interval(secs => p_max_age_s)
                    THEN 'expired'
                    WHEN j.kind = 'destination'
                         AND (d.id IS NULL OR NOT d.enabled)
                    THEN 'destination_disabled'
                    ELSE 'max_attempts' END AS reason
        FROM notify_jobs j
        LEFT JOIN notify_destinations d ON d.id = j.destination_id
        WHERE j.status IN ('queued', 'retrying')
          AND (j.created_at < now() - make_interval(secs => p_max_age_s)
               OR j.attempts >= p_max_attempts
               OR (j.kind = 'destination'
                   AND (d.id IS NULL OR NOT d.enabled)))
        ORDER BY j.seq
        LIMIT 1000
        FOR UPDATE OF j SKIP LOCKED
    ),
    moved AS (
        UPDATE notify_jobs j
        SET status = 'dlq', updated_at = now(),
            last_error = CASE stuck.reason
                WHEN 'expired' THEN 'older than the maximum age'
                WHEN 'destination_disabled'
                    THEN 'the destination is disabled'
                ELSE j.last_error END
        FROM stuck
        WHERE j.id = stuck.id
        RETURNING j.id, j.tenant_id, stuck.reason, j.last_error
    )
    INSERT INTO notify_dlq AS q (job_id, tenant_id, reason, last_error)
    SELECT moved.id, moved.tenant_id, moved.reason, moved.last_error
    FROM moved
    ON CONFLICT (job_id) DO NOTHING
    RETURNING q.id, q.job_id, q.tenant_id, q.reason
$$;


-- Leases. p_handback: p_worker gives back the jobs it holds without an
-- outcome (a drain that ran out of time): the attempt is not counted.
-- Otherwise the leases of p_worker (restarting after a crash), or every
-- expired lease (p_worker NULL), are taken back: the attempt counts, and
-- is recorded as 'lost', since the receiver may have got it.

CREATE FUNCTION notify_release(p_worker text, p_handback boolean)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n  integer;
BEGIN
    IF p_handback THEN
        UPDATE notify_jobs
        SET status = CASE WHEN attempts > 1 THEN 'retrying'
                          ELSE 'queued' END,
            attempts = attempts - 1, locked_by = NULL, locked_until = NULL,
            next_attempt_at = now(), updated_at = now()
        WHERE status = 'delivering' AND locked_by = p_worker;

        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;

    WITH lost AS (
        UPDATE notify_jobs j
        SET status = 'retrying', locked_by = NULL, locked_until = NULL,
            next_attempt_at = now(), updated_at = now(),
            last_error = 'the worker holding the job stopped before it '
                         'recorded an outcome'
        WHERE j.status = 'delivering'
          AND (CASE WHEN p_worker IS NULL THEN j.locked_until < now()
                    ELSE j.locked_by = p_worker END)
        RETURNING j.id, j.attempts, j.payload_sha256, j.last_error
    )
    INSERT INTO notify_attempts (job_id, attempt, started_at, duration_ms,
        outcome, error, payload_sha256, worker)
    SELECT lost.id, lost.attempts, now(), 0, 'lost', lost.last_error,
           lost.payload_sha256, p_worker
    FROM lost;

    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
