"""How many worker processes or threads a command may use by default."""
import contextlib
import os
import signal

from .errors import sigint_ignored


def available_cpus():
    """The CPUs this process may run on: its affinity mask (taskset, cgroup cpusets, `docker
    run --cpuset-cpus`), not the machine's total, which would oversubscribe a restricted run."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:      # no affinity masks (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def worker_count(requested=None, tasks=None):
    """requested (None or 0: every available CPU), at most one per task when `tasks` is given."""
    n = int(requested) if requested else available_cpus()
    if tasks is not None:
        n = min(n, max(1, tasks))
    return max(1, n)


def ignore_interrupts():
    """Initializer of worker processes: Ctrl-C reaches the whole process group, and the parent
    alone should answer it (with one line), not every worker with a traceback. A worker also
    ends with its parent (see _exit_with_parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()


def _exit_with_parent():
    """A pool's worker whose parent was killed (SIGKILL, the OOM killer) waits for tasks forever
    (the workers hold the task queue's write end themselves) and may still write outputs: a
    thread ends the worker as soon as its parent's sentinel says the parent is gone."""
    import multiprocessing
    import threading
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C back through a step that must not be cut: worker processes starting (a child
    interrupted in the middle of being spawned prints a traceback of its own), a set of outputs
    being swapped in (core.outputs). SIGINT is blocked in this thread (the children
    inherit the mask while they start) and, should another thread receive it, only noted; a
    Ctrl-C that came meanwhile raises KeyboardInterrupt right after, also in place of an error
    it caused (a fork server or child that died of it makes the pool fail with EOFError)."""
    got = []
    if sigint_ignored():        # nothing to defer
        yield
        return
    try:
        old_handler = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    except ValueError:          # not the main thread: nothing to defer
        yield
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) \
        if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGINT, old_handler)
        if got:
            raise KeyboardInterrupt


def shut_down(pool):
    """Shut a concurrent.futures process pool down: tasks not started are cancelled, running
    ones finish (their outputs are whole), and Ctrl-C is held back meanwhile. A second Ctrl-C
    that cut the shutdown short left the command hung at exit, its workers waiting for tasks
    that never came."""
    with interrupts_deferred():
        pool.shutdown(wait=True, cancel_futures=True)
