"""The event engine: one source, run compiled with numba or interpreted (the reference).

``layout`` is the arena's register map; ``core`` the run modes, event heap, pools, draws,
histograms, CPUs and link; ``hop`` one coalescing hop; ``tenant`` the workloads; ``loop`` the
forwarding, dispatch and the event loop. The functions are written once, in numba-compatible
Python over the arena's two flat arrays.

``load(compiled)`` returns the ``loop`` module of a mode. The interpreted mode is the same files
imported a second time as the package ``vcoal.sim.engine_interpreted``, whose ``COMPILED`` is
False: there ``core.jit`` leaves every function as written and ``data_ptr`` is a memoryview, so the
engine runs in Python over the same arrays (for audits, traces, debugging and coverage, and as the
reference the compiled mode is tested against).
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.machinery import ModuleSpec

COMPILED = True
"""This package's mode (False in its interpreted twin, which ``load`` creates)."""

_INTERPRETED = __name__ + "_interpreted"


def load(compiled: bool = True) -> types.ModuleType:
    """The engine's ``loop`` module, compiled (the first call compiles or loads numba's cache) or
    interpreted."""
    if compiled:
        return importlib.import_module(__name__ + ".loop")
    if _INTERPRETED not in sys.modules:
        pkg = types.ModuleType(_INTERPRETED, __doc__)
        pkg.__path__ = list(__path__)
        pkg.__spec__ = ModuleSpec(_INTERPRETED, None, is_package=True)
        pkg.__spec__.submodule_search_locations = pkg.__path__
        pkg.__package__ = _INTERPRETED
        pkg.COMPILED = False
        sys.modules[_INTERPRETED] = pkg
    return importlib.import_module(_INTERPRETED + ".loop")
