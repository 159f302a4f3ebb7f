"""Invoice documents: the printable PDF and the EN 16931 UBL e-invoice, and their validation.

Pure rendering: these modules read an invoice and return bytes (or findings);
storing them, once, is `billing.services.documents`.
"""
