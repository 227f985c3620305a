"""Errors that carry a reason a person can read; the pipeline quarantines on UnreadableFrame."""


class CopilotError(Exception):
    """Base class of the co-pilot's own errors."""


class UserError(CopilotError):
    """A mistake the person can fix; the message names what to change (the CLI prints it as one line, exit code 2)."""


class ModelError(UserError, ValueError):
    """A model folder that cannot be used: its card does not validate, or model.onnx does not match the card."""


class ModelNotFound(UserError, FileNotFoundError):
    """No model of that name on the search path (the message lists the models found and the folders searched)."""


class UnreadableFrame(CopilotError):
    """A file or message that cannot become a Frame (truncated, corrupt, unknown format, not an image)."""

    def __init__(self, origin: str, reason: str):
        super().__init__(f"{origin}: {reason}")
        self.origin = origin
        self.reason = reason


class RefusedFrame(UnreadableFrame):
    """An input outside the configured bounds (too many pixels, too small, non-finite values, too much resampling);
    refused before the expensive work, with the bound it broke."""


class InvalidMessage(CopilotError):
    """A socket message that fails validation (wrong buffer size, unknown dtype, too large)."""
