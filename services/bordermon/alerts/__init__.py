"""Alert side of bordermon: reading flags (SPEC §5) from the flags topic, for people and tools."""
