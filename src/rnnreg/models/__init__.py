"""Language models built from rnnreg layers, and sampling from them."""

from .generate import generate
from .language_model import LMOutput, RNNLanguageModel
from .surprisal_lm import SurprisalState, SurprisalZoneoutLM

__all__ = ["LMOutput", "RNNLanguageModel", "SurprisalState", "SurprisalZoneoutLM", "generate"]
