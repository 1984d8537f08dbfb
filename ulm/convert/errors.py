"""The error conversions raise for a model that cannot take the asked-for form."""

from __future__ import annotations

from ulm.errors import UlmError


class ConvertError(UlmError):
    """A conversion that cannot be done; the message names the model, the target and the reason."""
