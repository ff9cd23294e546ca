"""Scanner side of bordermon: what produces crossing events (publisher, synthetic feed)."""
