"""The sandbox's view of the system and the bubblewrap command line that builds it.

Inside, the host is absent except for what is listed here::

    /usr /bin /sbin /lib* /etc    read-only, from the host
    the interpreter's prefixes    read-only at their host paths (the venv, its base install);
                                  their parent directories are empty, so nothing else of
                                  /root, $HOME or the project tree shows
    /proc /dev                    fresh, for the sandbox's own pid namespace
    /tmp /dev/shm                 private, memory-backed, size-capped
    /.sandbox                     read-only staging: boot.py and the inputs
    /sandbox                      the work directory and $HOME: private, size-capped

bwrap runs as root without a user namespace, so the uid the program ends up with (65534,
set by setpriv after the mounts are made) is the real one: root's 0600 files stay unreadable
and RLIMIT_NPROC applies. setpriv also clears every capability and sets no_new_privs.
"""

from __future__ import annotations

import functools
import json
import os
import site
import sys

from gra.sandbox.model import SandboxLimits

SANDBOX_UID = 65534  # nobody
SANDBOX_GID = 65534  # nogroup
WORKDIR = "/sandbox"
STAGING = "/.sandbox"
INPUTS = "work"  # staging subdirectory copied into WORKDIR
BOOT = "boot.py"
REAPER = "reaper.py"
SCRIPT = "main.py"
OPEN_FILES = 256
PAGE = 4096

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")

# The environment is built from nothing: no variable of the caller (API keys...) gets in.
# Thread pools of numeric libraries are pinned to one thread: threads count against
# RLIMIT_NPROC.
ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONIOENCODING": "utf-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# The program's interpreter flags. The environment above is complete, so -E (which would
# also drop PYTHONHASHSEED) is not needed to keep PYTHONPATH and the like out; -s drops the
# user site. Unlike -I, the script's directory stays on sys.path, so main.py can import the
# modules passed in ``files``.
PROGRAM_FLAGS = ("-s",)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.cache
def interpreter() -> str:
    """The interpreter path to run inside: this process's, with directory symlinks resolved.

    The last component stays as it is, so a venv's ``bin/python`` still finds its
    ``pyvenv.cfg`` and with it the venv's site-packages.
    """
    executable = os.path.abspath(sys.executable)
    return os.path.join(os.path.realpath(os.path.dirname(executable)), os.path.basename(executable))


@functools.cache
def python_trees() -> tuple[str, ...]:
    """Host directories the interpreter needs, outside the system directories, minimal."""
    candidates = {
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(interpreter()),
        os.path.dirname(os.path.realpath(sys.executable)),
        *site.getsitepackages(),
    }
    real = sorted({os.path.realpath(path) for path in candidates if path})
    trees: list[str] = []
    for path in real:
        if path == "/" or not os.path.isdir(path):
            continue
        if any(_under(path, root) for root in (*SYSTEM_DIRS, *trees)):
            continue
        trees.append(path)
    return tuple(trees)


def extra_file(path: str) -> list[str]:
    """A host file the command line needs (setpriv), when no bound directory holds it."""
    real = os.path.realpath(path)
    if any(_under(real, root) for root in (*SYSTEM_DIRS, *python_trees())):
        return []
    return [real]


def rlimits(limits: SandboxLimits) -> list[tuple[str, int, int]]:
    """(resource name, soft, hard) for boot.py to apply; CPU gets a second to handle SIGXCPU."""
    return [
        ("RLIMIT_CPU", limits.cpu_s, limits.cpu_s + 1),
        ("RLIMIT_AS", limits.memory_mib << 20, limits.memory_mib << 20),
        ("RLIMIT_NPROC", limits.processes, limits.processes),
        ("RLIMIT_FSIZE", limits.file_bytes, limits.file_bytes),
        ("RLIMIT_NOFILE", OPEN_FILES, OPEN_FILES),
        ("RLIMIT_CORE", 0, 0),
    ]


def _pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def command(
    *,
    bwrap: str,
    setpriv: str,
    staging: str,
    input_bytes: int,
    input_entries: int,
    limits: SandboxLimits,
    reaper: str,
    ready_fd: int,
    seccomp_fd: int | None,
) -> list[str]:
    """The full argv: reaper.py waits out the whole sandbox, bwrap builds the namespaces and
    mounts, setpriv drops to the sandbox uid, boot.py applies the limits and execs the
    program."""
    python = interpreter()
    args = [
        python,
        "-I",
        "-S",
        reaper,
        bwrap,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
        "--tmpfs",
        "/",
    ]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    made: set[str] = set()
    for tree in [*python_trees(), *extra_file(setpriv)]:
        parent = os.path.dirname(tree)
        ancestors: list[str] = []
        while parent != "/" and parent not in made:
            ancestors.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(ancestors):
            args += ["--perms", "0755", "--dir", directory]
            made.add(directory)
        args += ["--ro-bind", tree, tree]
    args += ["--proc", "/proc", "--dev", "/dev"]
    # Writable places are memory-backed and size-capped: a run fills them, not the host's
    # disk. /dev/shm holds POSIX semaphores, for multiprocessing.
    for scratch in ("/tmp", "/dev/shm"):
        args += ["--perms", "1777", "--size", str(_pages(limits.disk_bytes) + PAGE)]
        args += ["--tmpfs", scratch]
    workdir_size = _pages(limits.disk_bytes) + _pages(input_bytes) + PAGE * (input_entries + 2)
    args += ["--ro-bind", staging, STAGING]
    args += ["--perms", "0777", "--size", str(workdir_size), "--tmpfs", WORKDIR]
    args += ["--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
    for name, value in ENVIRONMENT.items():
        args += ["--setenv", name, value]
    config = {
        "inputs": f"{STAGING}/{INPUTS}",
        "workdir": WORKDIR,
        "rlimits": rlimits(limits),
        "ready_fd": ready_fd,
        "python": python,
        "python_args": list(PROGRAM_FLAGS),
        "script": SCRIPT,
    }
    args += [
        "--",
        setpriv,
        f"--reuid={SANDBOX_UID}",
        f"--regid={SANDBOX_GID}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        python,
        "-I",
        "-S",
        f"{STAGING}/{BOOT}",
        json.dumps(config),
    ]
    return args
