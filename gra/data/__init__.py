"""Seeds, the pool and (later) deduplication and export."""
