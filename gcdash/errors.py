"""User-facing errors: one line that names the problem and what to do."""


class GcdashError(ValueError):
    """Bad input from a user (unknown name, bad value, unreadable file). The CLI exits 2 with its message and
    the dashboard shows it with ``st.error``; neither prints a traceback."""


class Cancelled(RuntimeError):
    """A long computation was stopped by its caller; everything finished before the stop is kept."""
