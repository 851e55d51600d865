"""Model-merging math: one tensor at a time, equal to mergekit 0.1.5.

Every method here reproduces what ``mergekit-yaml`` 0.1.5 computes for one tensor of one output slice; the
implementation is aloekit's own, written from mergekit's documented and observed semantics (mergekit is LGPL;
none of its code is copied). ``tests/test_merge_methods.py`` checks parity against mergekit itself.

The entry point is :func:`merge_tensor`; :data:`METHODS` describes each method's parameters and their mergekit
0.1.5 defaults (``None`` marks a parameter mergekit requires). The math is also available as small pure functions
(:func:`linear`, :func:`task_arithmetic_family`, :func:`magnitude_prune`, :func:`magnitude_outliers_prune`,
:func:`dare_drop`, :func:`sign_consensus_mask`, :func:`slerp`, :func:`model_stock`).

Conventions shared by all methods, as in mergekit 0.1.5:

* **Inputs of a merge.** A config's ``models:`` in YAML order; when ``base_model`` is set but not listed in
  ``models:``, mergekit's planner appends it as the *last* input (without per-model parameters). Methods that
  need a base (task arithmetic family, slerp, model_stock) treat that input as the base wherever it sits;
  ``linear`` ignores the notion of a base and merges it as one more input.
* **The base's own parameters** (``weight``, ``density``, ... written under the base's entry in ``models:``) are
  ignored by the methods that need a base: mergekit does not even resolve them, so a base without ``weight`` is
  fine. ``linear`` does use the base's ``weight``.
* **Compute dtype.** Always float32 here. mergekit 0.1.5 computes ``linear`` and ``slerp`` in float32 (float64
  for float64 inputs) but the task arithmetic family and ``model_stock`` in the inputs' promoted dtype, so those
  agree with mergekit exactly when the config says ``dtype: float32`` (or the checkpoints are float32); on bf16
  inputs mergekit's own arithmetic rounds to bf16 at every step and ours does not.
* **Coefficients** (weights, ``t``) are rounded to float32 before use, as mergekit packs them into tensors of the
  compute dtype; ``density`` and ``gamma`` are used as Python floats where mergekit does (counts of kept entries).
* **Randomness.** DARE draws its Bernoulli masks from the ``torch.Generator`` passed to :func:`merge_tensor`, one
  ``torch.bernoulli`` call per non-base model in input order, over a float32 tensor filled with ``density`` —
  the same draw mergekit makes from torch's *global* generator. So a generator seeded like mergekit's global
  state at that tensor yields identical masks (the tests do exactly that), but a whole-model mergekit run
  cannot be matched bit for bit: mergekit seeds once (``--random-seed``) and the state at each tensor depends on
  its task execution order. Same generator state here -> same output, always.
"""

from aloekit.merge.methods.dispatch import merge_tensor
from aloekit.merge.methods.linear import linear
from aloekit.merge.methods.model_stock import model_stock
from aloekit.merge.methods.registry import METHODS, Method
from aloekit.merge.methods.slerp import slerp
from aloekit.merge.methods.sparsify import dare_drop, magnitude_outliers_prune, magnitude_prune, rescale_l1
from aloekit.merge.methods.task_arithmetic import sign_consensus_mask, task_arithmetic_family

__all__ = [
    "METHODS",
    "Method",
    "dare_drop",
    "linear",
    "magnitude_outliers_prune",
    "magnitude_prune",
    "merge_tensor",
    "model_stock",
    "rescale_l1",
    "sign_consensus_mask",
    "slerp",
    "task_arithmetic_family",
]
