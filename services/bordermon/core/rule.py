"""Compatibility: `DetectionConfig` moved to `bordermon.core.config` and the transit rule to
`bordermon.core.rules.transit`; callers that import them from here keep working."""

from bordermon.core.config import DAY_NS, DetectionConfig
from bordermon.core.rules import RULE_TRANSIT

__all__ = ["DAY_NS", "RULE_TRANSIT", "DetectionConfig"]
