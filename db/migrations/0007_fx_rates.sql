-- 0007: the currency conversion rate table (docs/fx.md). One row is one period of one ordered
-- pair: `rate` units of the billing (card) currency per one unit of the transaction currency,
-- marked up by `spread_pct` percent in the cardholder's disfavour, in force from valid_from
-- (inclusive) to valid_to (exclusive; NULL = until a later rate replaces it). Loaded by
-- `atlas-fx load` through db/fx.c; switchd will read it at start and on SIGHUP.
--
-- Two periods of one pair can never be in force at the same instant: an exclusion constraint
-- says so, and it needs btree_gist for the equality on the currencies. btree_gist ships with
-- Debian's postgresql-15 (contrib is part of the server package) and is a trusted extension
-- since PostgreSQL 13: the database's owner creates it without being a superuser.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE switch.fx_rates (
    fx_rate_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_currency smallint NOT NULL CHECK (from_currency BETWEEN 1 AND 999),  -- DE 49, ISO 4217
    to_currency   smallint NOT NULL CHECK (to_currency BETWEEN 1 AND 999),    -- DE 51
    -- Exact decimals, never floating point; the bounds are fx.h's: DE 10 carries below 10^7,
    -- and a spread above 10 % is far more likely a typo (15 for 1.5) than a tariff.
    rate          numeric NOT NULL CHECK (rate > 0 AND rate < 10000000 AND scale(rate) <= 12),
    spread_pct    numeric NOT NULL CHECK (spread_pct >= 0 AND spread_pct <= 10
                                          AND scale(spread_pct) <= 12),
    -- Whole seconds: libatlas_fx keeps times in seconds, so what it decides at an instant is
    -- what this table says at that instant.
    valid_from    timestamptz NOT NULL CHECK (valid_from = date_trunc('second', valid_from)),
    valid_to      timestamptz CHECK (valid_to = date_trunc('second', valid_to)),
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    source        text NOT NULL,                    -- the file it came from, for the audit
    CHECK (from_currency <> to_currency),
    CHECK (valid_to > valid_from),
    CONSTRAINT fx_rates_no_overlap EXCLUDE USING gist (
        from_currency WITH =, to_currency WITH =, tstzrange(valid_from, valid_to) WITH &&)
);
