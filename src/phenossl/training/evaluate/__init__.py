"""Evaluating a backbone: linear probe, kNN, fine-tuning, metrics, collapse check."""
