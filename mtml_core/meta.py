"""Meta-training, one import away: :func:`build_learner` picks the learner for a method, and the names callers use
are re-exported from where they live.

- :mod:`mtml_core.meta_config`: :class:`MetaConfig`, ``METHODS``, ``MODES``, :func:`model_config_for`.
- :mod:`mtml_core.meta_batch`: the meta-batch format (``Batch``) and :func:`validate_batch`.
- :mod:`mtml_core.objectives`: the per-task objectives of ANIL (eq. (2), (3)), AM (eq. (4), (5)) and P-AM (ELBO).
- :mod:`mtml_core.learner`: :class:`MetaLearner` (AM, P-AM, ANIL): the multi-task sum and the optimiser step.
- :mod:`mtml_core.maml`: :class:`MAMLLearner` (eq. (1)).
"""

from __future__ import annotations

from mtml_core.learner import MetaLearner
from mtml_core.maml import MAMLLearner
from mtml_core.meta_batch import Batch, Episodes, validate_batch
from mtml_core.meta_config import METHODS, MODES, MetaConfig, check_model, model_config_for
from mtml_core.model import MultiTaskModel


def build_learner(model: MultiTaskModel, cfg: MetaConfig) -> MetaLearner:
    """The learner for ``cfg.method``: :class:`MAMLLearner` for MAML, :class:`MetaLearner` otherwise."""
    return (MAMLLearner if cfg.method == "maml" else MetaLearner)(model, cfg)


__all__ = ["METHODS", "MODES", "Batch", "Episodes", "MAMLLearner", "MetaConfig", "MetaLearner", "build_learner",
           "check_model", "model_config_for", "validate_batch"]
