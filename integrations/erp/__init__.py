"""ERP adapters: one small interface (`base.ErpAdapter`), the HTTP adapter, the Tryton adapter, the canonical documents."""
