"""viz-consumer: Kafka ``viz.traffic.raw`` → enrichment → ClickHouse, exactly-once in effect."""
