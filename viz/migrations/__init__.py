"""Schema migrations: PostgreSQL (versioned SQL), ClickHouse (versioned SQL), Kafka topics."""
