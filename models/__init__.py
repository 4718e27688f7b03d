"""Scoring models: turn a pair's evidence into weights and an association probability."""
