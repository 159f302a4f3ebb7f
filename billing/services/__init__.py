"""Use cases that change billing state: one transaction each (DESIGN §1)."""
