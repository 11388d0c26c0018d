"""Shortlist offline jobs: generate, ingest, embed, train, index, build."""
