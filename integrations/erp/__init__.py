"""ERP adapters: one small interface (`base.ErpAdapter`), the HTTP adapter, the canonical documents."""
