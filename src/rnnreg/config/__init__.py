"""The typed configuration: schema (frozen dataclasses) and TOML loading with overrides."""

from .loading import (apply_overrides, config_from_dict, config_to_dict, dump_config, load_config,
                      preset_names, preset_text)
from .schema import (Config, ConfigError, DataConfig, ExpectConfig, ModelConfig, OptimConfig,
                     PenaltyConfig, Reference, TaskConfig, TrainConfig)

__all__ = ["Config", "ConfigError", "DataConfig", "ExpectConfig", "ModelConfig", "OptimConfig",
           "PenaltyConfig", "Reference", "TaskConfig", "TrainConfig", "apply_overrides", "config_from_dict",
           "config_to_dict", "dump_config", "load_config", "preset_names", "preset_text"]
