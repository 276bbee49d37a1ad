"""Host-side parent of bubblewrap: exits only when every sandbox process is gone.

bubblewrap's outer process exits as soon as the sandbox's init reports the program's exit
status, before that init has died and the kernel has killed the rest of the pid namespace;
the init is then orphaned and left for the host's PID 1 to reap (a zombie for good where
PID 1 does not reap). This process is a child subreaper: the orphaned init is handed to it,
and it waits for all its children, so its own exit means the namespace is empty. SIGTERM
kills bubblewrap, which takes the sandbox down with it (--die-with-parent). If the caller
dies, this process is killed too and the same chain follows.

Usage: python -I -S reaper.py BWRAP [ARGS...]; exits with bubblewrap's exit code (128 + N
when signal N killed it).
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != parent:
        sys.exit(125)  # the caller is already gone
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1) != 0:
        sys.stderr.write(f"reaper: prctl: {os.strerror(ctypes.get_errno())}\n")
        sys.exit(125)
    child = os.fork()
    if child == 0:
        try:
            os.execv(sys.argv[1], sys.argv[1:])
        except OSError as exc:
            os.write(2, f"reaper: {sys.argv[1]}: {exc}\n".encode())
        os._exit(127)
    running = [True]

    def stop(signum: int, frame: object) -> None:
        if running[0]:  # once reaped, its pid may belong to someone else
            os.kill(child, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    status = 0
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            running[0] = False
            status = os.waitstatus_to_exitcode(wait_status)
    sys.exit(128 - status if status < 0 else status)


if __name__ == "__main__":
    main()
