-- Prepaid credits: the ledger of every change of a tenant's balance.
--
-- The balance itself lives in Redis (nx:cr:<tenant id>), where the
-- gateway admits requests against it and deducts what they cost, in the
-- same Lua scripts as the token and cost reservations.  Each change is
-- appended there, atomically with the change, to the stream nx:cr:ledger
-- with the balance before and after; the gateway moves the stream into
-- this table in batches (ngx_nexus_credits.c).  The stream entry's id,
-- (entry_ms, entry_seq), orders the changes and makes a batch written
-- twice harmless; so, per tenant, each row's balance_before is the
-- previous row's balance_after, and the last balance_after is the
-- balance Redis holds once the stream is drained.
--
-- A tenant runs on credits when tenant_costs.credits is true (an admin's
-- first grant sets it).

CREATE TABLE credit_transactions (
    id                  bigserial   PRIMARY KEY,
    entry_ms            bigint      NOT NULL,
    entry_seq           bigint      NOT NULL,
    tenant_id           bigint      NOT NULL
                                    REFERENCES tenants (id) ON DELETE CASCADE,
    transaction_type    text        NOT NULL
                                    CHECK (transaction_type
                                           IN ('admin_credit', 'api_usage')),
    amount_musd         bigint      NOT NULL,
    balance_before_musd bigint      NOT NULL,
    balance_after_musd  bigint      NOT NULL,
    request_id          text,
    model               text,
    created_by          text,
    description         text,
    created_at          timestamptz NOT NULL,
    UNIQUE (entry_ms, entry_seq),
    CHECK (balance_after_musd = balance_before_musd + amount_musd)
);

CREATE INDEX credit_transactions_tenant
    ON credit_transactions (tenant_id, entry_ms DESC, entry_seq DESC);

-- an admin's grants of the last 24 hours, for reports (the daily cap
-- itself is enforced in Redis, at the grant)
CREATE INDEX credit_transactions_grants
    ON credit_transactions (created_by, created_at)
    WHERE transaction_type = 'admin_credit';
