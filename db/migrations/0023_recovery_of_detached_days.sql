-- 0023: switchd's start and a takeover recover requests and transfers of days the journal no
-- longer holds without failing (docs/db.md "switch.inflight", "Journal upkeep").
--
-- switch.recover_inflight (0016) journals each request an instance left in flight as 'lost'
-- under its own request date, and switch.recover_transfers (0010) does the same for an
-- unfinished transfer's sender. Once the upkeep has detached that day (atlas-db partitions
-- --retain-days N), the journal has no partition for it and its DEFAULT partition refuses the
-- row (authorizations_default_refuses): the whole function failed. At switchd's start that is a
-- start retried every second for ever; inside switch.claim_reversals (a live instance taking a
-- dead one's requests over) it failed every claim of every live instance — no reversal sent
-- any more. Such a row needs an instance that never came back and was never taken over for
-- longer than the retention: rare, and not to be left to bring the switch down.
--
-- A request in flight of a detached day is still reversed: it never got the approval, since an
-- approval's journal row deletes its write-ahead row in the same transaction (and the stand-in
-- case, an approval journaled under the request's identity while its forwarded copy was in
-- flight, is reversed too), while the issuer may have applied it. Only the 'lost' journal row is
-- not written; a warning names how many. An unfinished transfer of such a day is left as it is,
-- for an operator, and named in a warning: failing it would reverse its approved legs, and a
-- leg's reversal is built from the leg's journal row, which left with the day. Days from the
-- journal's oldest attached day partition on (switch.journal_first_day(), 0022) are recovered as
-- before (test_db_partitions recovery_of_detached_days).

CREATE OR REPLACE FUNCTION switch.recover_inflight(p_owner text)
RETURNS TABLE (reversed bigint, settled bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_first date := coalesce(switch.journal_first_day(), '-infinity');
    v_orphans bigint;
    v_gone bigint;
BEGIN
    WITH orphan AS (
        DELETE FROM switch.inflight f WHERE f.owner = p_owner RETURNING f.*
    ), seen AS (
        SELECT o.*, a.outcome AS j_outcome, a.auth_code AS j_auth,
               coalesce(a.stand_in, false) AS j_stand_in, o.request_date < v_first AS gone
          FROM orphan o
          LEFT JOIN switch.authorizations a
            ON a.request_date = o.request_date AND a.acquirer_id = o.acquirer_id
           AND a.terminal_id = o.terminal_id AND a.stan = o.stan
           AND a.transmission_time = o.transmission_time AND a.mti_class = o.mti_class
    ), journaled AS (
        INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,
                    transmission_time, mti, rrn, issuer_id, issuer_stan, issuer_transmission_time,
                    processing_code, amount_minor, currency, response_code, pan_masked, pan_hmac,
                    outcome, created_at, billing_amount_minor, conversion_rate, billing_currency)
        SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti, rrn,
               issuer_id, issuer_stan, issuer_transmission_time, processing_code, amount_minor,
               currency, '96', pan_masked, pan_hmac, 'lost', created_at, billing_amount_minor,
               conversion_rate, billing_currency
          FROM seen WHERE j_outcome IS NULL AND NOT gone
        ON CONFLICT DO NOTHING
        RETURNING 1
    ), queued AS (
        INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,
                    transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,
                    processing_code, amount_minor, currency, auth_code, pan_masked, pan_hmac,
                    pan_sealed, reason, billing_amount_minor, conversion_rate, billing_currency)
        SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti, issuer_id,
               issuer_stan, issuer_transmission_time, rrn, processing_code, amount_minor,
               currency, CASE WHEN j_stand_in THEN NULL ELSE j_auth END, pan_masked, pan_hmac,
               pan_sealed, 'recovery', billing_amount_minor, conversion_rate, billing_currency
          FROM seen WHERE j_outcome IS DISTINCT FROM 'approved' OR j_stand_in
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    -- (journaled runs although nothing reads it: data-modifying WITH parts always do.)
    SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM orphan),
           (SELECT count(*) FROM seen WHERE gone)
      INTO reversed, v_orphans, v_gone;
    settled := v_orphans - reversed;
    IF v_gone > 0 THEN
        RAISE WARNING 'recover_inflight(%): % request(s) in flight of days before % (detached from the journal) queued for reversal without their ''lost'' journal row',
            p_owner, v_gone, v_first;
    END IF;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION switch.recover_transfers(p_owner text)
RETURNS TABLE (completed bigint, failed bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t switch.transfers%ROWTYPE;
    a switch.authorizations%ROWTYPE;
    v_first date := coalesce(switch.journal_first_day(), '-infinity');
    v_leg text;
    v_journaled boolean;
    v_completed bigint := 0;
    v_failed bigint := 0;
    v_left bigint[];
BEGIN
    SELECT array_agg(x.transfer_id ORDER BY x.transfer_id) INTO v_left
      FROM switch.transfers x
     WHERE x.owner = p_owner AND x.state IN ('started', 'aft')
       AND least(x.request_date, x.leg_request_date) < v_first;
    IF v_left IS NOT NULL THEN
        RAISE WARNING 'recover_transfers(%): % unfinished transfer(s) of days before % (detached from the journal) left for an operator: transfer_id %',
            p_owner, cardinality(v_left), v_first, v_left;
    END IF;
    FOR t IN SELECT * FROM switch.transfers x
              WHERE x.owner = p_owner AND x.state IN ('started', 'aft')
                AND least(x.request_date, x.leg_request_date) >= v_first FOR UPDATE LOOP
        SELECT * INTO a FROM switch.authorizations j
         WHERE j.request_date = t.request_date AND j.acquirer_id = t.acquirer_id
           AND j.terminal_id = t.terminal_id AND j.stan = t.stan
           AND j.transmission_time = t.transmission_time AND j.mti_class = '020';
        v_journaled := FOUND;
        IF v_journaled AND a.outcome = 'approved' THEN
            UPDATE switch.transfers SET state = 'completed', response_code = '00',
                   updated_at = now() WHERE transfer_id = t.transfer_id;
            v_completed := v_completed + 1;
            CONTINUE;
        END IF;
        FOREACH v_leg IN ARRAY ARRAY['oct', 'aft'] LOOP
            INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,
                        transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,
                        rrn, processing_code, amount_minor, currency, auth_code, pan_masked,
                        pan_hmac, pan_sealed, reason, billing_amount_minor, conversion_rate,
                        billing_currency)
            SELECT j.request_date, j.acquirer_id, j.terminal_id, j.stan, j.transmission_time,
                   j.mti, j.issuer_id, j.issuer_stan, j.issuer_transmission_time, j.rrn,
                   j.processing_code, j.amount_minor, j.currency, j.auth_code, j.pan_masked,
                   j.pan_hmac,
                   CASE v_leg WHEN 'aft' THEN t.sender_pan_sealed ELSE t.recipient_pan_sealed END,
                   'recovery', j.billing_amount_minor, j.conversion_rate, j.billing_currency
              FROM switch.authorizations j
             WHERE j.request_date = t.leg_request_date AND j.acquirer_id = t.acquirer_id
               AND j.terminal_id = switch.transfer_leg_terminal(t.transfer_id, v_leg)
               AND j.stan = switch.transfer_leg_stan(t.transfer_id)
               AND j.transmission_time = t.leg_transmission_time AND j.mti_class = '020'
               AND j.outcome = 'approved' AND j.issuer_stan IS NOT NULL
            ON CONFLICT DO NOTHING;
        END LOOP;
        IF NOT v_journaled THEN
            INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,
                        transmission_time, mti, issuer_id, processing_code, amount_minor,
                        currency, response_code, pan_masked, pan_hmac, outcome, created_at)
            VALUES (t.request_date, t.acquirer_id, t.terminal_id, t.stan, t.transmission_time,
                    '0200', t.sender_issuer, '400000', t.amount_minor, t.currency, '96',
                    t.sender_pan_masked, t.sender_pan_hmac, 'lost', t.created_at)
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE switch.transfers SET state = 'failed', response_code = CASE WHEN v_journaled THEN a.response_code ELSE '96' END,
               failed_leg = coalesce(failed_leg, 'xfr'), updated_at = now()
         WHERE transfer_id = t.transfer_id;
        v_failed := v_failed + 1;
    END LOOP;
    RETURN QUERY SELECT v_completed, v_failed;
END
$$;
