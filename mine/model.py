"""Declarative models: a JSON manifest, a whitelisted ``torch.nn.Sequential``, safetensors weights.

This module is the stable face of the model code; the code lives in one module per concern:

* :mod:`mine.manifest` — the :class:`Manifest` schema, its limits and canonical JSON;
* :mod:`mine.layers` — the layer whitelist, shape propagation and cost bounds, building the model;
* :mod:`mine.inputs` — from a dataset's arrays to the model's input and target tensors;
* :mod:`mine.weights` — weights as safetensors, read strictly against a manifest;
* :mod:`mine.updates` — update deltas: making, reading, norm, applying;
* :mod:`mine.templates` — standard manifests, templates for any dataset, import from torch.

Nothing here executes or unpickles bytes that came from outside.

Conventions
-----------
* A *state* is a ``dict[str, torch.Tensor]`` with exactly the parameter names of
  ``build_model(manifest).state_dict()`` (``"0.weight"``, ``"0.bias"``, ...), all ``float32``.
* An *update* (a *delta*) is a state-shaped dict of ``trained - base``. On the wire it is a
  safetensors file whose string metadata carries ``base_version`` and what the protocol asks for.
* Inputs are normalised by the client, not by the model: ``x' = (x - mean) / std`` with the
  manifest's float32 statistics (see :func:`prepare_inputs`).
"""

from __future__ import annotations

from mine.errors import ValidationError, VaultError  # noqa: F401 - reachable as mine.model.X, as before the split
from mine.inputs import prepare_inputs, prepare_targets
from mine.layers import LAYERS, MAX_WIDTH, build_model, model_state, parameter_shapes
from mine.manifest import (DEFAULT_MAX_WEIGHT_BYTES, DEFAULT_TRAINING, LOSSES, MAX_FLOPS_PER_EXAMPLE, MAX_LAYERS,
                           MAX_MANIFEST_BYTES, MAX_NAME_CHARS, MAX_NORM_VALUE, MAX_TRAIN_MEMORY_BYTES,
                           MAX_WEIGHT_BYTES_CEILING, METRICS, MIN_STD, OPTIMIZERS, TASKS, Manifest)
from mine.templates import default_manifest, import_sequential, template_manifest, with_normalization
from mine.updates import apply_update, make_update, read_update, update_norm
from mine.weights import (MAX_HEADER_BYTES, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS,
                          UnreadableError, load_weights, model_from_bytes, read_metadata, state_to_bytes)

__all__ = [
    "DEFAULT_MAX_WEIGHT_BYTES",
    "DEFAULT_TRAINING",
    "LAYERS",
    "LOSSES",
    "MAX_FLOPS_PER_EXAMPLE",
    "MAX_HEADER_BYTES",
    "MAX_LAYERS",
    "MAX_MANIFEST_BYTES",
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_KEY_CHARS",
    "MAX_METADATA_VALUE_CHARS",
    "MAX_NAME_CHARS",
    "MAX_NORM_VALUE",
    "MAX_TRAIN_MEMORY_BYTES",
    "MAX_WEIGHT_BYTES_CEILING",
    "MAX_WIDTH",
    "METRICS",
    "MIN_STD",
    "OPTIMIZERS",
    "TASKS",
    "Manifest",
    "UnreadableError",
    "apply_update",
    "build_model",
    "default_manifest",
    "import_sequential",
    "load_weights",
    "make_update",
    "model_from_bytes",
    "model_state",
    "parameter_shapes",
    "prepare_inputs",
    "prepare_targets",
    "read_metadata",
    "read_update",
    "state_to_bytes",
    "template_manifest",
    "update_norm",
    "with_normalization",
]
