"""Evaluation: medical MCQA, safety, bias, truthfulness."""
