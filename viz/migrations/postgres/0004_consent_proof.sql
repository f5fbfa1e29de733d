-- What viz-cmp needs in the ledger to prove each decision on its own (GDPR Art. 7(1)):
--   consent_id      a random id per decision, returned to the browser: a decline made before any
--                   browser id existed (bid NULL) is still a row the visitor can point to;
--   requested_tier  the tier the visitor asked for, when a Sec-GPC signal capped it (tier is
--                   what was recorded); NULL when nothing was capped;
--   explicit        the visitor explicitly chose this tier in the banner (the only way a GPC
--                   browser gets tier 2).
-- ALTER TABLE is not an UPDATE: the append-only trigger of 0003 stays in force.
ALTER TABLE consent_ledger
    ADD COLUMN consent_id uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN requested_tier smallint NULL CHECK (requested_tier BETWEEN 0 AND 2),
    ADD COLUMN explicit boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT consent_ledger_capped_only_down CHECK (requested_tier IS NULL OR requested_tier > tier),
    ADD CONSTRAINT consent_ledger_method_known CHECK (method IN ('banner', 'withdrawal', 'gpc', 'api')),
    ADD CONSTRAINT consent_ledger_source_short CHECK (char_length(source) BETWEEN 1 AND 255);

CREATE UNIQUE INDEX consent_ledger_consent_id_idx ON consent_ledger (consent_id);
