"""Dispute, payment and collections screens, one module per area (URL modules: `disputes/urls_*.py`)."""
