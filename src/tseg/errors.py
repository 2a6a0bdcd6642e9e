"""One error family: every failure tseg expects (a bad setting, file, input or launch) is a
``TsegError`` whose message names the thing and says what to do.

``tseg`` (the CLI) catches ``TsegError`` and prints it as one ``error:`` line (exit status 2;
``TrainingInterrupted`` exits with 130). Anything else is a bug and keeps its traceback. Each
class also derives from the built-in exception it used to be, so ``except ValueError`` code keeps
working, and each is importable from the module that raises it (``tseg.config.ConfigError``, ...).
Nothing here imports anything: the torch-free paths (``tseg data check``, ONNX Runtime) use it.
"""

from __future__ import annotations


class TsegError(Exception):
    """Base of every error tseg raises on purpose."""


class ConfigError(TsegError, ValueError):
    """A config file, key or value is invalid; the message names it."""


class ShardingError(ConfigError):
    """The launch environment (torchrun's variables) is unusable; the message names the variable."""


class DatasetError(TsegError, ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


class CheckpointError(TsegError, ValueError):
    """A checkpoint is missing, incomplete or does not match the model; the message says which."""


class WeightsError(TsegError, ValueError):
    """A pretrained weight file or folder is missing or unreadable; the message says which and
    where to get it."""


class InputError(TsegError, ValueError):
    """An image or expression given to inference is unusable; the message names it."""


class ExportError(TsegError, ValueError):
    """An export is impossible, or an export folder is missing, incomplete or of another format;
    the message says which."""


class CRFUnavailable(TsegError, ImportError):
    """pydensecrf is not installed; the message says how to install it."""


class TrainingError(TsegError, RuntimeError):
    """Training cannot go on (for example, a non-finite loss)."""


class TrainingInterrupted(TsegError, RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved first."""
