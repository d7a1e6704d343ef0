"""Writing a command's outputs: atomically, all together, into a folder checked beforehand.

Three guarantees every command builds on:
- one file is replaced atomically (a temporary file in the same folder, renamed over it; over
  the target of a symbolic link) and gets the permissions `open()` would give it (the umask),
  so a crash never leaves half a file;
- several files that belong together (an evaluation's results.json, tables and figures) are
  staged first and swapped in together: after a failure the folder holds the old set or the
  new one, never a mix;
- the output folder is checked before any work (`prepare_out_dir`): a path under a regular
  file, a read-only file system or a folder that already holds something is one line naming the
  path, not a traceback after an hour of computing;
- an output folder is written by one command at a time (`lock_out_dir`): a second one into it
  stops before any work, instead of both mixing their files and reporting success.
A write error is a UserError naming the path (OSError is turned into one by core.errors.cli).
"""
import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile

from .errors import UserError, at_command_end
from .inputs import not_a_regular_file
from .workers import interrupts_deferred


def _read_umask():
    mask = os.umask(0)     # the only way to read it; done once, before any thread writes files
    os.umask(mask)
    return mask


_UMASK = _read_umask()
STAGING_PREFIX = ".tmp-"
# What tempfile names in this module: STAGING_PREFIX, 8 random characters, the suffix given.
_STAGED_NAME = re.compile(re.escape(STAGING_PREFIX) + r"[a-z0-9_]{8}(\.\w+)?")
LOCK_NAME = ".gwd-lock"
_locked = {}     # folders this process's command holds: {real path: (folder fd, lock file fd)}


def write_failed(path, err):
    """The UserError for an OSError met while writing `path`."""
    return UserError(f"{path}: cannot write ({err.strerror or err})")


def _makedirs(d):
    try:
        os.makedirs(d, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{d}: exists and is not a folder") from None
    except OSError as e:
        raise write_failed(d, e) from None


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside `path` to write with any library (h5py, matplotlib);
    on success it gets the usual permissions and replaces `path`, on failure it is removed.
    A `path` that is a symbolic link is written through: its target is replaced, beside which
    the temporary file lies (a rename over the link would put a file in its place).
    suffix: the temporary file's extension, for writers that choose a format by it."""
    path = os.fspath(path)
    _refuse_special(path)
    target = os.path.realpath(path) if os.path.islink(path) else path
    d = os.path.dirname(target) or "."
    _makedirs(d)
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=STAGING_PREFIX, suffix=suffix)
        os.close(fd)
    except OSError as e:
        raise write_failed(path, e) from None
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; give what open() would
        os.replace(tmp, target)
    except OSError as e:
        raise write_failed(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _refuse_special(path):
    """The rename would put a file in place of a FIFO or a device (/dev/null itself, as root)
    or fail on a folder: one line instead."""
    kind = not_a_regular_file(path)
    if kind:
        raise UserError(f"{path}: is {kind}, not a regular file to write; give the path of a file")


def atomic_write_bytes(path, data):
    """Write data to path so that a crash never leaves a half-written file behind."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def utf8_text(text):
    """`text` that UTF-8 can hold: what cannot (a path or name that is not UTF-8, which Python
    holds as surrogates: a Latin-1 folder name) is written as its escape, as Python prints it,
    instead of a UnicodeEncodeError once the work is done."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def atomic_write_text(path, text):
    atomic_write_bytes(path, utf8_text(text).encode("utf-8"))


@contextlib.contextmanager
def staged_dir(out_dir, owned=()):
    """Yield a hidden staging folder inside out_dir to write a command's outputs into (any
    number of files, in sub-folders too); when the block succeeds they replace their
    counterparts in out_dir together, and when it fails or is interrupted out_dir is as before.

    owned: names (relative paths) this command writes when it has them (e.g. an optional
    figure): a stale one that was not written this time is removed with the swap, so that the
    folder never mixes two runs, and so is a folder left empty by that. The swap moves the old
    files aside and renames the new ones in; a failure during it puts the old ones back."""
    out_dir = os.fspath(out_dir)
    created = _missing_folders(out_dir)
    _makedirs(out_dir)
    swapped = False
    try:
        try:
            stage = tempfile.mkdtemp(dir=out_dir, prefix=STAGING_PREFIX)
        except OSError as e:
            raise write_failed(out_dir, e) from None
        try:
            new, old = os.path.join(stage, "new"), os.path.join(stage, "old")
            os.mkdir(new)
            os.mkdir(old)
            yield new
            names = [os.path.relpath(os.path.join(d, f), new) for d, _, files in os.walk(new) for f in files]
            stale = [n for n in owned if n not in names]
            # Ctrl-C in the middle of the swap would leave a mix, and the old files moved aside
            # would go with the staging folder: it waits until the swap is done.
            with interrupts_deferred():
                _swap(out_dir, new, old, sorted(names), stale)
                swapped = True
            _remove_emptied_folders(out_dir, stale)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        if not swapped:     # a command that fails leaves no new folder (see prepare_out_dir)
            for folder in created:
                try:
                    os.rmdir(folder)
                except OSError:
                    break


def _missing_folders(path):
    """The folders os.makedirs(path) would create: path itself first, then those above it."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def write_together(out_dir, files, owned=()):
    """Replace a set of files in out_dir so that they change together or not at all (see
    staged_dir). files: {name: str | bytes}, every content computed before the call."""
    with staged_dir(out_dir, owned) as new:
        for name, content in files.items():
            data = utf8_text(content).encode("utf-8") if isinstance(content, str) else content
            try:
                with open(os.path.join(new, name), "wb") as f:
                    f.write(data)
                os.chmod(os.path.join(new, name), 0o666 & ~_UMASK)
            except OSError as e:
                raise write_failed(os.path.join(out_dir, name), e) from None


def _move(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.replace(src, dst)


def _swap(out_dir, new, old, names, stale):
    moved, placed = [], []
    try:
        for name in list(names) + list(stale):
            if os.path.lexists(os.path.join(out_dir, name)):
                _move(os.path.join(out_dir, name), os.path.join(old, name))
                moved.append(name)
        for name in names:
            _move(os.path.join(new, name), os.path.join(out_dir, name))
            placed.append(name)
    except OSError as e:
        for name in placed:
            os.replace(os.path.join(out_dir, name), os.path.join(new, name))
        for name in moved:
            os.replace(os.path.join(old, name), os.path.join(out_dir, name))
        raise write_failed(out_dir, e) from None


def _remove_emptied_folders(out_dir, removed):
    """The folders of out_dir that the removed files (relative paths) leave empty, upwards."""
    for name in removed:
        folder = os.path.dirname(name)
        while folder:
            try:
                os.rmdir(os.path.join(out_dir, folder))
            except OSError:     # holds something else, or gone with an earlier name
                break
            folder = os.path.dirname(folder)


def own_entry(name):
    """True for the names a command keeps in an output folder for itself while it runs (its
    lock, its staging): not the user's files, nor outputs."""
    return name == LOCK_NAME or name.startswith(STAGING_PREFIX)


def lock_out_dir(out):
    """Hold the output folder `out` (made if missing) for this command alone until it ends:
    an exclusive flock on its lock file, which the system lets go of when the process dies,
    however it dies. Another command holding it is one line naming its process id. Then the
    staging and temporary files of an earlier command that was killed (SIGKILL, a power cut)
    are removed: nothing else writes there now. At the end the lock file is removed, and so is
    the folder when this command made it and left it empty (a failed start leaves nothing)."""
    out = os.path.expanduser(os.fspath(out))
    created = _missing_folders(out)
    _makedirs(out)
    path = os.path.realpath(out)
    if path in _locked:
        return
    try:
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise write_failed(out, e) from None
    try:
        lock = _take_lock(out, folder)
    except BaseException:
        os.close(folder)
        _remove_if_empty(created)
        raise
    _locked[path] = folder, lock
    at_command_end(lambda: _unlock(path, created))
    _remove_stale_staging(folder)


def _take_lock(out, folder):
    """The fd of the lock file in `folder` (an open fd), flocked, with this process's id in
    it. The lock is taken on the file the name still leads to: a holder that just ended removed
    it, and one that came after would lock a new file."""
    while True:
        try:
            fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666, dir_fd=folder)
        except OSError as e:
            raise write_failed(os.path.join(out, LOCK_NAME), e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise write_failed(os.path.join(out, LOCK_NAME), e) from None
            raise UserError(f"{out}: in use by another running command{_holder(folder)}; "
                            "wait for it to end, or choose another folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(LOCK_NAME, dir_fd=folder).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _holder(folder):
    """' (pid N)' of the command holding the lock, where its file says it."""
    try:
        with open(os.open(LOCK_NAME, os.O_RDONLY, dir_fd=folder)) as f:
            pid = f.read(32).strip()
    except OSError:
        pid = ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _remove_stale_staging(folder):
    for name in os.listdir(folder):
        if _STAGED_NAME.fullmatch(name):
            try:
                os.unlink(name, dir_fd=folder)
            except IsADirectoryError:
                shutil.rmtree(name, dir_fd=folder, ignore_errors=True)
            except OSError:
                pass


def _unlock(path, created):
    """Remove the lock file (wherever the folder now is; it is still held, so no command took
    this one meanwhile) and let go of it; remove the folders this command made, if empty."""
    folder, lock = _locked.pop(path)
    try:
        os.unlink(LOCK_NAME, dir_fd=folder)
    finally:
        os.close(lock)          # the flock goes with it
        os.close(folder)
        _remove_if_empty(created)


def _remove_if_empty(folders):
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            break


def prepare_out_dir(out, force=False, may_hold=None, flag="--force"):
    """Check an output folder before the work starts.

    out: the folder; force: the user allows writing into a non-empty folder; may_hold: a
    predicate on the names already there that says the folder is this command's own to
    continue (e.g. a run being resumed). Refuses, with one line naming the path: a path that is
    or lies under a regular file, a non-empty folder without `force`, a folder (or, for a new
    one, the folder it would be created in) where nothing can be written: a read-only file
    system, missing permissions; a folder another command is writing (lock_out_dir, held from
    here to the command's end). A new folder made here is removed at the end if the command
    left it empty, so a command that fails before its first output leaves nothing behind.
    Returns `out` as given (expanded)."""
    out = _given(out, "folder")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UserError(f"{out}: output path exists and is not a folder")
    _check_writable(out, out)
    lock_out_dir(out)       # first: a folder another command is writing is named as such
    held = [n for n in os.listdir(out) if not own_entry(n)]
    if held and not force and not (may_hold and may_hold(held)):
        raise UserError(f"{out}: output folder exists and is not empty "
                        f"(use {flag} to write into it, or choose another folder)")
    return out


def prepare_out_file(path):
    """Check, before the work, that the output file `path` can be written (see prepare_out_dir):
    a path that names a folder (an existing one, or ending in '/', '.' or '..') is refused."""
    path = _given(path, "file")
    if os.path.isdir(path) or os.path.basename(path) in ("", ".", ".."):
        raise UserError(f"{path}: is a folder; give the name of the file to write")
    _refuse_special(path)
    _check_writable(path, os.path.dirname(os.path.abspath(path)))
    return path


def _given(path, what):
    """`path` expanded; an empty one, which the OS functions take as the current folder, is
    refused."""
    path = os.path.expanduser(os.fspath(path))
    if not path:
        raise UserError(f"'': an empty path; give the output {what}")
    return path


def _check_writable(out, folder):
    """UserError naming `out` unless a file can be created in `folder` or, where it does not
    exist yet, in the nearest folder above it that does."""
    parent = os.path.abspath(folder)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{out}: cannot create the output folder, {parent} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=STAGING_PREFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        where = "" if parent == os.path.abspath(out) else f" in {parent}"
        raise UserError(f"{out}: cannot write there{where} ({e.strerror or e})") from None


def disk_free(path):
    """Bytes free to an unprivileged writer on the file system of `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_space(path, need, what):
    """UserError unless `need` bytes (with a 5 % margin) are free where `path` lies."""
    free = disk_free(path)
    if free < need * 1.05:
        raise UserError(f"{path}: not enough free space for {what} "
                        f"({need / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free)")
