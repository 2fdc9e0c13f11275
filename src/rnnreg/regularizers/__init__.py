"""Regularizers for recurrent networks: dropout variants, zoneout, weight drop, weight noise, MC dropout.

Every regularizer here is exactly the identity when its rate is 0 or the module is in eval mode,
unless MC dropout is switched on (``mc_dropout=True``, see :mod:`.monte_carlo`).
"""

from .embedding_dropout import Embedding, embedding_dropout
from .locked_dropout import LockedDropout, locked_dropout
from .monte_carlo import is_stochastic, mc_dropout, mc_predict, set_mc_dropout
from .step_noise import StepNoise, draw_step_noise, freeze_padded, zoneout_weights
from .surprisal_zoneout import surprisal, surprisal_keep
from .weight_drop import WeightDrop, drop_weight
from .weight_noise import WeightNoise, add_weight_noise

__all__ = [
    "Embedding",
    "LockedDropout",
    "StepNoise",
    "WeightDrop",
    "WeightNoise",
    "add_weight_noise",
    "draw_step_noise",
    "drop_weight",
    "embedding_dropout",
    "freeze_padded",
    "is_stochastic",
    "locked_dropout",
    "mc_dropout",
    "mc_predict",
    "set_mc_dropout",
    "surprisal",
    "surprisal_keep",
    "zoneout_weights",
]
