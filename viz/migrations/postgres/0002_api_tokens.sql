-- Bearer tokens for viz-analytics, scoped to sites. Only a SHA-256 digest is stored: the tokens
-- carry 256 random bits, so a fast unsalted hash is enough (nothing to brute-force, unlike a
-- password) and lets a lookup find the row by an indexed equality on the digest.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    -- The first characters of the plain token, so an admin can tell tokens apart in a list.
    prefix        text NOT NULL,
    -- Site ids, not foreign keys: deleting a site must not silently widen or drop a token.
    site_ids      text[] NOT NULL CHECK (cardinality(site_ids) > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NULL,
    revoked_at    timestamptz NULL
);
