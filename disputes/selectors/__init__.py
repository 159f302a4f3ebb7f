"""Reads for the dispute, payment and collections screens, one module per area."""
