"""How many worker processes or threads a command may use by default."""
import contextlib
import os
import signal
import threading


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
    """Hold Ctrl-C and SIGTERM back through a step that must not be cut: worker processes
    starting (a child interrupted in the middle of being spawned prints a traceback of its own),
    a set of outputs being swapped in (core.outputs). Both are only noted meanwhile, and SIGINT
    is blocked in this thread too (the children inherit the mask while they start; not SIGTERM,
    with which a pool ends its workers); one that came is raised again right after, to the
    handler that was there (KeyboardInterrupt, core.errors.Terminated, the training loop's
    flag), also in place of an error it caused (a fork server or child that died of it makes the
    pool fail with EOFError). An ignored signal stays ignored."""
    got = []
    if threading.current_thread() is not threading.main_thread():   # nothing to defer
        yield
        return
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) not in (signal.SIG_IGN, None)]
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in held}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) \
        if signal.SIGINT in held and hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)    # what was blocked arrives: noted
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            signal.raise_signal(got[0])


def shut_down(pool):
    """Shut a concurrent.futures process pool down: tasks not started are cancelled, running
    ones finish (their outputs are whole), and Ctrl-C is held back meanwhile. A second Ctrl-C
    that cut the shutdown short left the command hung at exit, its workers waiting for tasks
    that never came."""
    with interrupts_deferred():
        pool.shutdown(wait=True, cancel_futures=True)
