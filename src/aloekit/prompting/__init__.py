"""Prompting: reading a model's free-text reply back into a benchmark answer."""
