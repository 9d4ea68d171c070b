"""Rejection reason codes: what the owner's policy records on chain, and what they mean.

The numbers are the client's convention (the contract stores a `uint8` it does not interpret).
Kept apart from :mod:`mine.policy` (which evaluates with torch) so `mine status` can explain a
rejection without importing torch.
"""

from __future__ import annotations

__all__ = [
    "ACCEPTED", "CONCENTRATED", "EPSILON_TOO_HIGH", "NEGATIVE_CONTRIBUTION", "NOT_SUBMITTERS", "NO_IMPROVEMENT",
    "OUTLIER_NORM", "REASONS", "REFUNDED_CODES", "STRUCTURE", "SUBGROUP_REGRESSION", "UNREADABLE",
]

#: ``reason_code`` of an accepted update.
ACCEPTED = 0
STRUCTURE, NO_IMPROVEMENT, SUBGROUP_REGRESSION, OUTLIER_NORM, UNREADABLE = 1, 2, 3, 4, 5
NOT_SUBMITTERS, EPSILON_TOO_HIGH, NEGATIVE_CONTRIBUTION, CONCENTRATED = 6, 7, 8, 9

#: Human text of every rejection code (the codes the owner's settlement records), as `mine status` shows it.
REASONS: dict[int, str] = {
    STRUCTURE: "malformed update (tensor names, shapes, dtype, NaN/Inf or size do not fit the model)",
    NO_IMPROVEMENT: "no improvement of the validation score",
    SUBGROUP_REGRESSION: "a validation subgroup got worse beyond the tolerance",
    OUTLIER_NORM: "update norm is an outlier among accepted updates",
    UNREADABLE: "update could not be decrypted, did not match its CID, or could not be parsed",
    NOT_SUBMITTERS: "not the submitter's update (the miner or bounty inside the ciphertext differ)",
    EPSILON_TOO_HIGH: "differential-privacy epsilon above the bounty's maximum (or trained without DP)",
    NEGATIVE_CONTRIBUTION: "negative contribution: leaving it out lowers the validation loss",
    CONCENTRATED: "concentrated on an input the clean validation data barely uses, beyond the DP noise (backdoor-like)",
}
#: Codes whose stake is returned (an honest update that simply did not help); all others forfeit.
REFUNDED_CODES = frozenset({NO_IMPROVEMENT})
