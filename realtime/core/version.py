"""The version of realtime, written in this one place.

The wheel's metadata (pyproject.toml's ``tool.setuptools.dynamic`` reads this literal without
importing anything), ``realtime.__version__``, the Python client's User-Agent, the OpenAPI
document, ``realtime --version`` and ``realtime.js`` (held to it by a test) all read it. A module
of its own in the core so every layer can read it without importing the package root, whose
lazy ``Realtime`` would count as an import of the extension. Keep it a plain string.
"""

__version__ = "0.1.0"
