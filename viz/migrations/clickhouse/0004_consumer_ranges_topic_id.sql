-- The consumer's record of the offset range in flight per partition also names the incarnation
-- of the topic (Kafka's topic id) it belongs to: a new broker or a recreated topic starts at
-- offset 0 again, and a range recorded by the previous incarnation must not be replayed nor its
-- deduplication token reused (docs/decisions.md). Until now the consumer created this table
-- itself; an existing one gains the column, its old rows read '' ("recorded before ids").
-- The key stays (topic, partition): only the latest range of a partition can be in flight.
CREATE TABLE IF NOT EXISTS {database}.consumer_ranges
(
    topic        String,
    topic_id     String DEFAULT '',
    partition    UInt32,
    first_offset Int64,
    last_offset  Int64,
    recorded_ns  UInt64
)
ENGINE = ReplacingMergeTree(recorded_ns)
ORDER BY (topic, partition);

ALTER TABLE {database}.consumer_ranges ADD COLUMN IF NOT EXISTS topic_id String DEFAULT '' AFTER topic;
