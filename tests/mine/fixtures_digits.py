"""The digits setting both policy test modules judge updates in: split, manifest and miners' shards."""

from __future__ import annotations

import dataclasses
from typing import Any

from mine import datasets as D
from mine import model as M


def digits_policy_setting() -> tuple[Any, M.Manifest, list[Any]]:
    """(train/validation split, the digits manifest normalised on the training rows with 3 local
    epochs, 6 Dirichlet shards of at least 50 rows)."""
    ds = D.load("digits")
    s = D.train_validation_split(ds.X, ds.y, validation_fraction=0.2, seed=0)
    manifest = M.with_normalization(M.default_manifest("digits"), s.X_train)
    manifest = dataclasses.replace(manifest, training={**manifest.training, "epochs": 3})
    shards = D.dirichlet_shards(s.y_train, 6, alpha=100.0, seed=1, min_size=50)
    return s, manifest, shards
