-- 0004: the journal keeps the DE 7 the switch sent to the issuer. A reversal towards the issuer
-- names its original by the issuer-side STAN and DE 7 (DE 90), so a terminal reversal whose
-- original is no longer in switchd's memory (restart, eviction) can still be rebuilt from here.
ALTER TABLE switch.authorizations ADD COLUMN issuer_transmission_time char(10);
