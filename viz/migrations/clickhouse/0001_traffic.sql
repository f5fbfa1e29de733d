-- Raw events, one row per event, written only by viz-consumer.
-- Deduplication is off by default on non-replicated tables (window 0); the consumer relies on
-- it to make a replayed batch (same insert_deduplication_token) a no-op.
CREATE TABLE IF NOT EXISTS {database}.traffic
(
    event_id        String,
    site_id         LowCardinality(String),
    tenant_id       LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    client_ts       DateTime64(3, 'UTC'),
    event_type      LowCardinality(String),
    path            String,
    title           String,
    event_name      LowCardinality(String),
    bid             String,
    consent_tier    UInt8,
    referrer        String,
    referrer_host   LowCardinality(String),
    medium          LowCardinality(String),
    source          LowCardinality(String),
    utm_source      LowCardinality(String),
    utm_medium      LowCardinality(String),
    utm_campaign    LowCardinality(String),
    utm_term        String,
    utm_content     String,
    browser         LowCardinality(String),
    browser_version LowCardinality(String),
    os              LowCardinality(String),
    device          LowCardinality(String),
    is_bot          UInt8,
    active_ms       UInt32,
    exit_href       String,
    kafka_partition UInt16,
    kafka_offset    UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site_id, toDate(ts), event_type, path)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Per site, hour and path. Unique visitors are an aggregate state: summing hourly visitor
-- counts would count a visitor once per hour they were seen. No explicit column list on the
-- engine: with one, a merge keeps an arbitrary `visitors` state instead of merging the states.
CREATE TABLE IF NOT EXISTS {database}.pageviews_hourly
(
    site_id   LowCardinality(String),
    hour      DateTime('UTC'),
    path      String,
    pageviews UInt64,
    hits      UInt64,
    active_ms UInt64,
    exits     UInt64,
    visitors  AggregateFunction(uniq, String)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, hour, path)
TTL hour + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.mv_pageviews_hourly
TO {database}.pageviews_hourly
AS SELECT
    site_id,
    toStartOfHour(ts) AS hour,
    path,
    countIf(event_type = 'pageview') AS pageviews,
    countIf(event_type = 'hit') AS hits,
    sumIf(toUInt64(active_ms), event_type = 'active') AS active_ms,
    countIf(event_type = 'exit') AS exits,
    uniqStateIf(bid, bid != '' AND event_type = 'pageview') AS visitors
FROM {database}.traffic
WHERE is_bot = 0
GROUP BY site_id, hour, path;

-- Per site, day, medium and source, counted on pageviews and anonymous hits.
CREATE TABLE IF NOT EXISTS {database}.referrers_daily
(
    site_id   LowCardinality(String),
    day       Date,
    medium    LowCardinality(String),
    source    LowCardinality(String),
    pageviews UInt64,
    hits      UInt64,
    visitors  AggregateFunction(uniq, String)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site_id, day, medium, source)
TTL day + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.mv_referrers_daily
TO {database}.referrers_daily
AS SELECT
    site_id,
    toDate(ts) AS day,
    medium,
    source,
    countIf(event_type = 'pageview') AS pageviews,
    countIf(event_type = 'hit') AS hits,
    uniqStateIf(bid, bid != '' AND event_type = 'pageview') AS visitors
FROM {database}.traffic
WHERE is_bot = 0 AND event_type IN ('pageview', 'hit')
GROUP BY site_id, day, medium, source;
