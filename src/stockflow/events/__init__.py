"""Events: what happened, written in the same transaction as the change (the outbox)."""
