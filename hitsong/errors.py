"""The project's one exception tree and its one warning class.

Every error message names the file, row, column or value at fault and says what to do.
Wrapped errors keep their cause (``raise ... from exc``).
"""

from __future__ import annotations


class HitsongError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(HitsongError):
    """A data file the user brought (events, songs) is missing, malformed or inconsistent."""


class AudioError(HitsongError):
    """An audio file cannot be decoded into a usable waveform."""


class ConfigError(HitsongError):
    """A setting, option or configuration value is invalid."""


class ModelError(HitsongError):
    """A model or its weights cannot be built, loaded or used."""


class StoreError(HitsongError):
    """The DuckDB database or the feature store is missing, locked or inconsistent."""


class RegistryError(HitsongError):
    """The tracking server or model registry refused or failed a request."""


class HitsongWarning(UserWarning):
    """Something worked, but not as well as it should (short audio padded, silence, ...)."""
