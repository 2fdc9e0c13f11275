"""Language-modelling data: corpora and vocabularies (streamed from their files, with a
memory-mapped cache of the ids of large corpora), batching, variable-length BPTT, and the
registry of named datasets with a verified download cache."""

from .batching import batchify, get_batch, shard_columns
from .bptt import BPTTSchedule
from .corpus import Corpus, build_corpus
from .datasets import load_dataset
from .download import default_cache_dir, fetch
from .errors import DataError, DownloadError
from .file_corpus import load_corpus
from .folder import load_text_folder
from .registry import DATASET_NAMES, REGISTRY, DataFile, DatasetSpec, describe
from .vocab import EOS, UNK, Vocabulary

__all__ = ["BPTTSchedule", "Corpus", "DATASET_NAMES", "DataError", "DataFile", "DatasetSpec",
           "DownloadError", "EOS", "REGISTRY", "UNK", "Vocabulary", "batchify", "build_corpus",
           "default_cache_dir", "describe", "fetch", "get_batch", "load_corpus", "load_dataset",
           "load_text_folder", "shard_columns"]
