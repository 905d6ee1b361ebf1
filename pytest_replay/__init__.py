"""pytest_replay: deterministic record/replay testing for pytest (public names)."""

__version__ = "0.1.0"
