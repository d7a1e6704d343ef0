"""User-facing errors: one clear line and exit status 2, never a traceback for a user mistake.

Ctrl-C is one line ("interrupted") and status 130 at any moment, unless the command was started
with SIGINT ignored (a background job of a non-interactive shell inherits it so): then it stays
ignored throughout, start-up included, as it was meant to be (`sigint_ignored`). A
KeyboardInterrupt raised while a module is being imported (a command spends its first seconds
importing Caffe, OpenCV, matplotlib) can surface inside C code as an ImportError with a long
traceback; so during an import, SIGINT ends the process at once with that line, and elsewhere
it raises KeyboardInterrupt as usual, which the `cli` wrapper turns into the same line after
the code on the way out has cleaned up. Importing this module, which every package of the project does
first, sets this up for `python -m <package>...` from its first import on.

SIGTERM (kill, timeout, docker stop) is answered the same way, with "terminated" and status 143:
it raises Terminated, a KeyboardInterrupt, so that what cleans up after Ctrl-C (staging folders,
worker pools, scratch files) cleans up after it too. A process started with SIGTERM ignored keeps
ignoring it, and worker processes keep its default action (their pool ends them with it)."""
import atexit
import codecs
import errno
import functools
import os
import signal
import sys
import threading

INTERRUPTED = 130
TERMINATED = 128 + signal.SIGTERM
# What a shell reports for a Unix tool whose reader went away (`cmd | head -1`): 128 + SIGPIPE.
BROKEN_PIPE = 128 + signal.SIGPIPE
STDOUT = "<stdout>"


class UserError(Exception):
    """A mistake in the user's input (a file, an argument, a dataset). The message names the
    file and says what is wrong; command-line entry points print it and exit with status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: the same code cleans up on the way out."""


def _interrupted(*_, line="interrupted", status=INTERRUPTED):
    print(line, file=sys.stderr)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _importing(frame):
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum, frame):
    if _importing(frame):
        _interrupted()
    raise KeyboardInterrupt


def _on_sigterm(signum, frame):
    if _importing(frame):
        _interrupted(line="terminated", status=TERMINATED)
    raise Terminated


def _take_sigterm():
    """Answer SIGTERM with _on_sigterm unless it is ignored or handled otherwise (a command's
    own handler); returns the handler it replaced, or None."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    return None


def _fork_server():
    """True in a multiprocessing fork server (`python -c 'from multiprocessing.forkserver
    import main; ...'`) importing its preloaded modules: it ignores Ctrl-C only after them, and
    one that dies of it meanwhile makes the parent's pool fail with a traceback."""
    return sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules


def _quiet_start_up():
    if threading.current_thread() is not threading.main_thread():
        return
    mp = sys.modules.get("multiprocessing")
    if mp is not None and (mp.parent_process() is not None or _fork_server()):
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a worker: its parent answers Ctrl-C
    elif sys.argv[:1] == ["-m"]:                       # `python -m` is importing its package
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
        _take_sigterm()


def _uncaught(exc_type, exc, tb, previous=sys.excepthook):
    if issubclass(exc_type, Terminated):           # between two imports of a starting command
        _interrupted(line="terminated", status=TERMINATED)
    if issubclass(exc_type, KeyboardInterrupt):
        _interrupted()
    previous(exc_type, exc, tb)


def _tolerant_output():
    """Characters that stdout's or stderr's encoding cannot show come out as escapes instead of
    a UnicodeEncodeError after the work is done (a table's dash, a non-ASCII path). Any encoding
    but UTF-8 gets them (an ASCII locale: LC_ALL=C with PYTHONUTF8=0 sets errors to
    surrogateescape, which fails on the dash too; PYTHONIOENCODING=ascii); UTF-8 fails only on
    a path's undecodable bytes (surrogates), and only when strict."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None or not hasattr(stream, "reconfigure"):
            continue
        utf8 = codecs.lookup(stream.encoding or "ascii").name == "utf-8"
        if not utf8 or stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def _unraisable(unraisable, previous=sys.unraisablehook):
    """Ctrl-C that lands in code whose exceptions Python ignores (a weakref callback or a
    __del__; h5py's object registry runs many) would print "Exception ignored" with a
    traceback and be lost, the command going on to exit 0: it is posted again instead, a
    moment later from another thread (posted from here it would land in this hook, ignored
    again), to surface in ordinary code as the usual KeyboardInterrupt."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        import _thread
        again = threading.Timer(0.01, _thread.interrupt_main)
        again.daemon = True
        again.start()
        return
    previous(unraisable)


def _closed_standard_fds_opened():
    """A command started with stdin, stdout or stderr closed (`cmd >&-`) would give that
    descriptor to the first file it opens, and what is printed there (by Caffe, libpng, a child
    process; Python prints what is meant for a missing stderr on stdout) would go into that file:
    each closed one gets /dev/null first, and Python's stream for it reads or writes there."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        try:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)   # the lowest free: fd
        except OSError:
            continue
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        os.set_inheritable(fd, True)     # as the standard descriptors are, for child processes
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", buffering=1 if fd == 2 else -1, closefd=False,
                                    errors="backslashreplace"))


_closed_standard_fds_opened()
_quiet_start_up()
_tolerant_output()
sys.excepthook = _uncaught
sys.unraisablehook = _unraisable


_at_command_end = []
_running = [0]      # commands (cli) running in this process, nested ones included


def at_command_end(release):
    """Call release() when the command ends, however it ends (its `cli` returns, or the process
    exits where no `cli` runs it): what a command holds for its whole life (an output folder's
    lock) is let go of once, never while it still writes."""
    _at_command_end.append(release)


def _command_ended():
    while _at_command_end:
        try:
            _at_command_end.pop()()
        except OSError:
            pass


atexit.register(_command_ended)


def os_error_line(e):
    """One line for an OSError: the path it concerns and the system's reason."""
    reason = e.strerror or str(e)
    if e.filename == STDOUT:
        return f"{STDOUT}: cannot write the command's output ({reason}); redirect it elsewhere"
    return f"{e.filename}: {reason}" if e.filename is not None else reason


def sigint_ignored():
    """SIGINT is ignored: the command was started so (a background job of a non-interactive
    shell, `cmd &` in a script, inherits it), and keeps ignoring Ctrl-C throughout, as it did
    while it imported; whatever handles Ctrl-C is installed only where this is False."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


class _NamedStdout:
    """sys.stdout while a command runs: a write that fails (a full disk, a reader gone away),
    through it or its binary `buffer`, raises an OSError naming stdout, where Python's names no
    file."""

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, name):
        return getattr(self.stream, name)

    @property
    def buffer(self):
        """The binary stream under it (`sys.stdout.buffer.write(b"...")`), named in its errors too."""
        return _NamedStdout(self.stream.buffer)

    def write(self, text):
        try:
            return self.stream.write(text)
        except OSError as e:
            raise _stdout_failed(self.stream, e) from None

    def flush(self):
        try:
            self.stream.flush()
        except OSError as e:
            raise _stdout_failed(self.stream, e) from None


def _stdout_failed(stream, e):
    """The OSError of stdout, named. What could not be written goes to /dev/null: Python would
    try again at exit and print "Exception ignored" with a traceback."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError):   # no file descriptor to replace (io.UnsupportedOperation)
        pass
    return OSError(e.errno, e.strerror, STDOUT)


def _run_and_flush(main, args, kwargs):
    """main(), with stdout named in its errors and flushed before the command ends."""
    stream = sys.stdout
    if stream is None:          # no stdout at all (embedded): print() writes nothing
        return main(*args, **kwargs)
    sys.stdout = named = _NamedStdout(stream)
    try:
        try:
            result = main(*args, **kwargs)
        except SystemExit:
            named.flush()
            raise
        named.flush()
        return result
    finally:
        sys.stdout = stream


def cli(main):
    """Decorate a command-line `main` so that a UserError, an OSError (a full disk, a read-only
    file system, a missing permission, a stdout that takes nothing more: one line naming the
    path), Ctrl-C or SIGTERM ends the process with a one-line message instead of a traceback. A
    stdout whose reader went away (`| head`) ends it quietly with BROKEN_PIPE, as Unix tools end."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        previous = previous_term = None
        if threading.current_thread() is threading.main_thread():
            previous_term = _take_sigterm()
            if not sigint_ignored():
                previous = signal.signal(signal.SIGINT, _on_sigint)
        _running[0] += 1
        try:
            return _run_and_flush(main, args, kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            if e.filename == STDOUT and e.errno == errno.EPIPE:
                sys.exit(BROKEN_PIPE)
            print(f"error: {os_error_line(e)}", file=sys.stderr)
            sys.exit(2)
        except Terminated:
            print("terminated", file=sys.stderr)
            sys.exit(TERMINATED)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(INTERRUPTED)     # unwinds: temporary files are removed on the way out
        finally:
            _running[0] -= 1
            if not _running[0]:
                _command_ended()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
    return wrapper
