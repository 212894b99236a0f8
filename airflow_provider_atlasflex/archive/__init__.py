"""The archive: exports at rest, what proves them ours, and what they cover."""
