"""Scores on chain: ``uint64`` fixed-point numbers with scale 1e6 (the contract's ``SCORE_SCALE``).

Apart from :mod:`mine.evaluate` (which computes scores with torch) so that commands that only show
scores start without importing torch.
"""

from __future__ import annotations

import math
import numbers
from decimal import ROUND_HALF_UP, Decimal

from mine.errors import ValidationError

__all__ = ["SCORE_SCALE", "score_from_chain", "score_to_chain"]

#: Fixed-point scale of on-chain scores (the contract's ``SCORE_SCALE``).
SCORE_SCALE = 1_000_000
_UINT64_MAX = 2**64 - 1


def score_to_chain(score: float) -> int:
    """A score as the contract's fixed-point ``uint64``: ``round(score * 1e6)``, half away from zero.

    The score's shortest round-trip decimal representation (``repr``) is scaled exactly with
    :class:`decimal.Decimal`, so ``0.5000005`` → ``500001`` (no binary-float surprises). Scores must
    be finite, >= 0 and fit a ``uint64`` after scaling; otherwise ``ValidationError``.
    """
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise ValidationError(f"score must be a number, got {score!r}")
    f = float(score)
    if not math.isfinite(f):
        raise ValidationError(f"score {f!r} is not finite and cannot be put on chain")
    q = (Decimal(repr(f)) * SCORE_SCALE).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    v = int(q)
    if v < 0 or v > _UINT64_MAX:
        raise ValidationError(f"score {f!r} is outside the on-chain range 0..{_UINT64_MAX / SCORE_SCALE:g}")
    return v


def score_from_chain(value: int) -> float:
    """The float score of an on-chain fixed-point value (``value / 1e6``, correctly rounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValidationError(f"an on-chain score must be an integer, got {value!r}")
    if not 0 <= int(value) <= _UINT64_MAX:
        raise ValidationError(f"an on-chain score must be a uint64, got {value!r}")
    return int(value) / SCORE_SCALE
