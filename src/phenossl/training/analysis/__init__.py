"""The paper's bias analysis, tables, figures and report, from a store's results frame.

Reads only the frame (``ResultStore.frame()``): no training code is imported here."""
