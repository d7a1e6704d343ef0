"""Run a project command with a simulated file-system fault, portably (no root, no mounts):

    python tests/fault_run.py FAULT DIR -m MODULE [ARGS...]

FAULT: erofs -- every write, folder creation and rename under DIR fails as on a read-only file
system; enospc -- every write and folder creation under DIR fails as on a full disk; nospace --
os.statvfs reports no free space anywhere (what the snapshot check of apps.train looks at);
eacces -- DIR is as a folder this user may not enter (chmod 000, which root passes through):
listing it and looking up or opening anything in it fail with "Permission denied".
The faults patch Python's file functions (open, os.open, os.mkdir, os.replace, os.rename; for
eacces os.stat, os.lstat, os.scandir, os.listdir), which every write and every look-up of the
project goes through; then MODULE runs as `python -m MODULE` would."""
import builtins
import errno
import io
import os
import runpy
import sys


def _patch_writes(root, code, renames):
    def under(p):
        try:
            p = os.path.abspath(os.fsdecode(p))
        except TypeError:        # a file descriptor
            return False
        return p == root or p.startswith(root + os.sep)

    def fail(p):
        raise OSError(code, os.strerror(code), os.fsdecode(p))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_replace, real_rename = os.replace, os.rename

    def open_(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and under(file):
            fail(file)
        return real_open(file, mode, *a, **k)

    def os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            fail(path)
        return real_os_open(path, flags, *a, **k)

    def mkdir(path, *a, **k):
        if under(path):
            fail(path)
        return real_mkdir(path, *a, **k)

    def replace(src, dst, *a, **k):
        if renames and under(dst):
            fail(dst)
        return real_replace(src, dst, *a, **k)

    def rename(src, dst, *a, **k):
        if renames and under(dst):
            fail(dst)
        return real_rename(src, dst, *a, **k)

    builtins.open = io.open = open_
    os.open, os.mkdir, os.replace, os.rename = os_open, mkdir, replace, rename


def _patch_lookups(root):
    """Everything under root fails as behind a folder without permissions; root itself can be
    looked at (its parent may be entered) but not listed."""
    def inside(p, listing=False):
        try:
            p = os.path.abspath(os.fsdecode(p))
        except TypeError:        # a file descriptor
            return False
        return p.startswith(root + os.sep) or (listing and p == root)

    def guard(real, listing=False):
        def call(path=".", *a, **k):
            if inside(path, listing):
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
            return real(path, *a, **k)
        return call

    real_open, real_os_open = builtins.open, os.open
    builtins.open = io.open = lambda file, *a, **k: guard(real_open)(file, *a, **k)
    os.open = guard(real_os_open)
    os.stat, os.lstat = guard(os.stat), guard(os.lstat)
    os.scandir, os.listdir = guard(os.scandir, listing=True), guard(os.listdir, listing=True)


def _patch_statvfs():
    real = os.statvfs

    class Full:
        def __init__(self, st):
            self.f_frsize, self.f_bsize, self.f_bavail, self.f_bfree = st.f_frsize, st.f_bsize, 0, 0

    os.statvfs = lambda path: Full(real(path))


def main():
    fault, root = sys.argv[1], os.path.abspath(sys.argv[2])
    if sys.argv[3] != "-m":
        sys.exit("usage: fault_run.py FAULT DIR -m MODULE [ARGS...]")
    module = sys.argv[4]
    sys.argv = [module] + sys.argv[5:]
    if fault == "nospace":
        _patch_statvfs()
    elif fault == "eacces":
        _patch_lookups(root)
    else:
        _patch_writes(root, {"erofs": errno.EROFS, "enospc": errno.ENOSPC}[fault], fault == "erofs")
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
