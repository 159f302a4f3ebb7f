"""Permissions matrix rows of the customer side: the customer portal (/customer/, client contacts only) and
staff's screens for it (/customers/). The customer portal's own matrix — two contacts of different clients
and anonymous, every URL — is tests/customers/test_isolation.py; here every staff role gets 403 there."""

TABLE = """
# Customer portal (client contacts only: every staff session is refused; anonymous goes to the customer login)
customers:login                    GET    -          allow   allow   allow   allow   allow   allow   allow   allow
customers:login_verify             GET    -          allow   allow   allow   allow   allow   allow   allow   allow
customers:logout                   GET    -          method  method  method  method  method  method  method  method
customers:logout                   POST   -          allow   allow   allow   allow   allow   allow   allow   allow
customers:password_reset           GET    -          allow   allow   allow   allow   allow   allow   allow   allow
customers:set_password             GET    -          allow   allow   allow   allow   allow   allow   allow   allow
customers:esign_webhook            GET    -          method  method  method  method  method  method  method  method
customers:esign_webhook            POST   -          deny    deny    deny    deny    deny    deny    deny    deny
customers:mfa                      GET    -          login   deny    deny    deny    deny    deny    deny    deny
customers:home                     GET    -          login   deny    deny    deny    deny    deny    deny    deny
customers:statement                GET    -          login   deny    deny    deny    deny    deny    deny    deny
customers:disputes                 GET    -          login   deny    deny    deny    deny    deny    deny    deny
customers:change_orders            GET    -          login   deny    deny    deny    deny    deny    deny    deny
customers:milestones               GET    -          login   deny    deny    deny    deny    deny    deny    deny
customers:invoice                  GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:invoice_pdf              GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:invoice_ubl              GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:dispute_new              GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:dispute_new              POST   cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:dispute                  GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:dispute_note             GET    cust-obj   method  method  method  method  method  method  method  method
customers:dispute_note             POST   cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:dispute_attachment       GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:change_order             GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:change_order_pdf         GET    cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:change_order_sign        GET    cust-obj   method  method  method  method  method  method  method  method
customers:change_order_sign        POST   cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:change_order_decline     GET    cust-obj   method  method  method  method  method  method  method  method
customers:change_order_decline     POST   cust-obj   login   deny    deny    deny    deny    deny    deny    deny
customers:milestone_signoff        GET    cust-obj   method  method  method  method  method  method  method  method
customers:milestone_signoff        POST   cust-obj   login   deny    deny    deny    deny    deny    deny    deny

# Customer side, staff screens: inviting client contacts; sending a change order for signature
customers_staff:contacts           GET    -          login   deny    deny    allow   allow   deny    allow   deny
customers_staff:contacts           POST   -          login   deny    deny    allow   allow   deny    allow   deny
customers_staff:change_order_send  GET    cs-co      login   deny    allow   deny    allow   deny    deny    deny
customers_staff:change_order_send  POST   cs-co      login   deny    allow   deny    allow   deny    deny    deny
"""

TARGETS = {
    "cust-obj": "any object id: customer pages refuse staff before looking anything up",
    "cs-co": "a submitted change order on a contract of a project the PM manages, its client with one contact",
}

NOTES = {
    "customers:home": "The customer portal answers client contacts only (their own door, customers/auth.py); "
    "its per-contact matrix is tests/customers/test_isolation.py.",
    "customers:esign_webhook": "The e-signature provider's webhook: 403 without a valid HMAC signature.",
    "customers_staff:change_order_send": "The service also checks the object: a PM of one of the contract's "
    "projects, or a finance controller.",
}
