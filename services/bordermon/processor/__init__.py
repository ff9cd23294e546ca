"""The stream processor: a faust app around the shared batch step, Redis state, dead letters."""
