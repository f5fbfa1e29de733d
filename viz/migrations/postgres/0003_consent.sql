-- Consent state for viz-cmp: the current tier per (browser, tenant), and an append-only ledger
-- that is the proof of consent (GDPR Art. 7(1)).
CREATE TABLE consent_records (
    bid             text NOT NULL,
    tid             text NOT NULL REFERENCES tenants (tid) ON DELETE CASCADE,
    tier            smallint NOT NULL CHECK (tier BETWEEN 0 AND 2),
    sid             text NOT NULL,
    banner_version  text NOT NULL,
    consented_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (bid, tid)
);

-- No foreign keys here on purpose: the proof must outlive the site and tenant it was given for.
CREATE TABLE consent_ledger (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    bid             text NULL,  -- NULL for a decline before any browser id was issued
    tid             text NOT NULL,
    sid             text NOT NULL,
    tier            smallint NOT NULL CHECK (tier BETWEEN 0 AND 2),
    previous_tier   smallint NULL CHECK (previous_tier BETWEEN 0 AND 2),
    banner_version  text NOT NULL,
    banner_hash     text NOT NULL,
    method          text NOT NULL,
    source          text NOT NULL,
    gpc             boolean NOT NULL DEFAULT false
);

CREATE INDEX consent_ledger_tid_bid_at_idx ON consent_ledger (tid, bid, at);

-- "The application never updates or deletes it" enforced by the database, not by convention.
-- Statement-level so even an UPDATE/DELETE matching no rows, and TRUNCATE, are refused.
CREATE FUNCTION consent_ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER consent_ledger_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON consent_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION consent_ledger_refuse_change();
