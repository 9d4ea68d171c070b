"""mine.eager: training and scoring in a fresh process load neither TorchDynamo nor TorchInductor's
configuration, with the same arithmetic and flags as torch's own paths."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mine.eager import optimizer_step

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout.splitlines()


def test_training_and_scoring_do_not_load_the_compiler() -> None:
    out = _run("""
        import sys
        from mine import datasets, model, templates, train, evaluate, dp
        data = datasets.load("digits")
        manifest = templates.default_manifest("digits")
        net = model.build_model(manifest, seed=0)
        X, y = data.X[:200], data.y[:200]
        train.train(net, X, y, manifest, epochs=1, seed=0)
        dp.train_dp(net, X, y, manifest, dp.DPSettings(target_epsilon=4.0, steps=2), seed=0)
        evaluate.evaluate(net, X, y, manifest)
        print(sorted(m for m in ("torch._dynamo", "torch._inductor.config", "sympy") if m in sys.modules))
    """)
    assert out == ["[]"]


def test_deterministic_flag_follows_torch() -> None:
    """Inside a scoring block the mode is on and restored after; once TorchInductor's config is loaded
    (someone compiles), its flag follows the mode as with torch's own function."""
    out = _run("""
        import sys, torch
        from mine.evaluate import deterministic
        with deterministic():
            inside = torch.are_deterministic_algorithms_enabled()
        print(inside, torch.are_deterministic_algorithms_enabled(), "torch._inductor.config" in sys.modules)
        import torch._inductor.config as cfg
        torch.use_deterministic_algorithms(True, warn_only=True)
        with deterministic():
            flags = (cfg.deterministic, torch.is_deterministic_algorithms_warn_only_enabled())
        print(flags, cfg.deterministic, torch.is_deterministic_algorithms_warn_only_enabled())
    """)
    assert out == ["True False False", "(True, False) True True"]


@pytest.mark.parametrize("name,fused", [("sgd", False), ("sgd", True), ("adam", False), ("adam", True)])
def test_optimizer_step_is_torchs_step(name: str, fused: bool) -> None:
    """The same weights and optimizer state, bit for bit, as ``optimizer.step()`` over several steps."""
    cls = torch.optim.SGD if name == "sgd" else torch.optim.Adam
    gen = torch.Generator().manual_seed(3)
    init = [torch.randn(5, 4, generator=gen), torch.randn(4, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) for p in init] for _ in range(4)]
    runs = []
    for ours in (False, True):
        params = [torch.nn.Parameter(p.clone()) for p in init]
        opt = cls(params, lr=0.05, fused=fused)
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = gi.clone()
            optimizer_step(opt) if ours else opt.step()
        state = [{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state[p].items()} for p in params]
        runs.append(([p.detach().clone() for p in params], state))
    (w0, s0), (w1, s1) = runs
    assert all(torch.equal(a, b) for a, b in zip(w0, w1))
    assert not all(torch.equal(a, b) for a, b in zip(w0, init))  # the steps moved the weights
    for a, b in zip(s0, s1):
        assert a.keys() == b.keys() and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)


def test_optimizer_step_keeps_step_hooks() -> None:
    """An optimizer with a step hook goes through torch's step, so the hook runs."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    seen = []
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append(1))
    p.grad = torch.ones(3)
    optimizer_step(opt)
    assert seen == [1] and torch.allclose(p.detach(), torch.full((3,), 0.9))
