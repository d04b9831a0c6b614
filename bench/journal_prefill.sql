-- bench/journal_prefill.sql — fills today's journal partition with :rows realistic rows, server
-- side (one INSERT ... SELECT generate_series), so that a benchmark can measure the journal's
-- cost against its size (bench/curves.sh, bench/e2e.sh E2E_JOURNAL_PREFILL; docs/BENCHMARKS.md
-- "Curves"). A lab tool for a throwaway cluster: never run it on a real switch's database.
--
--   psql -v rows=10000000 -f bench/journal_prefill.sql
--
-- The rows respect the journal's column contract (docs/db.md, "The journal"): today's UTC
-- request_date (the partition the switch writes to now), a unique identity, every column an
-- answered request has (RRN, issuer identity, PAN mask and HMAC, auth code, the four latency
-- columns), outcomes and response codes that go together. They are requests that moved no money,
-- so that atlas-reconcile finds nothing to report about them against any issuer's ledger: 70 %
-- approved balance inquiries (0100, processing code 30: no effect at the issuer, docs/reconcile.md
-- "How the two sides meet"), 30 % declined purchases (0200, DE 39 51: nothing stands). Their
-- terminals are `PF000000`..`PF099999` of acquirer 100001 — never a load terminal (`LOAD…`,
-- `LD…`) or a transfer leg (`XA…`/`XO…`), so a run's own rows and e2e.sh's journal check are
-- untouched. created_at spreads them over the two hours before now (not before today's UTC
-- midnight), so they lie before any run that follows. The rows are inserted in primary-key
-- order (the cheapest way to build 10 M of them), so the primary key is denser than one filled
-- by live traffic; the PAN hash index gets random keys (a million distinct cards), as live.
--
-- Then VACUUM (ANALYZE) and CHECKPOINT: the insert-triggered autovacuum and the checkpoint
-- this volume of WAL calls for happen now, not in the middle of the measurement that follows.
\set ON_ERROR_STOP 1
SELECT switch.create_authorization_partitions((now() AT TIME ZONE 'UTC')::date, 1) AS created \gset
SELECT format('switch.authorizations_%s', to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD'))
       AS part \gset
\timing on
INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,
    transmission_time, mti, rrn, issuer_id, issuer_stan, issuer_transmission_time,
    processing_code, amount_minor, currency, response_code, auth_code, pan_masked, pan_hmac,
    outcome, created_at, lat_total_us, lat_mac_us, lat_pin_us, lat_issuer_us)
SELECT p.d, '100001', 'PF' || lpad((g % 100000)::text, 6, '0'),
       lpad((g / 100000 % 1000000 + 1)::text, 6, '0'),
       to_char(t AT TIME ZONE 'UTC', 'MMDDHH24MISS'),
       CASE WHEN ok THEN '0100' ELSE '0200' END,
       to_char(t AT TIME ZONE 'UTC', 'YDDDHH24') || lpad((g % 1000000)::text, 6, '0'),
       'WALLET1', lpad((g % 999999 + 1)::text, 6, '0'), to_char(t AT TIME ZONE 'UTC', 'MMDDHH24MISS'),
       CASE WHEN ok THEN '300000' ELSE '000000' END,
       CASE WHEN ok THEN 0 ELSE 1 + g * 7919 % 50000 END, 504,
       CASE WHEN ok THEN '00' ELSE '51' END,
       CASE WHEN ok THEN lpad((g * 31 % 1000000)::text, 6, '0') END,
       '489001******' || lpad((g % 10000)::text, 4, '0'),
       sha256(int8send(g % 1000000)),
       CASE WHEN ok THEN 'approved' ELSE 'declined' END,
       t, 1500 + g % 3000, 80 + g % 120, 150 + g % 200, 1200 + g % 2500
  FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d,
               greatest(now() - interval '2 hours',
                        ((now() AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC') AS t0,
               now() - interval '1 second' AS t1) p,
       generate_series(1::bigint, :rows) g,
       LATERAL (SELECT p.t0 + (p.t1 - p.t0) * (g::float8 / :rows) AS t, g % 10 < 7 AS ok) r;
\timing off
VACUUM (ANALYZE) :part;
CHECKPOINT;
SELECT format('journal: %s rows; today''s partition %s: %s (indexes %s)', count(*), :'part',
              pg_size_pretty(pg_total_relation_size(:'part')), pg_size_pretty(pg_indexes_size(:'part')))
  FROM switch.authorizations;
