"""The index tests' model fixture, shared: the distributed results are compared with the same encoder."""

from tests.index.conftest import model  # noqa: F401
