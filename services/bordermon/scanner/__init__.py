"""Scanner side of bordermon: the publisher SDK (the synthetic feed is `bordermon.simulate`)."""
