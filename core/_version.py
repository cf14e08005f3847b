"""The package version (its own module, so that core submodules can read it without importing
the package and everything it re-exports)."""

__version__ = "0.1.0"
