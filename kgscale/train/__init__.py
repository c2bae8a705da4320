"""Training on Ray Train: the per-worker loop (:mod:`.loop`), DeepSpeed and DDP
engines (:mod:`.engines`), metrics, export, and the driver (:mod:`.run`)."""

from kgscale.errors import UserError


class TrainError(UserError, RuntimeError):
    """Training started but failed; the message carries the worker's error."""
