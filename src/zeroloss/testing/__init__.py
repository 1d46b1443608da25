"""Test helpers shipped with zeroloss (not part of the public API): :mod:`zeroloss.testing.meta_device`."""
