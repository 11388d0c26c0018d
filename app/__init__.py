"""Shortlist online serving core: settings, catalog store, stages and the app."""
