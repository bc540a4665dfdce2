"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """A problem the user can fix (bad flag, missing data, foreign file): no traceback needed."""


class Interrupted(Exception):
    """A command stopped early by a signal, its work saved: the CLI prints the message (when
    there is one) and exits with `exit_code` (128 + the signal number, as shells do)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
