"""viz-cmp: consent decisions (current state + append-only proof ledger) and the consent cookie."""
