"""Training: ``build.py`` makes a run (model, optimiser and schedule, batches), ``losses.py``
the loss functions, ``objectives.py`` the losses by ``train.mode``, ``loop.py`` the loop around
the public ``train_step``, ``state.py`` checkpoints with their optimiser and RNG state,
``log.py`` the run's log."""

from ..errors import TrainingError, TrainingInterrupted
from .build import (
    Run,
    build_model,
    build_optimizer,
    build_run,
    init_model_from,
    make_loader,
    poly_lr,
)
from .loop import train, train_step
from .objectives import OBJECTIVES, Objective

__all__ = [
    "OBJECTIVES",
    "Objective",
    "Run",
    "TrainingError",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "build_run",
    "init_model_from",
    "make_loader",
    "poly_lr",
    "train",
    "train_step",
]
