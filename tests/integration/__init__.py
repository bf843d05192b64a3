"""Integration tests against real Label Studio and Redis (marker: integration)."""
