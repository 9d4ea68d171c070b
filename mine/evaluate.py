"""Validation scoring, reproducible bit for bit (an auditor holding the validation set replays it).

How determinism is obtained:

* inputs are normalised in float32 exactly as in training (:func:`mine.model.prepare_inputs`);
* the forward pass runs in eval mode under ``torch.inference_mode`` with
  ``torch.use_deterministic_algorithms(True)`` and **one** intra-op thread (both restored
  afterwards), over fixed-size chunks of rows, so the result does not depend on the caller's
  thread settings or batch layout;
* accuracy is an exact ratio of integers; MSE and cross-entropy (per row in float64, from the
  float32 logits) are summed in float64 with numpy's pairwise sum;
* nothing is random.

The same torch build on the same CPU family gives identical scores; different BLAS kernels (e.g.
AVX2 vs AVX-512) may differ in the last float32 bit of a logit, which can only matter for exact
ties.

On chain a score is a ``uint64`` fixed-point number with scale 1e6 (:data:`SCORE_SCALE`); see
:func:`score_to_chain`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np
import torch

from mine.eager import use_deterministic_algorithms
from mine.errors import ValidationError
from mine.model import Manifest, prepare_inputs, prepare_targets
from mine.scores import SCORE_SCALE, score_from_chain, score_to_chain  # re-exported

__all__ = ["EvalResult", "SCORE_SCALE", "deterministic", "evaluate", "predict", "score_from_chain",
           "score_to_chain"]

#: Rows per forward pass during evaluation (fixed per manifest, so results do not depend on memory
#: settings; smaller for models with large activations, see ``Manifest.eval_chunk_rows``).
CHUNK_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """A validation score, per-subgroup scores (keys are ``str`` of the group value) and the row count."""

    score: float
    per_group: dict[str, float]
    n: int


@contextlib.contextmanager
def deterministic(threads: int = 1) -> Iterator[None]:
    """Run torch with deterministic algorithms and a fixed thread count; restore both on exit."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    use_deterministic_algorithms(True)
    try:
        yield
    finally:
        use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


def predict(model: torch.nn.Module, X: np.ndarray | torch.Tensor, manifest: Manifest, *,
            normalized: bool = False) -> torch.Tensor:
    """Raw model outputs (logits or regression values, float32) for ``X``, deterministically.

    ``X`` is in raw units unless ``normalized=True`` (then it must already be a prepared tensor).
    """
    xt = X if normalized and isinstance(X, torch.Tensor) else prepare_inputs(manifest, X)
    was_training = model.training
    model.eval()
    try:
        with deterministic(), torch.inference_mode():
            rows = min(CHUNK_ROWS, manifest.eval_chunk_rows)
            outs = [model(xt[i:i + rows]) for i in range(0, xt.shape[0], rows)]
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty((0, manifest.output_width), dtype=torch.float32)
    return torch.cat(outs).to(torch.float32)


def _group_key(v: object) -> str:
    if isinstance(v, (np.floating, float)) and float(v).is_integer():
        return str(int(v))
    return str(v.item() if isinstance(v, np.generic) else v)


def _f1(pred: np.ndarray, labels: np.ndarray, c: object) -> float:
    """Class ``c``'s F1, ``2 TP / (2 TP + FP + FN)``, as an exact ratio of integers (``c`` has rows)."""
    true_pos = int(np.count_nonzero((pred == c) & (labels == c)))
    wrong = int(np.count_nonzero((pred == c) != (labels == c)))  # false positives + false negatives
    return 2 * true_pos / (2 * true_pos + wrong)


def evaluate(model: torch.nn.Module, X: np.ndarray, y: np.ndarray, manifest: Manifest, *,
             groups: np.ndarray | None = None, class_f1: bool = True) -> EvalResult:
    """Score ``model`` on ``(X, y)`` with the manifest's metric, overall and per subgroup.

    Subgroups are the classes present in ``y`` for classification when ``groups`` is ``None``
    (none for regression), or the distinct values of ``groups`` (one entry per row). Accuracy is
    ``correct / n`` (ties in the logits go to the lowest class index); cross-entropy is the mean of
    ``-log softmax(logits)[label]`` (in float64); MSE is the float64 mean of squared float32 errors.
    A group's score is the metric on its rows, except for a class under accuracy: that is the class's
    F1, ``2 TP / (2 TP + FP + FN)``. Its accuracy alone (the recall) is highest for a model that calls
    every row that class, as a random initial model often nearly does; every honest update then
    "hurts" that class, and a bounty could never accept one. F1 also counts the rows wrongly called
    that class, so it rises as the model learns, and a label flip still lowers it for both classes.
    ``class_f1=False`` gives the recall (how bounties posted before replay, see
    :class:`mine.round_policy.RoundPolicy`'s ``class_f1``).
    Raises ``VaultError``/``ValidationError`` on data that does not fit.
    """
    yt = prepare_targets(manifest, y)
    n = int(yt.shape[0])
    if n == 0:
        raise ValidationError("cannot evaluate on an empty validation set")
    out = predict(model, X, manifest)
    if out.shape[0] != n:
        raise ValidationError(f"X has {out.shape[0]} rows but y has {n}")

    use_f1 = False  # for accuracy with the classes as subgroups
    if manifest.task == "classification" and manifest.metric == "cross_entropy":
        labels = yt.numpy()
        logp = torch.log_softmax(out.to(torch.float64), dim=1)
        per_row = (-logp.gather(1, yt.view(-1, 1).to(torch.int64))[:, 0]).numpy()

        def score_of(mask: np.ndarray) -> float:
            return float(np.sum(per_row[mask])) / int(np.count_nonzero(mask))

        default_groups = labels
    elif manifest.task == "classification":
        pred = out.argmax(dim=1).numpy()
        labels = yt.numpy()
        per_row = (pred == labels).astype(np.float64)

        def score_of(mask: np.ndarray) -> float:
            return int(np.count_nonzero(per_row[mask])) / int(np.count_nonzero(mask))

        default_groups = labels
        use_f1 = class_f1 and groups is None
    else:
        err = (out[:, 0] - yt).numpy().astype(np.float64)
        per_row = np.square(err)

        def score_of(mask: np.ndarray) -> float:
            return float(np.sum(per_row[mask])) / int(np.count_nonzero(mask))

        default_groups = None

    all_rows = np.ones(n, dtype=bool)
    score = score_of(all_rows)
    g = default_groups if groups is None else np.asarray(groups)
    per_group: dict[str, float] = {}
    if g is not None:
        if g.ndim != 1 or len(g) != n:
            raise ValidationError(f"groups must be a 1-D array with one entry per row ({n}), got shape {g.shape}")
        for value in np.unique(g):
            per_group[_group_key(value)] = _f1(pred, labels, value) if use_f1 else score_of(g == value)
    return EvalResult(score=score, per_group=per_group, n=n)
