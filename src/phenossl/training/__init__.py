"""Headless training, in the order a researcher uses it.

``train``: config -> trainer; ``evaluate``: linear probe, kNN, fine-tuning; ``sweep``: many runs
into a ResultStore; ``analysis``: the paper's tables, figures and report from the store.
"""
