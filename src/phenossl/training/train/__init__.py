"""Training one SSL method: config, loop, batches, optimiser, RNG."""
