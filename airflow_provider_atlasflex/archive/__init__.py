"""Export archives at rest: their signatures and their gzip/tar structure."""
