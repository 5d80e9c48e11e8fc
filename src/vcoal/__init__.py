"""vcoal: QoS-aware interrupt coalescing for virtualized cloud networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vcoal")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
