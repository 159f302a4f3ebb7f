"""Per-feature rows of the permissions matrix (see portal.permissions_matrix): one module per feature."""
