-- The pricing catalog and the tenants' cost budgets.
--
-- Prices are versioned: a model's price is the version with the latest
-- effective_from that is not in the future, so a price change can be
-- written ahead of its day.  Prices are integers of nano-dollars per 1K
-- tokens (9 decimals of a dollar, exact for any provider's price list),
-- at most $10 per 1K tokens; amounts are integers of micro-dollars.  See
-- common/nx_money.h.  The model is the name a client asks for: a
-- nexus_model alias or a discovered model.
--
-- tenant_costs holds what the gateway enforces per tenant: a monthly
-- budget (NULL: none) with its warn ratio and what happens at the hard
-- cap (block: 429; degrade: the request goes on with degrade_model and
-- fewer output tokens), whether models without a price may be used, and
-- whether the tenant runs on prepaid credits (0014_credits.sql).
--
-- Every nginx worker keeps the catalog and these rows in its shared zone
-- (ngx_nexus_cost.c): each change NOTIFYs 'c:<what>' on nexus_keys, the
-- channel the workers already listen on, and they reload.

CREATE TABLE model_prices (
    model               text        NOT NULL
                                    CHECK (model ~ '^[^\s,]{1,128}$'),
    input_nusd_per_1k   bigint      NOT NULL
                                    CHECK (input_nusd_per_1k
                                           BETWEEN 0 AND 10000000000),
    output_nusd_per_1k  bigint      NOT NULL
                                    CHECK (output_nusd_per_1k
                                           BETWEEN 0 AND 10000000000),
    effective_from      timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text,
    PRIMARY KEY (model, effective_from)
);

CREATE TABLE tenant_costs (
    tenant_id           bigint      PRIMARY KEY
                                    REFERENCES tenants (id) ON DELETE CASCADE,
    monthly_budget_musd bigint      CHECK (monthly_budget_musd
                                           BETWEEN 1 AND 1000000000000000),
    warn_ratio          numeric(4,3) NOT NULL DEFAULT 0.8
                                    CHECK (warn_ratio > 0 AND warn_ratio <= 1),
    hard_cap_mode       text        NOT NULL DEFAULT 'block'
                                    CHECK (hard_cap_mode IN ('block',
                                                             'degrade')),
    degrade_model       text        CHECK (degrade_model
                                           ~ '^[^\s,]{1,128}$'),
    allow_unpriced      boolean     NOT NULL DEFAULT false,
    credits             boolean     NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (hard_cap_mode = 'block' OR degrade_model IS NOT NULL)
);

CREATE FUNCTION nexus_notify_costs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nexus_keys', 'c:' || TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

-- once per statement: an import of a whole price list is one reload
CREATE TRIGGER model_prices_notify
    AFTER INSERT OR UPDATE OR DELETE ON model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION nexus_notify_costs();

CREATE TRIGGER tenant_costs_notify
    AFTER INSERT OR UPDATE OR DELETE ON tenant_costs
    FOR EACH STATEMENT EXECUTE FUNCTION nexus_notify_costs();
