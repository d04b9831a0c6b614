-- 0026: ledger_settle's common case in one plain UPDATE (issue 17; docs/db.md "The set-based
-- ledger").
--
-- Every statement that inserts ledger rows runs ledger_settle once. For the chain check 0017
-- runs one statement that numbers the rows per wallet with a window function, groups them,
-- updates the wallets and counts both sides, then a second one for the tier cap's "any credit?".
-- Nearly every statement holds one row per wallet: a batch of sim_apply_batch changes each
-- wallet at most once, and the per-op functions insert one row. For those the chain is one
-- comparison per row — the row starts from the wallet's balance — and the new balance is the
-- row's balance_after_minor, so one UPDATE ... FROM new_rows does it. The counts that pick the
-- path (rows, distinct wallets, credits) come from one aggregate, which also replaces the
-- credit check's statement. A statement with several rows of one wallet goes through 0017's
-- statement unchanged. The rules are the same on both paths: every wallet of the statement
-- must move (else 23514 ledger_balance_chain, the whole statement refused), the CHECKs of the
-- wallets refuse an overdraft on the UPDATE, the tier cap is checked for credits.
-- Measured (pgbench, one sim_apply_batch per transaction, synchronous_commit off): 0.33 ->
-- 0.31 ms per batch of one decision, 0.55 -> 0.52 ms for four.
-- The function is given whole, as PostgreSQL holds it after 0017 and 0020 (the OFFSET 0 of the
-- tier cap's EXISTS), with the new beginning.

CREATE OR REPLACE FUNCTION wallet.ledger_settle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_rows bigint;
    v_wallets bigint;
    v_credits bigint;
    v_moved bigint;
    r record;
BEGIN
    -- The filled rows of this statement are applied below: their running sums are done with.
    IF coalesce(current_setting('wallet.ledger_pending', true), '') <> '' THEN
        PERFORM set_config('wallet.ledger_pending', '', true);
    END IF;
    SELECT count(*), count(DISTINCT n.wallet_id), count(*) FILTER (WHERE n.amount_minor > 0)
      INTO v_rows, v_wallets, v_credits
      FROM new_rows n;
    IF v_rows = 0 THEN
        RETURN NULL;
    END IF;
    IF v_rows = v_wallets THEN
        -- One row per wallet: it must start from the wallet's balance.
        UPDATE wallet.wallets w SET balance_minor = n.balance_after_minor, updated_at = now()
          FROM new_rows n
         WHERE w.wallet_id = n.wallet_id
           AND w.balance_minor = n.balance_after_minor - n.amount_minor;
        GET DIAGNOSTICS v_moved = ROW_COUNT;
    ELSE
        -- Several rows of a wallet: each continues the one before it (entry order).
        WITH c AS (
            SELECT n.wallet_id, n.amount_minor,
                   n.balance_after_minor - (sum(n.amount_minor) OVER (PARTITION BY n.wallet_id
                                                                      ORDER BY n.entry_id))::bigint
                       AS start
              FROM new_rows n),
        g AS (SELECT c.wallet_id, min(c.start) AS start, max(c.start) AS start2,
                     sum(c.amount_minor)::bigint AS delta
                FROM c GROUP BY c.wallet_id),
        u AS (UPDATE wallet.wallets w SET balance_minor = w.balance_minor + g.delta,
                                          updated_at = now()
                FROM g
               WHERE w.wallet_id = g.wallet_id AND g.start = g.start2 AND w.balance_minor = g.start
              RETURNING 1)
        SELECT count(*) INTO v_moved FROM u;
    END IF;
    IF v_moved <> v_wallets THEN
        RAISE EXCEPTION 'wallet.ledger rows must continue their wallet''s balance (balance_after_minor)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_balance_chain';
    END IF;
    IF v_credits = 0 THEN
        RETURN NULL; -- debits only: no cap to check
    END IF;
    SELECT n.wallet_id, n.balance_after_minor, t.max_balance_minor INTO r
      FROM new_rows n
      JOIN wallet.wallets w ON w.wallet_id = n.wallet_id
      JOIN wallet.kyc_tiers t ON t.tier = w.kyc_tier AND t.currency = w.currency
     WHERE n.amount_minor > 0 AND n.balance_after_minor > t.max_balance_minor
       AND NOT (n.kind = 'reversal' AND EXISTS (
                SELECT 1 FROM wallet.ledger l
                 WHERE l.entry_id = n.reverses_entry_id AND l.wallet_id = n.wallet_id
                   AND l.amount_minor = -n.amount_minor OFFSET 0))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'wallet % would hold % above its tier cap %', r.wallet_id,
            r.balance_after_minor, r.max_balance_minor
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallet_over_tier_cap';
    END IF;
    RETURN NULL;
END
$$;
