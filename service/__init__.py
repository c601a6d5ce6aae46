"""The Bedside daemon and everything it decides."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bedside")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+src"
