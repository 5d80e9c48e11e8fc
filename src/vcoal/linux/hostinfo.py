"""Facts about the host the agent records and logs: kernel, CPUs, the driver of each interface."""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import socket
import struct
from dataclasses import dataclass

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
_DRVINFO_SIZE = 196  # struct ethtool_drvinfo


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Kernel release, CPU count and whether the kernel has netdev ``napi-set`` (>= 6.13)."""

    kernel: str
    cpus: int
    napi_set_expected: bool

    def to_dict(self) -> dict:
        return {"kernel": self.kernel, "cpus": self.cpus, "napi_set_expected": self.napi_set_expected}


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a kernel release string such as ``6.18.44-fc``."""
    parts = release.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return (0, 0)


def host_info() -> HostInfo:
    """Facts about this host."""
    release = platform.release()
    return HostInfo(release, os.cpu_count() or 1, kernel_version(release) >= (6, 13))


def driver_of(ifname: str) -> str:
    """The driver of an interface as ``ethtool -i`` names it (``veth``, ``tun``, ``virtio_net``...).

    Uses the ETHTOOL_GDRVINFO ioctl in the caller's namespace; '' when the device has none.
    """
    buf = ctypes.create_string_buffer(struct.pack("I", ETHTOOL_GDRVINFO) + b"\0" * (_DRVINFO_SIZE - 4))
    ifreq = struct.pack("16sP", ifname.encode()[:15], ctypes.addressof(buf)) + b"\0" * 16
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
        except OSError:
            return ""
    return buf.raw[4:36].split(b"\0", 1)[0].decode(errors="replace")


def has_cap_net_admin() -> bool:
    """True when CAP_NET_ADMIN is in the effective set (root normally has it; a container may not)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        return os.geteuid() == 0
    return False
