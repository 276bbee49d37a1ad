"""First process inside the sandbox, already running as the unprivileged uid.

It copies the program and its files from the read-only staging mount into the writable,
size-capped work directory, lowers the resource limits, tells the caller through a pipe that
the sandbox is up (so a failure to build the sandbox is never mistaken for a failing program),
closes every inherited descriptor but stdin/stdout/stderr and replaces itself with the
program. Standard library only: it runs with ``-I -S``, before any site-packages are seen.
"""

import contextlib
import json
import os
import resource
import shutil
import sys


def main() -> None:
    config = json.loads(sys.argv[1])
    inputs, workdir = config["inputs"], config["workdir"]
    for directory, _, filenames in os.walk(inputs):
        target = os.path.join(workdir, os.path.relpath(directory, inputs))
        os.makedirs(target, exist_ok=True)
        for name in filenames:
            shutil.copyfile(os.path.join(directory, name), os.path.join(target, name))
    for name, soft, hard in config["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    ready_fd = config["ready_fd"]
    os.write(ready_fd, b"ready\n")
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd > 2:
            with contextlib.suppress(OSError):  # the one listdir used is closed already
                os.close(fd)
    python = config["python"]
    os.execv(python, [python, *config["python_args"], config["script"]])


if __name__ == "__main__":
    main()
