"""Reading cassettes outside pytest: the pytest-replay command and its renderers."""
