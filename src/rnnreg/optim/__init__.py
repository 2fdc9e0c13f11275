"""Optimization: NT-ASGD and its non-monotone trigger, optimizer/schedule builders, learning-rate
schedules, early stopping, and evaluation with averaged weights."""

from __future__ import annotations

from .averaging import averaged_parameters
from .build import OPTIMIZERS, build_optimizer
from .early_stopping import EarlyStopping
from .nt_asgd import NTASGD
from .schedules import (SCHEDULES, ConstantSchedule, PlateauSchedule, ZarembaDecay,
                        build_scheduler)
from .triggers import TRIGGER_RULES, NonMonotoneTrigger

__all__ = ["NTASGD", "OPTIMIZERS", "SCHEDULES", "TRIGGER_RULES", "ConstantSchedule",
           "EarlyStopping", "NonMonotoneTrigger", "PlateauSchedule", "ZarembaDecay",
           "averaged_parameters", "build_optimizer", "build_scheduler"]
