"""Decoding sequence outputs: CTC best path and prefix beam search, edit distance and LER."""

from .ctc import collapse, ctc_greedy_decode, ctc_prefix_beam_search, prefix_beam_search
from .edit_distance import edit_distance, label_error_rate

__all__ = ["collapse", "ctc_greedy_decode", "ctc_prefix_beam_search", "edit_distance",
           "label_error_rate", "prefix_beam_search"]
