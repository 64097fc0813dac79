"""The callstream service: ingest, call sessions, redaction, store, bus, API and CLI."""
