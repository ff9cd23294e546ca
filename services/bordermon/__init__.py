"""bordermon: an event-streaming monitor of border crossings (see README.md)."""

__version__ = "0.1.0"
