"""Where vcoal may write: one check of an output path, shared by every command that writes a file.

``check_output_path`` runs before any work, so a bad ``-o``/``--out``/``--json`` costs nothing:
a missing parent, a directory, a name or path longer than the kernel accepts, a target inside a
kernel pseudo-filesystem (``/proc``, ``/sys``) or one that is not a regular file (a device node,
a FIFO, a socket, ``/dev/stdout``) is refused with one line naming the option, the path and what
is accepted. ``write_atomic`` (``vcoal.results.files``) never renames over anything that is not a
regular file either, so a target that changes after the check is still not replaced.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

NAME_MAX = 255
"""Longest file name (bytes) Linux file systems accept."""
PATH_MAX = 4096
"""Longest path (bytes, with its terminating NUL) the kernel accepts."""
PSEUDO_FS_ROOTS = ("/proc", "/sys", "/dev")
"""Kernel pseudo-filesystems and device files: nothing vcoal produces belongs there, whether named
directly or reached through a symlink (``/dev/stdout`` -> ``/proc/self/fd/1`` -> a terminal)."""
MAX_SYMLINKS = 40
"""Symlinks followed before giving up, as the kernel does (ELOOP)."""

_ACCEPT_FILE = "a regular file (replaced) or a new file name in an existing, writable directory"
_ACCEPT_DIR = "an existing directory, or a new one under an existing, writable directory"


class OutputPathError(ValueError):
    """An output path that vcoal refuses to write (one line: option, path, reason, what is accepted)."""


def _is_under(path: str, roots: tuple[str, ...]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root + "/"):
            return root
    return None


def _pseudo_root(absolute: str) -> str | None:
    """The pseudo-filesystem root that ``absolute`` is in or reaches through symlinks, if any."""
    hop = absolute
    for _ in range(MAX_SYMLINKS):
        root = _is_under(hop, PSEUDO_FS_ROOTS) or _is_under(os.path.realpath(hop), PSEUDO_FS_ROOTS)
        if root or not os.path.islink(hop):
            return root
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
    return None


def check_output_path(path: str | Path, option: str, *, directory: bool = False) -> Path:
    """Check an output target before any work runs; returns it as a ``Path``.

    Parameters
    ----------
    path
        The file (or, with ``directory=True``, the results directory) to be written.
    option
        How the user named it (``--out``, ``--json`` ...), for the message.
    directory
        The target is a directory that is created when missing (parents included).

    Raises
    ------
    OutputPathError
        One line: ``OPTION PATH: reason; accepted: ...``.
    """
    text = str(path)
    accepted = _ACCEPT_DIR if directory else _ACCEPT_FILE

    def refuse(why: str) -> OutputPathError:
        return OutputPathError(f"{option} {text!r}: {why}; accepted: {accepted}")

    if not text:
        raise refuse("empty path")
    absolute = os.path.abspath(text)
    if len(os.fsencode(absolute)) >= PATH_MAX:
        raise refuse(f"path longer than {PATH_MAX - 1} bytes")
    if any(len(os.fsencode(part)) > NAME_MAX for part in Path(absolute).parts):
        raise refuse(f"a name in it is longer than {NAME_MAX} bytes")
    root = _pseudo_root(absolute)
    if root:
        raise refuse(f"inside {root}, a kernel pseudo-filesystem or device directory")
    try:
        st: os.stat_result | None = os.stat(absolute)  # follows symlinks: judge what would be written
    except FileNotFoundError:
        st = None
    except OSError as exc:  # ENOTDIR, ELOOP, EACCES on the way
        raise refuse(exc.strerror or str(exc)) from None
    if directory:
        if st is not None:
            if not stat.S_ISDIR(st.st_mode):
                raise refuse("exists and is not a directory")
            if not os.access(absolute, os.W_OK | os.X_OK):
                raise refuse("directory is not writable")
            return Path(path)
        ancestor = os.path.dirname(absolute)
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise refuse(f"{ancestor} is not a directory")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise refuse(f"directory {ancestor} is not writable")
        return Path(path)
    if text.endswith("/") or (st is not None and stat.S_ISDIR(st.st_mode)):
        raise refuse("is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise refuse("exists and is not a regular file (a device, FIFO, socket or terminal)")
    parent = os.path.dirname(os.path.realpath(absolute)) if st is not None else os.path.dirname(absolute)
    if not os.path.isdir(parent):
        why = "is not a directory" if os.path.lexists(parent) else "does not exist"
        raise refuse(f"directory {parent} {why}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise refuse(f"directory {parent} is not writable")
    return Path(path)


def refuse_non_regular(path: str | Path) -> Path:
    """The real file behind ``path`` (symlinks resolved), refusing anything but a regular file or
    a new name: what ``write_atomic`` renames its temporary file over."""
    root = _pseudo_root(os.path.abspath(path))
    if root:
        raise OutputPathError(f"{path}: inside {root}; refusing to write there; accepted: {_ACCEPT_FILE}")
    target = Path(os.path.realpath(path))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"{path}: not a regular file; refusing to replace it; accepted: {_ACCEPT_FILE}")
    return target
