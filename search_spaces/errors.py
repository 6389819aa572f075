"""The one error type for settings that cannot work, shown to the user as one line."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the file, the key and the
    problem."""
