"""``Idempotency-Key`` on creating POSTs: claims, stored answers and their pruning."""
