"""Reading the files a user names: what the path is, checked before it is opened.

A FIFO blocks open() until another process writes to it, a device such as /dev/zero reads on
until the memory is gone, and os.path.isfile calls both "not found": each is one line saying
what the path is instead. Text is UTF-8; a leading byte-order mark (Windows editors write one)
is dropped where the project parses the text itself, and named where Caffe reads the file too
(its parser stops on it). JSON is read by one function (parse_json), so that every way the json
module fails is one line."""
import json
import os
import stat
import sys

from .errors import UserError

_SPECIAL = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
            (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISSOCK, "a socket"))
BOM = "\ufeff"
BOM_BYTES = BOM.encode()


class InputNotFound(UserError):
    """Nothing is at the path of an input (not: something else is there, or the path cannot
    be looked at); callers that list every missing file at once catch it."""


def _kind(mode):
    return next((words for test, words in _SPECIAL if test(mode)), None)


def not_a_regular_file(path):
    """What `path` is in words ("a folder", "a FIFO (named pipe)", ...) when it exists and is
    not a regular file (links followed); None otherwise, the errors of opening it left to the
    caller."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return _kind(mode)


def _stat_input(path, what):
    """os.stat(path) (links followed), or None where nothing is there; a UserError naming the
    path where it cannot be looked at (a folder on the way that may not be entered: chmod 000),
    which "not found" would misname."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError, ValueError):   # ValueError: a NUL in the path
        return None
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def check_input_file(path, what):
    """`path` (expanded) when it names a regular file; else a UserError naming it: not found
    (InputNotFound), a folder, a FIFO or device, a path that cannot be looked at.
    what: the file's role in words ("train list", "solver")."""
    path = os.path.expanduser(os.fspath(path))
    st = _stat_input(path, what)
    if st is None:
        raise InputNotFound(f"{path}: {what} not found")
    kind = _kind(st.st_mode)
    if kind:
        raise UserError(f"{path}: cannot read the {what}: it is {kind}, not a regular file")
    return path


def check_input_folder(path, what, note=""):
    """`path` (expanded) when it names a folder; else a UserError naming it: not found, what
    it is instead (a file given for a folder was called 'not found'), or a path that cannot be
    looked at. note: words to add."""
    path = os.path.expanduser(os.fspath(path))
    st = _stat_input(path, what)
    if st is None:
        raise InputNotFound(f"{path}: {what} not found{note}")
    if stat.S_ISDIR(st.st_mode):
        return path
    kind = _kind(st.st_mode) or "a file"
    raise UserError(f"{path}: is {kind}, not a folder; give the {what}{note}")


def read_input_bytes(path, what):
    path = check_input_file(path, what)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def read_input_text(path, what, caffe_reads_it=False):
    """The UTF-8 text of a file, its byte-order mark dropped; with caffe_reads_it, a mark is
    an error that says so (Caffe would abort on the file)."""
    data = read_input_bytes(path, what)
    marked = data.startswith(BOM_BYTES)
    if marked and caffe_reads_it:
        raise UserError(f"{path}: starts with a byte-order mark (BOM), which Caffe cannot read; "
                        "save it as UTF-8 without BOM")
    try:
        return data.decode("utf-8-sig")     # drops the mark while decoding: no copy of a large text
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a {what} (not UTF-8 text: byte {e.start + 3 * marked})") from None


def parse_json(text, where, **hooks):
    """The value of the JSON `text`; every way the json module can fail on it is one UserError
    naming `where` (a file, or "file:line" for JSON Lines): a syntax error, nesting deeper than
    the interpreter's recursion limit (a RecursionError) and an integer of more digits than
    Python converts (a plain ValueError). hooks: json.loads keywords (object_hook, ...)."""
    try:
        return json.loads(text, **hooks)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not valid JSON ({e.msg} at {_position(e)})") from None
    except RecursionError:
        raise UserError(f"{where}: not usable JSON (nested too deeply to read)") from None
    except ValueError:
        raise UserError(f"{where}: not usable JSON (a number of more than "
                        f"{sys.get_int_max_str_digits()} digits)") from None


def _position(e):
    """Where a JSONDecodeError is: its column on a one-line text, its line and column otherwise."""
    return f"column {e.colno}" if "\n" not in e.doc else f"line {e.lineno}, column {e.colno}"


def read_json_file(path, what, **hooks):
    """The JSON value of the file `path` (UTF-8, a byte-order mark dropped), checked as
    read_input_text checks it; any failure is one UserError naming the file."""
    return parse_json(read_input_text(path, what), path, **hooks)
