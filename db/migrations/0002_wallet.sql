-- 0002: schema `wallet` — the wallet issuer's accounts (issuer-sim). A wallet's balance changes
-- only by inserting a ledger row (a trigger applies it), so balance = sum(ledger) by construction;
-- holds reserve funds (available = balance - held); request keys make every money movement
-- idempotent. Applied by `atlas-db migrate` inside one transaction.

CREATE SCHEMA wallet;

CREATE TABLE wallet.wallets (
    wallet_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pan_hmac           bytea NOT NULL UNIQUE CHECK (octet_length(pan_hmac) = 32), -- lookup key
    pan_masked         text NOT NULL CHECK (pan_masked ~ '^[0-9*]{12,19}$'),
    expiry             char(4) NOT NULL CHECK (expiry ~ '^[0-9]{2}(0[1-9]|1[0-2])$'),   -- YYMM
    currency           smallint NOT NULL CHECK (currency BETWEEN 1 AND 999),    -- ISO 4217 numeric
    balance_minor      bigint NOT NULL DEFAULT 0,
    held_minor         bigint NOT NULL DEFAULT 0,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'lost')),
    -- PIN verification data: Visa PVV (pvki + pvv) or IBM 3624 offset; the PVK is the issuer's.
    pin_method         text NOT NULL CHECK (pin_method IN ('pvv', 'ibm3624')),
    pvki               smallint CHECK (pvki BETWEEN 0 AND 9),
    pvv                char(4) CHECK (pvv ~ '^[0-9]{4}$'),
    pin_offset         text CHECK (pin_offset ~ '^[0-9A-F]{4,12}$'),
    pin_tries          smallint NOT NULL DEFAULT 0 CHECK (pin_tries >= 0),
    pin_try_limit      smallint NOT NULL DEFAULT 3 CHECK (pin_try_limit > 0),
    -- Daily limits (NULL = none) and today's usage; usage_date is the day the counters belong to,
    -- so the first request of a new day resets them in the same UPDATE that checks them.
    daily_limit_minor      bigint CHECK (daily_limit_minor >= 0),
    daily_cash_limit_minor bigint CHECK (daily_cash_limit_minor >= 0),
    daily_count_limit      integer CHECK (daily_count_limit >= 0),
    usage_date             date,
    usage_minor            bigint NOT NULL DEFAULT 0 CHECK (usage_minor >= 0),
    usage_cash_minor       bigint NOT NULL DEFAULT 0 CHECK (usage_cash_minor >= 0),
    usage_count            integer NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- Can never be overdrawn, whatever the interleaving: these are checked on every row change.
    CONSTRAINT wallet_not_overdrawn CHECK (balance_minor >= 0),
    CONSTRAINT wallet_holds_covered CHECK (held_minor >= 0 AND held_minor <= balance_minor),
    CHECK ((pin_method = 'pvv' AND pvki IS NOT NULL AND pvv IS NOT NULL)
        OR (pin_method = 'ibm3624' AND pin_offset IS NOT NULL))
) WITH (fillfactor = 80); -- room on each page for HOT updates of balances and counters

-- Idempotency: one row per request the issuer answered, keyed by the request's identity
-- (see docs/db.md, "request_key"). A repeated request finds its answer here and is not
-- processed twice.
CREATE TABLE wallet.requests (
    request_key     text PRIMARY KEY,
    wallet_id       bigint REFERENCES wallet.wallets,
    mti             char(4) NOT NULL,
    processing_code char(6),
    amount_minor    bigint,
    response_code   char(2) NOT NULL,
    auth_code       text,
    balance_minor   bigint,          -- ledger balance after the request (DE 54 answer)
    available_minor bigint,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- An 0100 authorization reserves funds; a completion captures it, a reversal or expiry releases
-- it. held_minor on the wallet follows these rows (trigger).
CREATE TABLE wallet.holds (
    hold_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_id     bigint NOT NULL REFERENCES wallet.wallets,
    request_key   text NOT NULL UNIQUE,
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    currency      smallint NOT NULL,
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'captured', 'released', 'expired')),
    auth_code     text,
    rrn           text,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz
);
CREATE INDEX holds_wallet_active ON wallet.holds (wallet_id) WHERE status = 'active';
CREATE INDEX holds_expiry ON wallet.holds (expires_at) WHERE status = 'active';

-- Every balance change. amount_minor is signed (credit > 0, debit < 0). request_key makes the
-- movement idempotent; reverses_entry_id (unique) lets an entry be reversed at most once.
CREATE TABLE wallet.ledger (
    entry_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_id           bigint NOT NULL REFERENCES wallet.wallets,
    request_key         text NOT NULL UNIQUE,
    kind                text NOT NULL CHECK (kind IN ('opening', 'purchase', 'cash_out', 'refund',
                                                      'funding', 'credit', 'capture', 'reversal',
                                                      'adjustment')),
    amount_minor        bigint NOT NULL CHECK (amount_minor <> 0),
    balance_after_minor bigint NOT NULL DEFAULT 0,   -- set by the trigger
    reverses_entry_id   bigint UNIQUE REFERENCES wallet.ledger,
    hold_id             bigint REFERENCES wallet.holds,
    mti                 char(4),
    processing_code     char(6),
    rrn                 text,
    auth_code           text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_wallet ON wallet.ledger (wallet_id, entry_id);

-- Applies a ledger row to its wallet; the wallet's CHECKs refuse an overdraft (SQLSTATE 23514,
-- constraint wallet_not_overdrawn), which aborts the insert with it.
CREATE FUNCTION wallet.ledger_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE wallet.wallets SET balance_minor = balance_minor + NEW.amount_minor, updated_at = now()
     WHERE wallet_id = NEW.wallet_id
    RETURNING balance_minor INTO NEW.balance_after_minor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'wallet % does not exist', NEW.wallet_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_apply BEFORE INSERT ON wallet.ledger
    FOR EACH ROW EXECUTE FUNCTION wallet.ledger_apply();

CREATE FUNCTION wallet.ledger_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet.ledger is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_immutable BEFORE UPDATE OR DELETE ON wallet.ledger
    FOR EACH ROW EXECUTE FUNCTION wallet.ledger_immutable();

-- Keeps wallets.held_minor equal to the sum of the wallet's active holds.
CREATE FUNCTION wallet.holds_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta bigint := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'active' THEN delta := NEW.amount_minor; END IF;
    ELSE
        IF NEW.wallet_id <> OLD.wallet_id OR NEW.amount_minor <> OLD.amount_minor THEN
            RAISE EXCEPTION 'a hold''s wallet and amount are fixed' USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF OLD.status = 'active' AND NEW.status <> 'active' THEN delta := -OLD.amount_minor;
        ELSIF OLD.status <> 'active' AND NEW.status = 'active' THEN delta := NEW.amount_minor;
        END IF;
    END IF;
    IF delta <> 0 THEN
        UPDATE wallet.wallets SET held_minor = held_minor + delta, updated_at = now()
         WHERE wallet_id = NEW.wallet_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER holds_apply BEFORE INSERT OR UPDATE ON wallet.holds
    FOR EACH ROW EXECUTE FUNCTION wallet.holds_apply();

-- balance_minor and held_minor are derived: only the triggers above may change them.
CREATE FUNCTION wallet.wallets_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.balance_minor <> 0 OR NEW.held_minor <> 0 THEN
            RAISE EXCEPTION 'a new wallet starts at 0; fund it with an ''opening'' ledger entry'
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF pg_trigger_depth() < 2 AND (NEW.balance_minor <> OLD.balance_minor
                                      OR NEW.held_minor <> OLD.held_minor) THEN
        RAISE EXCEPTION 'balance_minor/held_minor change only through wallet.ledger/wallet.holds'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER wallets_guard BEFORE INSERT OR UPDATE ON wallet.wallets
    FOR EACH ROW EXECUTE FUNCTION wallet.wallets_guard();

-- Wallets whose balance or held amount disagrees with the ledger/holds (must return no row).
CREATE VIEW wallet.invariant_violations AS
SELECT w.wallet_id, w.balance_minor, coalesce(l.sum, 0) AS ledger_sum,
       w.held_minor, coalesce(h.sum, 0) AS holds_sum
  FROM wallet.wallets w
  LEFT JOIN (SELECT wallet_id, sum(amount_minor) AS sum FROM wallet.ledger GROUP BY wallet_id) l
         USING (wallet_id)
  LEFT JOIN (SELECT wallet_id, sum(amount_minor) AS sum FROM wallet.holds
              WHERE status = 'active' GROUP BY wallet_id) h USING (wallet_id)
 WHERE w.balance_minor <> coalesce(l.sum, 0) OR w.held_minor <> coalesce(h.sum, 0);
