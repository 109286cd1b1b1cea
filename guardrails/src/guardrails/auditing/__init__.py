"""Audit: the hash-chained audit log, its sinks, verification and the trail read-back."""
