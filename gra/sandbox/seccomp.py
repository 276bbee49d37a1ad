"""A seccomp filter that shrinks the kernel surface the program can reach.

Namespaces and capabilities already keep the program from the host; this filter refuses
the calls a kernel exploit would start from and that a checking program never needs: new
user namespaces (in one, the program would hold every capability over whatever it then
mounts or creates), setns, the kernel keyring (shared by every process of the sandbox uid,
so also a channel from one run to the next), bpf, perf_event_open, userfaultfd and io_uring.
clone3 answers ENOSYS, as the C library then falls back to clone, whose flags the filter can
read. Syscalls of another ABI (32-bit x86, x32) are refused outright: the filter only knows
the native numbers. The filter is classic BPF, applied by bubblewrap before the program
starts; on an architecture not listed here there is no filter (the rest still holds).
"""

from __future__ import annotations

import errno
import platform
import struct

# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # args[0]'s low half on these little-endian machines

_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_X32_BIT = 0x40000000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_NEW_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
_NEW_NAMESPACES |= 0x40000000

_DENIED = (
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)

# machine: (AUDIT_ARCH_*, whether x32 numbers exist, syscall numbers)
_ARCHES: dict[str, tuple[int, bool, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        True,
        {
            "clone": 56,
            "clone3": 435,
            "unshare": 272,
            "setns": 308,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
        },
    ),
    "aarch64": (
        0xC00000B7,
        False,
        {
            "clone": 220,
            "clone3": 435,
            "unshare": 97,
            "setns": 268,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
        },
    ),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The compiled filter for this machine (``platform.machine()``), or None if unknown."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, has_x32, numbers = arch
    deny = _op(_RET, _ERRNO | errno.EPERM)
    ops = [_op(_LD_ABS, _ARCH), _op(_JEQ, audit_arch, jt=1), deny, _op(_LD_ABS, _NR)]
    if has_x32:
        ops += [_op(_JGE, _X32_BIT, jf=1), deny]
    for name in _DENIED:
        ops += [_op(_JEQ, numbers[name], jf=1), deny]
    ops += [_op(_JEQ, numbers["clone3"], jf=1), _op(_RET, _ERRNO | errno.ENOSYS)]
    ops += [
        _op(_JEQ, numbers["clone"], jf=3),
        _op(_LD_ABS, _ARG0_LOW),
        _op(_JSET, _NEW_NAMESPACES, jf=1),
        deny,
        _op(_RET, _ALLOW),
    ]
    return b"".join(ops)
