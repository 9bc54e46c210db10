"""Backbones, heads and checkpoints."""

#: how a model's embeddings are compared, as its metadata may record it (``embedding_norm``):
#: ``"none"``, the network's output; ``"l2"``, scaled to unit length (by cosine)
EMBEDDING_NORMS = ("none", "l2")
#: what :func:`phenossl.embed` accepts as ``normalize``: ``"auto"`` takes the model's record
NORMALIZE_CHOICES = ("auto", *EMBEDDING_NORMS)
