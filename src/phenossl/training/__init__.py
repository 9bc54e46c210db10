"""Headless training: trainer, evaluation, sweeps, bias analysis, reports."""
