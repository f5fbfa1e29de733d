-- Per site and hour: what overview and timeseries read. `pageviews_hourly` is keyed per path, so
-- a 30-day read of one site merges a row and a `uniq` state per (hour, path) seen (8.35M rows for
-- 10M events in bench/); this one holds at most 24 rows per site and day, whatever the paths.
-- Same filter and columns as mv_pageviews_hourly minus the path. No explicit column list on the
-- engine (see 0001): with one, a merge keeps an arbitrary `visitors` state instead of merging.
CREATE TABLE IF NOT EXISTS {database}.site_hourly
(
    site_id   LowCardinality(String),
    hour      DateTime('UTC'),
    pageviews UInt64,
    hits      UInt64,
    active_ms UInt64,
    exits     UInt64,
    visitors  AggregateFunction(uniq, String)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site_id, hour)
TTL hour + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Created after `traffic` already holds rows, a view sees only later inserts: a database
-- migrated from 0001 with data in it needs a one-off backfill (INSERT … SELECT from traffic).
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.mv_site_hourly
TO {database}.site_hourly
AS SELECT
    site_id,
    toStartOfHour(ts) AS hour,
    countIf(event_type = 'pageview') AS pageviews,
    countIf(event_type = 'hit') AS hits,
    sumIf(toUInt64(active_ms), event_type = 'active') AS active_ms,
    countIf(event_type = 'exit') AS exits,
    uniqStateIf(bid, bid != '' AND event_type = 'pageview') AS visitors
FROM {database}.traffic
WHERE is_bot = 0
GROUP BY site_id, hour;
