"""Leakage of a weight update: the standard attacks an adversary who sees the update would run.

The adversary holds the public base model (manifest and weights) and one update ``delta = trained -
base`` produced by ``mine``'s training path. Three attacks, each a plain function over tensors:

* :func:`recover_labels` — last-layer label recovery (iDLG, Zhao et al. 2020; its set version as in
  Wainakh et al. 2022): a class present in the local data pushes its last-layer bias (and the
  non-negative ReLU activations' weight row) *up*, every absent class pushes it down, so the classes
  whose bias moved up are the label set, and at one row the largest is the label.
* :func:`invert_update` — gradient inversion, *Inverting Gradients* (Geiping et al. 2020): optimise
  dummy inputs so the update they would produce matches the observed one under cosine distance,
  plus a total-variation prior for images, inputs kept inside the data's value box. The multi-step
  local update is treated as a pseudo-gradient; for Adam, whose steps are close to the sign of the
  gradient, the dummy gradient passes through a soft sign first (see :func:`invert_update`).
* :func:`invert_first_layer` — the analytic attack on a fully connected first layer (Phong et al.
  2017): at one row, the first layer's weight update divided by its bias update is the row itself
  (plain SGD), or its sign pattern (Adam).
* :func:`membership_scores` — membership inference from the loss drop (Yeom et al. 2018 against the
  update): rows the update was trained on lose more loss from base to updated model than rows it
  was not. :func:`auc` turns scores into an AUC, and :func:`dp_auc_bound` gives the largest AUC an
  (ε, δ)-DP training run allows (every ROC point obeys TPR ≤ e^ε·FPR + δ and its mirror).

:func:`check_update` runs all of them against the miner's own update before it leaves the mine
(``mine privacy check``) and gives each a verdict.

The measures — :func:`psnr`, :func:`ssim`, :func:`match_reconstructions`, :func:`reidentified`,
:func:`class_mean_baseline` — compare reconstructions to the true rows the way the literature
reports them. :func:`local_update` produces an update the way ``mine train`` does, for the bench
and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mine.dp import DPRecord, DPSettings, train_dp
from mine.errors import ValidationError
from mine.model import Manifest, build_model, prepare_inputs, prepare_targets
from mine.train import train

__all__ = [
    "CONFIDENT_LABEL", "Finding", "LabelRecovery", "auc", "check_update", "class_mean_baseline",
    "dp_auc_bound", "image_shape", "invert_first_layer", "invert_update", "label_confidence",
    "label_set_scores", "local_update", "match_reconstructions", "membership_scores", "psnr",
    "recover_labels", "reidentified", "ssim",
]

State = Mapping[str, torch.Tensor]


# --------------------------------------------------------------------------------------------
# Producing an update the way `mine train` does
# --------------------------------------------------------------------------------------------


def local_update(manifest: Manifest, base: State, X: np.ndarray, y: np.ndarray, *, seed: int = 0,
                 dp: DPSettings | None = None, noise_seed: int | None = None
                 ) -> tuple[dict[str, torch.Tensor], DPRecord | None]:
    """``(delta, dp_record)``: train a copy of ``base`` on ``(X, y)`` the way ``mine train`` does.

    ``dp`` None is plain training (:func:`mine.train.train`, as ``mine train --no-dp``; the record
    is None); otherwise DP-SGD (:func:`mine.dp.train_dp`) with those settings, whose record carries
    the (ε, δ). ``noise_seed`` makes the DP noise repeatable (tests and benchmarks only).
    """
    model = build_model(manifest)
    model.load_state_dict(dict(base))
    record: DPRecord | None = None
    if dp is None:
        train(model, X, y, manifest, seed=seed)
    else:
        record = train_dp(model, X, y, manifest, dp, seed=seed, noise_seed=noise_seed).record
    trained = model.state_dict()
    return {k: (trained[k].detach() - base[k]).clone() for k in base}, record


# --------------------------------------------------------------------------------------------
# Label recovery
# --------------------------------------------------------------------------------------------


def _last_layer(delta: State) -> tuple[torch.Tensor, torch.Tensor | None]:
    weights = [k for k in delta if k.endswith(".weight") and delta[k].ndim == 2]
    if not weights:
        raise ValidationError("the update has no linear layer; label recovery needs a classifier")
    w = weights[-1]
    b = w[: -len("weight")] + "bias"
    return delta[w], delta.get(b)


def label_set_scores(delta: State) -> np.ndarray:
    """Per-class evidence of presence: the last-layer bias update (or, without a bias, the weight
    row's sum). Positive means the class was in the local data."""
    w, b = _last_layer(delta)
    scores = b if b is not None else w.sum(dim=1)
    return scores.detach().double().cpu().numpy()


def label_confidence(delta: State) -> float:
    """How far the top class's score stands out: ``(top - mean(others)) / std(others)``.

    An attacker trusts a single-label guess only when this is large: a clean update gives tens to
    hundreds (every absent class moves by about the same amount), DP noise gives about 1-4.
    """
    s = label_set_scores(delta)
    k = int(np.argmax(s))
    others = np.delete(s, k)
    return float((s[k] - others.mean()) / (others.std() + 1e-12)) if len(others) > 1 else math.inf


#: :func:`label_confidence` above which a single-label guess counts as exposed (see the bench).
CONFIDENT_LABEL = 5.0


def recover_labels(delta: State, n: int | None = None) -> np.ndarray:
    """The label set the update reveals: classes whose score (:func:`label_set_scores`) is > 0.

    With ``n == 1`` the single class with the largest score. Never empty: if no class moved up,
    the largest one.
    """
    s = label_set_scores(delta)
    if n == 1 or not np.any(s > 0):
        return np.array([int(np.argmax(s))])
    return np.flatnonzero(s > 0)


@dataclass(frozen=True)
class LabelRecovery:
    """Label-set recovery measured against the truth; ``chance_precision`` is the precision of a
    random guess (the share of classes present), ``exact`` whether the sets are equal."""

    predicted: tuple[int, ...]
    truth: tuple[int, ...]
    precision: float
    recall: float
    exact: bool
    chance_precision: float

    @classmethod
    def measure(cls, predicted: Sequence[int], truth: Sequence[int], num_classes: int) -> LabelRecovery:
        p, t = set(int(c) for c in predicted), set(int(c) for c in truth)
        hits = len(p & t)
        return cls(tuple(sorted(p)), tuple(sorted(t)), hits / len(p) if p else 0.0, hits / len(t) if t else 0.0,
                   p == t, len(t) / num_classes)


# --------------------------------------------------------------------------------------------
# Gradient inversion
# --------------------------------------------------------------------------------------------


def _total_variation(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    img = x.reshape(-1, *shape)
    return (img[:, 1:, :] - img[:, :-1, :]).abs().mean() + (img[:, :, 1:] - img[:, :, :-1]).abs().mean()


def invert_first_layer(manifest: Manifest, delta: State, X_public: np.ndarray, *, optimizer: str | None = None
                       ) -> np.ndarray:
    """Analytic reconstruction of a single row from the first linear layer (Phong et al. 2017).

    For one row ``x`` the first layer's gradient is ``δ·xᵀ`` (weights) and ``δ`` (bias), so any
    hidden unit ``j`` with ``δ_j ≠ 0`` gives ``x = ∂W_j / ∂b_j`` in the manifest's normalised units.
    Plain SGD steps keep that ratio, so the row comes back exactly. Adam's steps are close to the
    sign of the gradient and keep only ``sign(x)`` — then each feature is guessed as the public mean
    of the values on that side of the normalisation mean (``X_public``: rows of the same kind).
    ``optimizer`` is the one that trained the update (default: the manifest's; a DP update says
    its own). Returns one row in raw units.
    """
    keys = [k for k in delta if k.endswith(".weight") and delta[k].ndim == 2]
    if not keys:
        raise ValidationError("the update has no linear layer")
    w = delta[keys[0]].detach().double().numpy()
    b_key = keys[0][: -len("weight")] + "bias"
    if b_key not in delta:
        raise ValidationError("the first layer has no bias; the analytic attack needs one")
    b = delta[b_key].detach().double().numpy()
    j = int(np.argmax(np.abs(b)))
    d = len(manifest.features)
    mean = np.asarray(manifest.normalization["mean"] if manifest.normalization else np.zeros(d), np.float64)
    std = np.asarray(manifest.normalization["std"] if manifest.normalization else np.ones(d), np.float64)
    if b[j] == 0:
        return mean.copy()
    if (optimizer or str(manifest.training.get("optimizer", "sgd"))) != "adam":
        return mean + std * (w[j] / b[j])
    sign = np.sign(w[j]) * np.sign(b[j])
    pub = np.asarray(X_public, np.float64)
    above = pub > mean
    count_hi, count_lo = above.sum(0), (~above).sum(0)
    hi = np.where(count_hi > 0, (pub * above).sum(0) / np.maximum(count_hi, 1), mean)
    lo = np.where(count_lo > 0, (pub * ~above).sum(0) / np.maximum(count_lo, 1), mean)
    return np.where(sign > 0, hi, np.where(sign < 0, lo, mean))


def invert_update(manifest: Manifest, base: State, delta: State, labels: Sequence[int], *,
                  bounds: tuple[float, float], image_shape: tuple[int, int] | None = None,
                  steps: int = 300, lr: float = 0.1, tv: float = 0.05, restarts: int = 2,
                  seed: int = 0, tau: float = 1.0, init: np.ndarray | None = None,
                  optimizer: str | None = None) -> np.ndarray:
    """Reconstruct the rows behind ``delta``: one dummy row per entry of ``labels`` (raw units).

    Inverting Gradients: minimise ``1 - cos(u(x), -delta) + tv·TV(x)`` over dummy rows ``x`` kept
    inside ``bounds`` (a sigmoid box, in raw feature units: e.g. 0..16 for the digits' pixels),
    where ``u(x)`` is the gradient of the manifest's loss at the base model over the dummy batch —
    the update of a multi-step local run points along the (pseudo-)gradient. When the manifest
    trains with Adam, whose early steps are ``lr·sign(gradient)`` per weight, ``u`` is the soft sign
    ``g / (|g| + τ)`` with τ the mean ``|g|`` of each tensor. ``image_shape`` turns on
    the total-variation prior (rows are images of that shape). ``restarts`` random initialisations
    are run and the one with the lowest objective kept. ``init`` (one row, raw units) starts every
    dummy there (plus a little noise) instead of mid-box: the public mean row is the attacker's
    natural prior and makes the attack much stronger (digits, n = 8: 18 dB instead of 9). ``tau``
    scales the soft sign's τ. ``optimizer`` is the one that trained the update (default: the
    manifest's; DP training names its own). Deterministic in ``seed``.
    """
    if manifest.task != "classification":
        raise ValidationError("gradient inversion here targets classifiers (labels drive the dummy loss)")
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    n, d = len(labels_t), len(manifest.features)
    if n == 0:
        raise ValidationError("need at least one label to invert")
    lo, hi = (float(bounds[0]), float(bounds[1]))
    model = build_model(manifest)
    model.load_state_dict(dict(base))
    model.eval()
    params = [p for _, p in model.named_parameters()]
    names = [k for k, _ in model.named_parameters()]
    target = [-delta[k].detach().float() for k in names]
    t_norm = torch.sqrt(sum((t * t).sum() for t in target))
    adam = (optimizer or str(manifest.training.get("optimizer", "sgd"))) == "adam"
    if manifest.normalization is not None:
        mean = torch.tensor(manifest.normalization["mean"], dtype=torch.float32)
        std = torch.tensor(manifest.normalization["std"], dtype=torch.float32)
    else:
        mean, std = torch.zeros(d), torch.ones(d)

    def objective(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = lo + (hi - lo) * torch.sigmoid(z)
        out = model((x - mean) / std)
        grads = torch.autograd.grad(F.cross_entropy(out, labels_t), params, create_graph=True)
        if adam:
            grads = tuple(g / (tau * g.abs().mean().detach() + g.abs() + 1e-12) for g in grads)
        dot = sum((g * t).sum() for g, t in zip(grads, target))
        g_norm = torch.sqrt(sum((g * g).sum() for g in grads) + 1e-20)
        loss = 1 - dot / (g_norm * t_norm + 1e-20)
        if image_shape is not None and tv > 0:
            loss = loss + tv * _total_variation((x - lo) / (hi - lo), image_shape)
        return loss, x

    gen = torch.Generator().manual_seed(int(seed))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small model: more threads only spin against each other
    try:
        _, best_x = _descend(objective, gen, n, d, lo, hi, init, steps, lr, restarts)
    finally:
        torch.set_num_threads(threads)
    return best_x.numpy()


def _descend(objective: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator, n: int, d: int, lo: float, hi: float,
             init: np.ndarray | None, steps: int, lr: float, restarts: int) -> tuple[float, torch.Tensor]:
    best_loss, best_x = math.inf, None
    for _ in range(max(1, restarts)):
        z = 0.5 * torch.randn(n, d, generator=gen)
        if init is not None:
            frac = torch.as_tensor((np.asarray(init, np.float64) - lo) / (hi - lo), dtype=torch.float32)
            z = z + torch.logit(frac.clamp(0.02, 0.98)).expand(n, d)
        z = z.requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss, _ = objective(z)
            loss.backward()
            opt.step()
            sched.step()
        final, x = objective(z)
        if float(final.detach()) < best_loss:
            best_loss, best_x = float(final.detach()), x.detach().clone()
    assert best_x is not None
    return best_loss, best_x


# --------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB of one row against another (``inf`` when identical)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, shape: tuple[int, int]) -> float:
    """Structural similarity (Wang et al. 2004) of two images: Gaussian window σ = 1.5 cut at 9×9,
    reflected edges, K1 = 0.01, K2 = 0.03, population statistics, averaged over every pixel (no
    border crop: digits are only 8×8, smaller than the window skimage would insist on)."""
    from scipy.ndimage import gaussian_filter

    x = np.asarray(a, np.float64).reshape(shape)
    y = np.asarray(b, np.float64).reshape(shape)

    def blur(v: np.ndarray) -> np.ndarray:
        return gaussian_filter(v, sigma=1.5, truncate=4.0 / 1.5, mode="reflect")

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def match_reconstructions(recon: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true row, the index of its reconstruction: the assignment (Hungarian) that
    minimises the total squared error."""
    from scipy.optimize import linear_sum_assignment

    cost = ((np.asarray(truth, np.float64)[:, None, :] - np.asarray(recon, np.float64)[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(len(truth), dtype=np.int64)
    out[rows] = cols
    return out


def class_mean_baseline(X_public: np.ndarray, y_public: np.ndarray, y_truth: np.ndarray) -> np.ndarray:
    """What an attacker who only knew the labels would guess: the mean public row of each label."""
    X_public, y_public = np.asarray(X_public, np.float64), np.asarray(y_public)
    means = {int(c): X_public[y_public == c].mean(axis=0) for c in np.unique(y_public)}
    return np.stack([means[int(c)] for c in np.asarray(y_truth)])


def reidentified(recon: np.ndarray, population: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Per reconstruction, whether its nearest neighbour (L2) in ``population`` is one of the rows
    in ``members`` (indices into ``population``). Chance is ``len(members) / len(population)``."""
    P = np.asarray(population, np.float64)
    d = ((np.asarray(recon, np.float64)[:, None, :] - P[None, :, :]) ** 2).sum(-1)
    return np.isin(d.argmin(axis=1), np.asarray(members))


# --------------------------------------------------------------------------------------------
# Membership inference
# --------------------------------------------------------------------------------------------


def _losses(manifest: Manifest, state: State, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    model = build_model(manifest)
    model.load_state_dict(dict(state))
    model.eval()
    with torch.inference_mode():
        out = model(prepare_inputs(manifest, X))
        t = prepare_targets(manifest, y)
        if manifest.task == "classification":
            loss = F.cross_entropy(out, t, reduction="none")
        else:
            loss = ((out[:, 0] - t) ** 2)
    return loss.double().numpy()


def membership_scores(manifest: Manifest, base: State, delta: State, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row, how much the update lowered its loss: ``loss(base) - loss(base + delta)``.

    Higher means more likely a member of the update's training data.
    """
    updated = {k: base[k] + delta[k] for k in base}
    return _losses(manifest, base, X, y) - _losses(manifest, updated, X, y)


def auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """Area under the ROC curve of scores (Mann–Whitney: P(member > non-member), ties count half)."""
    m, o = np.asarray(members, np.float64), np.asarray(nonmembers, np.float64)
    if len(m) == 0 or len(o) == 0:
        raise ValidationError("AUC needs at least one member and one non-member")
    order = np.concatenate([m, o])
    from scipy.stats import rankdata

    ranks = rankdata(order)
    return float((ranks[: len(m)].sum() - len(m) * (len(m) + 1) / 2) / (len(m) * len(o)))


def dp_auc_bound(epsilon: float, delta: float, *, group: int = 1) -> float:
    """The largest membership AUC an (ε, δ)-DP mechanism allows.

    Every attack's ROC point obeys TPR ≤ e^ε·FPR + δ and, mirrored, TPR ≤ 1 - e^-ε·(1 - δ - FPR);
    the AUC is the area under the least of these and 1. ``group`` k applies the bound to datasets
    that differ in k rows (group privacy: ε·k, δ·k·e^(ε(k-1))). Comparing a member's score with
    other rows' scores under the *same* update, as :func:`membership_scores` does, is the
    replace-one game: two add/remove steps, ``group=2``.
    """
    if not (epsilon >= 0 and 0 <= delta < 1):
        raise ValidationError(f"need epsilon >= 0 and 0 <= delta < 1, got {epsilon!r}, {delta!r}")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ValidationError(f"group must be a positive integer, got {group!r}")
    if math.isinf(epsilon):
        return 1.0
    eps = epsilon * group
    dlt = min(1.0, delta * group * math.exp(epsilon * (group - 1)))
    fpr = np.linspace(0.0, 1.0, 200_001)
    e = math.exp(eps)
    tpr = np.minimum.reduce([np.ones_like(fpr), e * fpr + dlt, 1 - (1 - dlt - fpr) / e])
    return float(np.trapezoid(np.clip(tpr, 0, 1), fpr))


# --------------------------------------------------------------------------------------------
# The miner's own check, before an update leaves the mine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One attack's outcome on the miner's own update: what it got, what chance is, and a verdict
    (``"exposed"``, ``"partial"``, ``"at chance"``, ``"within bound"`` or ``"not measured"``)."""

    attack: str
    result: str
    reference: str
    verdict: str


def image_shape(features: Sequence[str]) -> tuple[int, int] | None:
    """``(rows, cols)`` when the features are pixels named ``pixel_R_C`` (the digits' schema)."""
    cells = []
    for f in features:
        parts = f.split("_")
        if len(parts) != 3 or parts[0] != "pixel" or not (parts[1].isdigit() and parts[2].isdigit()):
            return None
        cells.append((int(parts[1]), int(parts[2])))
    rows, cols = max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1
    return (rows, cols) if rows * cols == len(cells) and cells == [(r, c) for r in range(rows) for c in range(cols)] else None


def _significant(hits: int, trials: int, p: float) -> bool:
    from scipy.stats import binomtest

    return trials > 0 and binomtest(hits, trials, min(max(p, 1e-12), 1.0), alternative="greater").pvalue <= 0.05


def check_update(manifest: Manifest, base: State, delta: State, X: np.ndarray, y: np.ndarray, *,
                 dp: DPRecord | None, X_ref: np.ndarray | None = None, y_ref: np.ndarray | None = None,
                 steps: int = 300, seed: int = 0, optimizer: str | None = None) -> list[Finding]:
    """Run every attack against the miner's own update (trained on ``(X, y)`` from ``base``).

    ``X_ref``/``y_ref`` are rows of the same kind the update was *not* trained on (a public copy
    of the data, or a held-out part): they are the re-identification population (with ``X``) and
    the membership non-members; without them those two attacks are not measured. ``dp`` is the
    update's DP record (None: trained without DP); ``optimizer`` the optimizer that trained it
    (default: the manifest's).
    """
    if manifest.task != "classification":
        raise ValidationError("the leakage check covers classifiers (labels, images); this model is a regression")
    X, y = np.asarray(X, np.float32), np.asarray(y)
    n, num_classes = len(y), int(manifest.num_classes or 0)
    findings: list[Finding] = []
    predicted = recover_labels(delta, n)
    labels = LabelRecovery.measure(predicted, y, num_classes)
    if n == 1:
        z = label_confidence(delta)
        verdict = "exposed" if labels.exact and z > CONFIDENT_LABEL else "at chance"
        findings.append(Finding("label (last-layer bias)", ("recovered" if labels.exact else "wrong") + f", z = {z:.1f}",
                                f"chance {1 / num_classes:.0%}; confident if z > {CONFIDENT_LABEL:g}", verdict))
    else:
        hits = len(set(labels.predicted) & set(labels.truth))
        verdict = ("exposed" if labels.exact else "partial") if _significant(hits, len(labels.predicted),
                                                                              labels.chance_precision) else "at chance"
        findings.append(Finding("label set (last-layer bias)",
                                f"precision {labels.precision:.2f}, recall {labels.recall:.2f}",
                                f"chance precision {labels.chance_precision:.2f}", verdict))
    pool = X if X_ref is None else np.concatenate([X, np.asarray(X_ref, np.float32)])
    y_pool = y if y_ref is None else np.concatenate([y, np.asarray(y_ref)])
    lo, hi = float(pool.min()), float(pool.max())
    shape = image_shape(list(manifest.features))
    guess = predicted if n == 1 else np.resize(predicted, n)
    recon = [invert_update(manifest, base, delta, guess, bounds=(lo, hi), image_shape=shape, steps=steps,
                           restarts=1, seed=seed, init=pool.mean(axis=0), optimizer=optimizer)]
    if n == 1:
        recon.append(invert_first_layer(manifest, delta, pool, optimizer=optimizer)[None])
    baseline = class_mean_baseline(pool, y_pool, y)
    rng = hi - lo if hi > lo else 1.0
    base_psnr = float(np.mean([psnr(baseline[i], X[i], rng) for i in range(n)]))
    best = max(float(np.mean([psnr(r[m], X[i], rng) for i, m in enumerate(match_reconstructions(r, X))]))
               for r in recon)
    result, reference = f"PSNR {best:.1f} dB", f"class-mean image {base_psnr:.1f} dB"
    if shape is not None:
        best_ssim = max(float(np.mean([ssim(r[m], X[i], rng, shape) for i, m in enumerate(match_reconstructions(r, X))]))
                        for r in recon)
        base_ssim = float(np.mean([ssim(baseline[i], X[i], rng, shape) for i in range(n)]))
        result += f", SSIM {best_ssim:.2f}"
        reference += f", SSIM {base_ssim:.2f}"
    findings.append(Finding("reconstruction (inverting gradients" + (", first layer)" if n == 1 else ")"),
                            result, reference, "exposed" if best > base_psnr else "at chance"))
    if X_ref is None or y_ref is None or len(X_ref) == 0:
        findings.append(Finding("re-identification", "-", "needs reference rows", "not measured"))
        findings.append(Finding("membership (loss drop)", "-", "needs reference rows", "not measured"))
        return findings
    members = np.arange(n)
    hits = int(sum(reidentified(r, pool, members).sum() for r in recon))
    tries = sum(len(r) for r in recon)
    chance = n / len(pool)
    findings.append(Finding("re-identification (nearest row)", f"{hits} of {tries}",
                            f"chance {chance:.2%} of {len(pool)} rows",
                            "exposed" if _significant(hits, tries, chance) else "at chance"))
    score = auc(membership_scores(manifest, base, delta, X, y),
                membership_scores(manifest, base, delta, np.asarray(X_ref, np.float32), np.asarray(y_ref)))
    if dp is None:
        findings.append(Finding("membership (loss drop)", f"AUC {score:.2f}", "no DP: no bound (chance 0.50)",
                                "exposed" if score > 0.6 else "at chance"))
    else:
        bound = dp_auc_bound(dp.epsilon, dp.delta, group=2)  # this comparison is the replace-one game
        add_remove = dp_auc_bound(dp.epsilon, dp.delta)
        findings.append(Finding("membership (loss drop)", f"AUC {score:.2f}",
                                f"ε = {dp.epsilon:.2f} allows {bound:.3f} (replace-one; add/remove "
                                f"{add_remove:.3f}); chance 0.50", "within bound" if score <= bound else "exposed"))
    return findings
