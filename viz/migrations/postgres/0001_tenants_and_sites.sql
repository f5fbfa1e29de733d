-- Tenants group the sites of one owner; consent and recommendation state is kept per tenant.
-- The id patterns mirror viz.common.sites so a row written by any client is still valid there.
CREATE TABLE tenants (
    tid         text PRIMARY KEY CHECK (tid ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    sid                      text PRIMARY KEY CHECK (sid ~ '^[A-Za-z0-9_-]{3,64}$'),
    -- RESTRICT: a tenant outlives its sites because consent records hang off the tenant.
    tid                      text NOT NULL REFERENCES tenants (tid) ON DELETE RESTRICT,
    name                     text NOT NULL,
    domains                  text[] NOT NULL DEFAULT '{}',
    features                 jsonb NOT NULL,
    cmp_config               jsonb NOT NULL DEFAULT '{}',
    recs_config              jsonb NOT NULL DEFAULT '{}',
    secret_key               bytea NOT NULL CHECK (length(secret_key) = 32),
    previous_key             bytea NULL CHECK (length(previous_key) = 32),
    previous_key_expires_at  timestamptz NULL,
    -- Bumped on every change: bundle URLs and site caches key on it.
    version                  bigint NOT NULL DEFAULT 1,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_key IS NULL) = (previous_key_expires_at IS NULL)),
    CHECK (jsonb_typeof(features) = 'object'),
    CHECK (jsonb_typeof(cmp_config) = 'object'),
    CHECK (jsonb_typeof(recs_config) = 'object')
);

CREATE INDEX sites_tid_idx ON sites (tid);
