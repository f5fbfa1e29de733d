"""viz-analytics: read-only reporting API over ClickHouse, authenticated by API tokens."""
