"""`tripwire eval` (filled in by the eval runner)."""
