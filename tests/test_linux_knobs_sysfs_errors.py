"""sysfs errors inside a named namespace: only a missing file or namespace means "interface gone"."""

from __future__ import annotations

from vcoal.linux.knobs import InterfaceGone, _Sysfs


def test_only_missing_file_or_namespace_is_interface_gone():
    s = _Sysfs("vcoal-x")
    gone = s._error("vif1.0", "/sys/x", "cat: /sys/x: No such file or directory\n")
    assert isinstance(gone, InterfaceGone)
    assert isinstance(s._error("vif1.0", "/sys/x", 'Cannot open network namespace "vcoal-x"'), InterfaceGone)
    busy = s._error("vif1.0", "/sys/x", "tee: /sys/x: Device or resource busy")
    assert isinstance(busy, OSError) and not isinstance(busy, InterfaceGone)
    assert isinstance(s._error("vif1.0", "/sys/x", "tee: /sys/x: Permission denied"), PermissionError)
