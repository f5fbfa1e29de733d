"""viz-collect (port 3001): the ingest hot path — raw httptools on uvloop, Kafka behind.

The HTTP contract (status codes, CORS, cookie, consent tier, drop reasons) is
``viz/collect/openapi.yaml``. Modules, outside in: ``server`` (sockets, workers, graceful
stop) → ``protocol`` (HTTP/1.1 framing) → ``app`` (routes, site lookup, error -> HTTP) →
``pipeline`` (the steps of each endpoint) → ``sinks`` (the acknowledged queue to Kafka).
"""
