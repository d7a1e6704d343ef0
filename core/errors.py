"""User-facing errors: one clear line and exit status 2, never a traceback for a user mistake."""
import functools
import sys


class UserError(Exception):
    """A mistake in the user's input (a file, an argument, a dataset). The message names the
    file and says what is wrong; command-line entry points print it and exit with status 2."""


def cli(main):
    """Decorate a command-line `main` so that a UserError (or Ctrl-C) ends the process with a
    one-line message instead of a traceback."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
    return wrapper
