"""Sweeps: many runs from one config, executed, resumed and recorded in a ResultStore."""
