"""Scoring models on a test set: answer matching, metrics, and the promotion gate."""
