"""Enrichers: sentiment, translation and summary, on redacted text only."""
