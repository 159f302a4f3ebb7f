"""ERP adapters: the interface (`base.ErpAdapter`), the HTTP and Tryton adapters, the canonical documents."""
