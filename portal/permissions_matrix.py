"""The permissions matrix: what every URL of the portal answers to every role, in one table.

One row per named URL pattern, HTTP method and — where the answer depends on the
object — target object; one column per role, plus `anonymous`. A cell is what the
server answers (see `Outcome`): `allow`, `refused` (let through, the service
says no), `deny` (403), `login` (sent to log in), `method` (405).

The columns are a small team: the *consultant* books work on the *project
manager*'s projects; everyone else holds just their role. An object marked
`*-own` belongs to that team (the consultant's expense on the PM's project, or
for a delegation the requesting user's own); `*-other` is another consultant's
work on another PM's project, or another user's delegation — so "a PM only acts
on their own projects" shows as `deny` in the `*-other` rows. `TARGETS` says
what each object is. Role users are plain members of one group, staff as the
demo sets them up (`STAFF_ROLES`: all but consultant and PM); a superuser passes
every check by design and is not a column.

Django admin (`admin:*`) is guarded by model permissions and is left out, but for
one row: `admin:index` checks that non-staff roles are sent to the admin login.

`tests/portal/test_permissions_matrix.py` fails when a URL pattern is missing
here (new URLs must be classified) or a row names a pattern that no longer exists,
and requests every cell. A cell the server gets wrong is listed in `KNOWN_HOLES`
(the test marks it xfail, strict) until the view is fixed. `docs/permissions.md`
is this table rendered: `python -m portal.permissions_matrix > docs/permissions.md`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import StrEnum

from kernel import roles

ANONYMOUS = "anonymous"
COLUMNS: tuple[str, ...] = (ANONYMOUS, *roles.ALL_ROLES)
#: The table's column headings → the role (or anonymous) they stand for.
SHORT_NAMES: dict[str, str] = {
    "anon": ANONYMOUS,
    "cons": roles.CONSULTANT,
    "pm": roles.PROJECT_MANAGER,
    "fa": roles.FINANCE_ANALYST,
    "fc": roles.FINANCE_CONTROLLER,
    "coll": roles.COLLECTIONS,
    "badm": roles.BILLING_ADMIN,
    "aud": roles.AUDITOR,
}
#: Roles whose users are staff (may open Django admin), as `billing.demo` sets the accounts up.
STAFF_ROLES = frozenset(roles.ALL_ROLES) - {roles.CONSULTANT, roles.PROJECT_MANAGER}
#: The one Django admin row: the rest of `admin:*` is guarded by Django's model permissions.
ADMIN_CHECK = "admin:index"


class Outcome(StrEnum):
    ALLOW = "allow"
    REFUSED = "refused"
    DENY = "deny"
    LOGIN = "login"
    METHOD = "method"


OUTCOMES: dict[Outcome, str] = {
    Outcome.ALLOW: "the page (200) or the action done: a redirect to a page of the feature, no error message",
    Outcome.REFUSED: "the view lets the request through, the service refuses it with an error message "
    "(an approval step that is not yours, segregation of duties); nothing changes",
    Outcome.DENY: "403 Forbidden, from the view, before any service runs",
    Outcome.LOGIN: "a redirect to the login page (`?next=`); for `admin:index`, to the admin login",
    Outcome.METHOD: "405 Method Not Allowed: a GET on an action that takes POST only",
}

TARGETS: dict[str, str] = {
    "-": "no object",
    "reset-link": "a password-reset link (uid and token; the token is not valid)",
    "run": "a finished billing run",
    "inv-pending": "an invoice awaiting approval: under 10,000, step 1 is a finance analyst",
    "inv-blocked": "an invoice blocked by CAP_EXCEEDED (so it can be revalidated, overridden, written down, "
    "cancelled)",
    "inv-posted": "an approved, numbered (posted) invoice with its PDF and UBL documents",
    "exp-own": "the consultant's draft expense, with a receipt, on the PM's project",
    "exp-other": "another consultant's draft expense, with a receipt, on another PM's project",
    "time-own": "the consultant's submitted time entry on the PM's project (`kind=time`)",
    "time-other": "another consultant's submitted time entry on another PM's project (`kind=time`)",
    "prj-own": "the queue filtered to the PM's project (`?project=`; change orders: its contract, `?contract=`)",
    "prj-other": "the queue filtered to another PM's project (`?project=`; change orders: its contract, "
    "`?contract=`)",
    "ms-own": "a planned milestone of the PM's fixed-fee project; action `complete`",
    "ms-other": "a milestone another PM completed; action `approve`",
    "co-own": "a change order finance submitted on the PM's contract; action `approve`",
    "co-other": "a change order finance submitted on another PM's contract; action `approve`",
    "req-own": "the approval request of `time-own` (step 1: the project's PM)",
    "req-other": "the approval request of `time-other` (step 1: that project's PM)",
    "dlg-own": "the requesting user's own delegation (anonymous: another user's)",
    "dlg-other": "another user's delegation",
}

#: The header of every table: the columns' short names (see SHORT_NAMES).
HEADER = "pattern method object anon cons pm fa fc coll badm aud"

# Columns: anon = anonymous, cons = consultant, pm = project_manager, fa = finance_analyst,
# fc = finance_controller, coll = collections, badm = billing_admin, aud = auditor.
_TABLE = """
pattern                           method object       anon    cons    pm      fa      fc      coll    badm    aud

# Portal shell and accounts
home                              GET    -            login   allow   allow   allow   allow   allow   allow   allow
login                             GET    -            allow   allow   allow   allow   allow   allow   allow   allow
logout                            GET    -            method  method  method  method  method  method  method  method
logout                            POST   -            allow   allow   allow   allow   allow   allow   allow   allow
mfa                               GET    -            login   allow   allow   allow   allow   allow   allow   allow
mfa                               POST   -            login   allow   allow   allow   allow   allow   allow   allow
password_change                   GET    -            login   allow   allow   allow   allow   allow   allow   allow
password_change                   POST   -            login   allow   allow   allow   allow   allow   allow   allow
password_change_done              GET    -            login   allow   allow   allow   allow   allow   allow   allow
password_reset                    GET    -            allow   allow   allow   allow   allow   allow   allow   allow
password_reset_done               GET    -            allow   allow   allow   allow   allow   allow   allow   allow
password_reset_confirm            GET    reset-link   allow   allow   allow   allow   allow   allow   allow   allow
password_reset_complete           GET    -            allow   allow   allow   allow   allow   allow   allow   allow
admin:index                       GET    -            login   login   login   allow   allow   allow   allow   allow

# Billing: runs, exception queue, invoices (finance acts, auditors read)
billing:run_list                  GET    -            login   deny    deny    allow   allow   deny    deny    allow
billing:run_list                  POST   -            login   deny    deny    allow   allow   deny    deny    deny
billing:run_detail                GET    run          login   deny    deny    allow   allow   deny    deny    allow
billing:run_progress              GET    run          login   deny    deny    allow   allow   deny    deny    allow
billing:run_resume                GET    run          method  method  method  method  method  method  method  method
billing:run_resume                POST   run          login   deny    deny    refused refused deny    deny    deny
billing:exception_queue           GET    -            login   deny    deny    allow   allow   deny    deny    allow
billing:invoice_list              GET    -            login   deny    deny    allow   allow   deny    deny    allow
billing:invoice_detail            GET    inv-pending  login   deny    deny    allow   allow   allow   deny    allow
billing:invoice_pdf               GET    inv-posted   login   deny    deny    allow   allow   allow   deny    allow
billing:invoice_ubl               GET    inv-posted   login   deny    deny    allow   allow   allow   deny    allow
billing:invoice_proforma          GET    inv-pending  login   deny    deny    allow   allow   allow   deny    allow
billing:invoice_revalidate        GET    inv-blocked  method  method  method  method  method  method  method  method
billing:invoice_revalidate        POST   inv-blocked  login   deny    deny    allow   allow   deny    deny    deny
billing:invoice_override          GET    inv-blocked  method  method  method  method  method  method  method  method
billing:invoice_override          POST   inv-blocked  login   deny    deny    deny    allow   deny    deny    deny
billing:invoice_write_down        GET    inv-blocked  method  method  method  method  method  method  method  method
billing:invoice_write_down        POST   inv-blocked  login   deny    deny    deny    allow   deny    deny    deny
billing:invoice_approve           GET    inv-pending  method  method  method  method  method  method  method  method
billing:invoice_approve           POST   inv-pending  login   deny    deny    allow   refused deny    deny    deny
billing:invoice_reject            GET    inv-pending  method  method  method  method  method  method  method  method
billing:invoice_reject            POST   inv-pending  login   deny    deny    allow   refused deny    deny    deny
billing:invoice_cancel            GET    inv-blocked  method  method  method  method  method  method  method  method
billing:invoice_cancel            POST   inv-blocked  login   deny    deny    allow   allow   deny    deny    deny
billing:invoice_resend            GET    inv-posted   method  method  method  method  method  method  method  method
billing:invoice_resend            POST   inv-posted   login   deny    deny    allow   allow   deny    deny    deny

# Approvals: consultants' timesheet and expenses
approvals:index                   GET    -            login   allow   allow   allow   allow   allow   allow   allow
approvals:timesheet               GET    -            login   allow   deny    deny    deny    deny    deny    deny
approvals:timesheet               POST   -            login   allow   deny    deny    deny    deny    deny    deny
approvals:expense_list            GET    -            login   allow   deny    deny    deny    deny    deny    deny
approvals:expense_new             GET    -            login   allow   deny    deny    deny    deny    deny    deny
approvals:expense_new             POST   -            login   allow   deny    deny    deny    deny    deny    deny
approvals:expense_edit            GET    exp-own      login   allow   deny    deny    deny    deny    deny    deny
approvals:expense_edit            GET    exp-other    login   deny    deny    deny    deny    deny    deny    deny
approvals:expense_edit            POST   exp-own      login   allow   deny    deny    deny    deny    deny    deny
approvals:expense_edit            POST   exp-other    login   deny    deny    deny    deny    deny    deny    deny
approvals:expense_submit          GET    exp-own      method  method  method  method  method  method  method  method
approvals:expense_submit          POST   exp-own      login   allow   deny    deny    deny    deny    deny    deny
approvals:expense_submit          POST   exp-other    login   deny    deny    deny    deny    deny    deny    deny
approvals:expense_receipt         GET    exp-own      login   allow   allow   allow   allow   deny    allow   allow
approvals:expense_receipt         GET    exp-other    login   deny    deny    allow   allow   deny    allow   allow

# Approvals: the project manager's queues
approvals:pm_time                 GET    -            login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_time                 GET    prj-own      login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_time                 GET    prj-other    login   deny    deny    deny    deny    deny    deny    deny
approvals:pm_time_approve_week    GET    time-own     method  method  method  method  method  method  method  method
approvals:pm_time_approve_week    POST   time-own     login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_time_approve_week    POST   time-other   login   deny    deny    deny    deny    deny    deny    deny
approvals:pm_work_reject          GET    time-own     method  method  method  method  method  method  method  method
approvals:pm_work_reject          POST   time-own     login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_work_reject          POST   time-other   login   deny    deny    deny    deny    deny    deny    deny
approvals:pm_milestones           GET    -            login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_milestones           GET    prj-own      login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_milestones           GET    prj-other    login   deny    deny    deny    deny    deny    deny    deny
approvals:pm_milestone_action     GET    ms-own       method  method  method  method  method  method  method  method
approvals:pm_milestone_action     POST   ms-own       login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_milestone_action     POST   ms-other     login   deny    deny    deny    deny    deny    deny    deny
approvals:pm_change_orders        GET    -            login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_change_orders        GET    prj-own      login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_change_orders        GET    prj-other    login   deny    deny    deny    deny    deny    deny    deny
approvals:pm_change_order_action  GET    co-own       method  method  method  method  method  method  method  method
approvals:pm_change_order_action  POST   co-own       login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_change_order_action  POST   co-other     login   deny    deny    deny    deny    deny    deny    deny

# Approvals: everyone's approvals and delegation
approvals:mine                    GET    -            login   allow   allow   allow   allow   allow   allow   allow
approvals:request_detail          GET    req-own      login   allow   allow   allow   allow   deny    allow   allow
approvals:request_detail          GET    req-other    login   deny    deny    allow   allow   deny    allow   allow
approvals:request_decide          GET    req-own      method  method  method  method  method  method  method  method
approvals:request_decide          POST   req-own      login   refused allow   refused refused deny    refused refused
approvals:request_decide          POST   req-other    login   deny    deny    refused refused deny    refused refused
approvals:mine_decide             GET    req-own      method  method  method  method  method  method  method  method
approvals:mine_decide             POST   req-own      login   refused allow   refused refused refused refused refused
approvals:mine_decide             POST   req-other    login   refused refused refused refused refused refused refused
approvals:delegation              GET    -            login   allow   allow   allow   allow   allow   allow   allow
approvals:delegation              POST   -            login   allow   allow   allow   allow   allow   allow   deny
approvals:delegation_end          GET    dlg-own      method  method  method  method  method  method  method  method
approvals:delegation_end          POST   dlg-own      login   allow   allow   allow   allow   allow   allow   deny
approvals:delegation_end          POST   dlg-other    login   deny    deny    deny    deny    deny    deny    deny
"""

#: Why a row reads as it does, where the table alone does not say.
NOTES: dict[str, str] = {
    "logout": "Django's LogoutView takes POST only; logging out when not logged in just lands on the login page.",
    "password_reset_confirm": "Public by design: the link in the e-mail is the credential.",
    ADMIN_CHECK: "Django admin lets staff in (its model permissions decide the rest) and sends everyone else to "
    "its login page, whatever their role.",
    "billing:run_list": "Auditors see the runs but may not start one.",
    "billing:run_resume": "Finance resumes an interrupted run (a new run bills what it left); the finished run of "
    "the matrix is refused by the service: only an interrupted run can be resumed.",
    "billing:invoice_detail": "Billing screens are for finance and auditors; collections also read the invoice page "
    "and its documents (they follow issued invoices); PMs read the invoices of their projects on their own page "
    "(`billing:pm_invoice_detail`).",
    "billing:invoice_override": "Controllers only: an analyst gets 403 even though the page is theirs.",
    "billing:invoice_write_down": "Controllers only: writing billable work off is a concession on revenue; the "
    "analyst who prepared the invoice asks a controller (ADR 0044).",
    "billing:invoice_approve": "Through the approval route: a controller cannot decide an analyst's step (no "
    "one-click override); they request an override, which a second controller confirms.",
    "billing:invoice_resend": "E-mails the issued invoice again to the client's billing addresses (delivery log).",
    "approvals:index": "Redirects each role to where it lands: PM → time queue, consultant → timesheet, "
    "others → my approvals.",
    "approvals:timesheet": "Needs a consultant record (Person) linked to the login; only the consultant has one.",
    "approvals:expense_receipt": "The person, the project's PM, finance, billing admins and auditors.",
    "approvals:pm_time": "PM queues: by role, then per object (the project filter, every listed item).",
    "approvals:pm_milestone_action": "Controllers decide milestones through their approval requests, not here.",
    "approvals:request_detail": "Who prepared or requested it, the project's PM, whoever may decide it, and "
    "finance, billing admins and auditors (read).",
    "approvals:delegation": "Everyone delegates their own approvals, but auditors, who change nothing.",
    "approvals:delegation_end": "Only the delegator, in this view (the service would also let admins and "
    "controllers); auditors change nothing.",
}

#: Cells where the server does not answer what the matrix expects — authorization holes, to be fixed in
#: the view: `(Rule.key, column) → what happens instead`. The test marks them xfail(strict=True).
KNOWN_HOLES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Rule:
    """One row: the outcome per column of a request to `pattern` with `method`, built for `target`."""

    pattern: str
    method: str
    target: str
    outcomes: tuple[Outcome, ...]  # in the order of COLUMNS
    section: str

    @property
    def key(self) -> str:
        return f"{self.pattern} {self.method} {self.target}"

    def outcome(self, column: str) -> Outcome:
        return self.outcomes[COLUMNS.index(column)]


#: Features classify their own URLs in a module of the `portal.matrix` package (one per feature, so
#: each keeps its rows next to nobody else's): `TABLE` (rows and `#` sections; a header line is
#: optional, the columns are HEADER's), and optionally `TARGETS`, `NOTES`, `KNOWN_HOLES`. The test
#: builds the objects of their targets in `tests/portal/matrix/<same module name>.py`.
def _extensions() -> list:
    import pkgutil

    from portal import matrix

    return [
        importlib.import_module(f"portal.matrix.{info.name}")
        for info in sorted(pkgutil.iter_modules(matrix.__path__), key=lambda i: i.name)
    ]


EXTENSIONS = _extensions()
for _module in EXTENSIONS:
    TARGETS.update(getattr(_module, "TARGETS", {}))
    NOTES.update(getattr(_module, "NOTES", {}))
    KNOWN_HOLES.update(getattr(_module, "KNOWN_HOLES", {}))


def _parse(table: str) -> tuple[Rule, ...]:
    lines = [line.strip() for line in table.strip().splitlines()]
    header, *body = lines
    columns = header.split()[3:]
    if [SHORT_NAMES.get(c) for c in columns] != list(COLUMNS):
        raise ValueError(f"The matrix columns {columns} do not match the roles {COLUMNS}.")
    rules: list[Rule] = []
    section = ""
    for line in body:
        if not line:
            continue
        if line.startswith("#"):
            section = line.lstrip("# ").strip()
            continue
        if line.split()[:1] == ["pattern"]:
            continue  # the header of an app's table (same columns)
        pattern, method, target, *cells = line.split()
        if method not in ("GET", "POST") or target not in TARGETS or len(cells) != len(COLUMNS):
            raise ValueError(f"Malformed matrix row: {line!r}")
        rules.append(Rule(pattern, method, target, tuple(Outcome(c) for c in cells), section))
    keys = [r.key for r in rules]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"Duplicate matrix rows: {duplicates}")
    return tuple(rules)


MATRIX: tuple[Rule, ...] = _parse(
    "\n".join([_TABLE.strip(), *(HEADER + "\n" + m.TABLE.strip() for m in EXTENSIONS)])
)


def patterns() -> set[str]:
    """The URL pattern names the matrix classifies."""
    return {rule.pattern for rule in MATRIX}


def rules_for(pattern: str) -> list[Rule]:
    return [rule for rule in MATRIX if rule.pattern == pattern]


# --- docs/permissions.md ----------------------------------------------------------------------------------------


def _cell(rule: Rule, column: str) -> str:
    outcome = rule.outcome(column).value
    hole = KNOWN_HOLES.get((rule.key, column))
    return f"{outcome} ⚠" if hole else outcome


def render_markdown() -> str:
    """The matrix as Markdown (docs/permissions.md)."""
    out = [
        "# Permissions matrix",
        "",
        "<!-- Generated from portal/permissions_matrix.py by "
        "`python -m portal.permissions_matrix > docs/permissions.md`; edit the module, not this file. -->",
        "",
        "What every URL of the portal answers to every role. The source of truth is "
        "`portal/permissions_matrix.py`; `tests/portal/test_permissions_matrix.py` requests every cell "
        "and fails when a URL pattern is not classified here.",
        "",
        "The columns are a small team: the consultant books work on the project manager's projects; everyone "
        "else holds just their role. `*-own` objects belong to that team (or, for a delegation, to the "
        "requesting user); `*-other` objects belong to another consultant, another PM's project or another "
        "user. Consultant and PM accounts are not staff, the others are (as in the demo data). Django admin "
        "(`admin:*`) is guarded by model permissions; one row checks who gets in at all.",
        "",
        "## Outcomes",
        "",
        "| outcome | meaning |",
        "|---|---|",
        *(f"| `{outcome.value}` | {text} |" for outcome, text in OUTCOMES.items()),
        "",
        "## Objects",
        "",
        "| object | what the URL is built for |",
        "|---|---|",
        *(f"| `{key}` | {text} |" for key, text in TARGETS.items()),
        "",
        "## Matrix",
    ]
    header = "| URL name | method | object | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |"
    rule_line = "|---|---|---|" + "---|" * len(COLUMNS)
    section = None
    for rule in MATRIX:
        if rule.section != section:
            section = rule.section
            out += ["", f"### {section}", "", header, rule_line]
        cells = " | ".join(_cell(rule, c) for c in COLUMNS)
        out.append(f"| `{rule.pattern}` | {rule.method} | `{rule.target}` | {cells} |")
    out += ["", "## Notes", "", "| URL name | note |", "|---|---|"]
    out += [f"| `{pattern}` | {note} |" for pattern, note in NOTES.items()]
    out += ["", "## Known holes", ""]
    if KNOWN_HOLES:
        out += ["Cells marked ⚠ above: the server answers otherwise, until the view is fixed.", ""]
        out += ["| URL name, method, object | role | what happens instead |", "|---|---|---|"]
        out += [f"| `{key}` | {column} | {text} |" for (key, column), text in KNOWN_HOLES.items()]
    else:
        out.append("None: every cell is answered as the matrix says.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
