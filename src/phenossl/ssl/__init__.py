"""Self-supervised learning: losses (pure functions), methods (registry), momentum and memory."""
