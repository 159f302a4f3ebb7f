"""Use cases that change billing state: one transaction each (docs/architecture.md)."""
