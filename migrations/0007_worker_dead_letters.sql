-- Worker daemons: dead letters of their Redis Streams queues.
--
-- A queue entry that a worker could not handle (it is malformed, or it
-- was delivered more than the role's max_attempts times, for instance
-- because it made every worker that took it crash) is copied to the
-- stream's dead-letter stream (<stream>:dead), recorded here, and
-- acknowledged, so that it stops blocking the queue and an operator can
-- look at it. See docs/architecture.md, "Worker daemons".

CREATE TABLE worker_dead_letters (
    id          bigserial   PRIMARY KEY,
    role        text        NOT NULL CHECK (role ~ '^[a-z][a-z0-9_-]{0,31}$'),
    stream      text        NOT NULL,
    entry_id    text        NOT NULL CHECK (entry_id ~ '^[0-9]+-[0-9]+$'),
    fields      jsonb       NOT NULL CHECK (jsonb_typeof(fields) = 'object'),
    reason      text        NOT NULL,
    attempts    integer     NOT NULL CHECK (attempts >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, entry_id)
);

CREATE INDEX worker_dead_letters_created_idx
    ON worker_dead_letters (created_at);
