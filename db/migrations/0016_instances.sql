-- 0016: many switchd instances on one database (issue 15; docs/switchd.md "Instances").
--
-- Instances share the reversal queue and the advice queue through PostgreSQL only. Each row (a
-- reversal) or each issuer's advices are *claimed* by exactly one live instance at a time:
--
--   * switch.instances holds one lease per instance: lease_until, renewed every lease / 3 by
--     the instance while it lives (switch.claim_reversals and switch.claim_advice_issuers renew
--     it). An instance is live while now() < lease_until.
--   * switch.reversal_queue.claimed_by names the instance that sends a reversal. The journal
--     writer inserts a row claimed by the instance that decided it; rows inserted by SQL
--     (recover_inflight, the transfer recovery, an operator) are unclaimed. A pending row whose
--     claimant is not live (or that has none) is taken by the next instance that claims (FOR
--     UPDATE SKIP LOCKED: two instances claiming at once take disjoint rows).
--   * switch.advice_leases gives each issuer's advices to one live instance: per-issuer order
--     across instances is the order the one holder sends them in (queued_at).
--
-- Why one lease per instance rather than a lease_until per row: renewal is one UPDATE of one
-- row per period whatever the backlog, and the rows themselves change only when their claimant
-- changes. A row "lease" is the pair (claimed_by, that instance's lease_until).

CREATE TABLE switch.instances (
    instance_id  text COLLATE "C" PRIMARY KEY,
    lease_until  timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    renewed_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE switch.reversal_queue ADD COLUMN claimed_by text COLLATE "C";
-- The claim scan reads pending rows only. The index puts state in a predicate, so an
-- acknowledgement is not a HOT update (0006 dropped reversal_queue_due for that reason on a
-- single instance); reversals are rare next to authorizations, and without it every claim
-- period would scan the whole queue's history.
CREATE INDEX reversal_queue_claimable ON switch.reversal_queue (reversal_id)
    WHERE state = 'pending';

CREATE TABLE switch.advice_leases (
    issuer_id   text COLLATE "C" PRIMARY KEY,
    claimed_by  text COLLATE "C" NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);

-- Renews p_owner's lease for p_lease_ms and returns the pending reversals it takes: those no
-- live instance holds (unclaimed, or their claimant's lease expired), at most p_limit, oldest
-- first; with p_all also the pending rows already claimed by p_owner (its first claim after a
-- start: a previous run of the same instance_id claimed them).
CREATE FUNCTION switch.claim_reversals(p_owner text, p_lease_ms bigint, p_takeover_ms bigint,
                                       p_all boolean, p_limit integer)
RETURNS SETOF switch.reversal_queue
LANGUAGE plpgsql AS $$
DECLARE
    dead text;
BEGIN
    INSERT INTO switch.instances (instance_id, lease_until)
    VALUES (p_owner, now() + p_lease_ms * interval '1 millisecond')
    ON CONFLICT (instance_id) DO UPDATE
        SET lease_until = EXCLUDED.lease_until, renewed_at = now();
    -- A dead instance's requests in flight (its switch.inflight rows) are settled here as it
    -- would settle them at its own restart (recover_inflight: a reversal queued for each one not
    -- journaled as approved, claimed just below), once its lease has been expired for
    -- p_takeover_ms (takeover_inflight_ms, 5 minutes by default): a terminal that reconnected to
    -- another instance gets its reversal of the lost request answered without waiting for the
    -- dead one to come back. Not sooner, because the one thing a live instance cannot see is the
    -- other's spool: an instance cut from PostgreSQL (or killed during an outage and not yet
    -- restarted) may hold, spooled only, the journal row of an approval it delivered for a
    -- request whose write-ahead row is here — settling that row would reverse an approval the
    -- terminal holds. An instance restarted by systemd replays its spool and settles its own rows
    -- first, long before this fires (docs/switchd.md "Instances", docs/RELIABILITY.md).
    FOR dead IN SELECT i.instance_id FROM switch.instances i
                 WHERE i.instance_id <> p_owner
                   AND i.lease_until < now() - p_takeover_ms * interval '1 millisecond'
                   AND EXISTS (SELECT 1 FROM switch.inflight f WHERE f.owner = i.instance_id)
    LOOP
        PERFORM * FROM switch.recover_inflight(dead);
    END LOOP;
    IF p_all THEN
        RETURN QUERY SELECT q.* FROM switch.reversal_queue q
                      WHERE q.state = 'pending' AND q.claimed_by = p_owner
                      ORDER BY q.reversal_id;
    END IF;
    RETURN QUERY
    WITH free AS (
        SELECT q.reversal_id FROM switch.reversal_queue q
          LEFT JOIN switch.instances i ON i.instance_id = q.claimed_by
         WHERE q.state = 'pending' AND q.claimed_by IS DISTINCT FROM p_owner
           AND (i.lease_until IS NULL OR i.lease_until < now())
         ORDER BY q.reversal_id
         LIMIT p_limit
           FOR UPDATE OF q SKIP LOCKED
    )
    UPDATE switch.reversal_queue q SET claimed_by = p_owner
      FROM free WHERE q.reversal_id = free.reversal_id
    RETURNING q.*;
END
$$;

-- Renews p_owner's lease and returns the issuers whose advices it may send: those it held, and
-- those that no live instance holds (taken now, SKIP LOCKED) among its own issuer links
-- (p_issuers; an instance without a link to an issuer never takes its advices, it could not send
-- them).
CREATE FUNCTION switch.claim_advice_issuers(p_owner text, p_lease_ms bigint, p_issuers text[])
RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO switch.instances (instance_id, lease_until)
    VALUES (p_owner, now() + p_lease_ms * interval '1 millisecond')
    ON CONFLICT (instance_id) DO UPDATE
        SET lease_until = EXCLUDED.lease_until, renewed_at = now();
    INSERT INTO switch.advice_leases (issuer_id, claimed_by)
    SELECT DISTINCT i, p_owner FROM unnest(p_issuers) AS u(i)
    ON CONFLICT (issuer_id) DO NOTHING;
    RETURN QUERY
    WITH free AS (
        SELECT l.issuer_id FROM switch.advice_leases l
          LEFT JOIN switch.instances i ON i.instance_id = l.claimed_by
         WHERE l.claimed_by <> p_owner AND (i.lease_until IS NULL OR i.lease_until < now())
           AND l.issuer_id = ANY (p_issuers)
           FOR UPDATE OF l SKIP LOCKED
    ), taken AS (
        UPDATE switch.advice_leases l SET claimed_by = p_owner, claimed_at = now()
          FROM free WHERE l.issuer_id = free.issuer_id
        RETURNING l.issuer_id
    )
    SELECT issuer_id FROM taken
    UNION
    SELECT issuer_id FROM switch.advice_leases
     WHERE claimed_by = p_owner AND issuer_id = ANY (p_issuers);
END
$$;

-- An instance that stops cleanly gives its claims up at once (the others take them at their
-- next claim instead of after the lease).
CREATE FUNCTION switch.release_instance(p_owner text)
RETURNS void
LANGUAGE sql AS $$
    UPDATE switch.instances SET lease_until = '-infinity' WHERE instance_id = p_owner;
$$;

-- Reference data changed: every switchd LISTENing on atlas_refdata reloads it (as on SIGHUP).
CREATE FUNCTION switch.notify_refdata() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atlas_refdata', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['issuers', 'bin_routes', 'acquirers', 'terminals', 'keys',
                             'fx_rates', 'stand_in_rules'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE'
                       ' ON switch.%I FOR EACH STATEMENT EXECUTE FUNCTION switch.notify_refdata()',
                       t || '_notify_refdata', t);
    END LOOP;
END
$$;
