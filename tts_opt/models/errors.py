"""One base for every provisioning failure, so callers (the CLI, the engine pool) catch one type."""

from tts_opt.errors import UserError


class ModelError(UserError):
    """An embedded model cannot be provisioned or found; the message says what to do."""
