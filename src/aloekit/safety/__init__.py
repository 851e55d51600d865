"""Safety: attack styles for red-teaming data and evaluation, and a first rule-based refusal detector."""

from aloekit.safety.refusal import is_refusal, refusal_matches
from aloekit.safety.styles import STYLES, Style, apply_style

__all__ = ["STYLES", "Style", "apply_style", "is_refusal", "refusal_matches"]
