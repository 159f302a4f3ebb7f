"""Demo data for `manage.py seed_demo`: a small consulting group, deterministic and idempotent.

The data is built in *blocks*. Block 0 is the curated firm of the demo (40 clients,
84 people, 60 contracts, three months of time); `--scale N` adds blocks 1..N-1 of
the same shape with generated names. Each block is created in one transaction
from its own `random.Random(f"{seed}:{block}")`, so block k is the same whatever
the scale, and a block that exists is skipped: running the command twice changes
nothing, and raising the scale only adds the missing blocks.

Every block carries the cases the exception queue and the approval screens need:
a client with an invalid VAT id, one with an incomplete address, one on credit
hold, a PO-required contract without a PO, pending and approved change orders,
a cap that the work exceeds, a project on hold with approved time, a rate card
without an ANALYST rate, an expense in a currency without FX rates, and time in
every status. No invoices are created: the billing engine makes those.
"""
from __future__ import annotations

import importlib
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models, transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history
from stdnum import luhn
from stdnum.at import uid as at_uid
from stdnum.ch import uid as ch_uid
from stdnum.iso7064 import mod_11_10

from approvals.models import ApprovalRequest
from billing.models import (
    ChangeOrder,
    ChangeOrderMilestone,
    ChangeOrderRate,
    Client,
    Contract,
    ContractRate,
    Expense,
    FxRate,
    LegalEntity,
    Milestone,
    Person,
    Project,
    RateCard,
    RateCardLine,
    Role,
    TimeEntry,
)
from billing.models.contracts import contract_terms_unlocked
from billing.vat import vat_id_is_valid

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - documented demo credential
DEFAULT_SEED = 2026
CHANGE_REASON = "Demo data (seed_demo)"

PERIOD_START = date(2026, 8, 1)
PERIOD_END = date(2026, 10, 31)
RATE_INCREASE = date(2026, 9, 1)
CHANGE_ORDER_RATES_FROM = date(2026, 9, 15)
PM_BACKLOG_FROM = date(2026, 10, 19)  # the demo `pm`'s projects: time from here on still awaits approval
FX_START = date(2026, 1, 1)
FX_END = date(2026, 11, 30)

CLIENTS_PER_BLOCK = 40
PEOPLE_PER_BLOCK = 84
PMS_PER_BLOCK = 6
BATCH = 2000


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    last_name: str
    group: str
    role_label: str
    is_staff: bool = True
    is_superuser: bool = False


DEMO_USERS = (
    DemoUser("consultant", "Lena", "Hoffmann", "consultant", "Consultant", is_staff=False),
    DemoUser("pm", "Paul", "Meyer", "project_manager", "Project manager", is_staff=False),
    DemoUser("analyst", "Anna", "Schulz", "finance_analyst", "Finance analyst"),
    # A second analyst and a second controller: a route's steps need different people (segregation of
    # duties), so the demo logins alone can walk analyst → controller → second controller.
    DemoUser("analyst2", "Mia", "Vogel", "finance_analyst", "Finance analyst (second)"),
    DemoUser("controller", "Carl", "Richter", "finance_controller", "Finance controller"),
    DemoUser("controller2", "Oliver", "Grant", "finance_controller", "Finance controller (second)"),
    DemoUser("collections", "Cora", "Lang", "collections", "Collections"),
    DemoUser("admin", "Ada", "Brandt", "billing_admin", "Billing admin (superuser)", is_superuser=True),
    DemoUser("auditor", "Arne", "Fischer", "auditor", "Auditor"),
)
ROLE_GROUPS = (
    "consultant",
    "project_manager",
    "finance_analyst",
    "finance_controller",
    "collections",
    "billing_admin",
    "auditor",
)

# --------------------------------------------------------------------------- reference data

ENTITIES = (
    dict(code="NWB", name="Nordwind Beratung GmbH", country="DE", currency="EUR", vat_id="DE136695976",
         address_line1="Große Elbstraße 145", city="Hamburg", postal_code="22767", invoice_prefix="NWB",
         bank_name="Hamburger Handelsbank", iban="DE89370400440532013000", bic="COBADEFFXXX",
         contact_name="Debitorenbuchhaltung", contact_phone="+49 40 3005 1000",
         contact_email="rechnung@nordwind.example",
         register_court="Amtsgericht Hamburg", register_number="HRB 187342",
         managing_directors="Dr. Jana Petersen, Malte Ohlsen"),
    dict(code="TLL", name="Thames Ledger Ltd", country="GB", currency="GBP", vat_id="GB980780684",
         address_line1="1 Paternoster Lane", city="London", postal_code="EC4M 7BQ", invoice_prefix="TLL",
         bank_name="City & Thames Bank", iban="GB29NWBK60161331926819", bic="NWBKGB2L",
         contact_name="Accounts receivable", contact_phone="+44 20 7946 0100", contact_email="ar@thamesledger.example",
         register_court="Registered in England and Wales", register_number="09876543",
         registered_office="1 Paternoster Lane, London EC4M 7BQ", managing_directors="Eleanor Whitcombe"),
    dict(code="HUD", name="Hudson Advisory Inc", country="US", currency="USD", vat_id="",
         address_line1="350 Fifth Avenue", city="New York, NY", postal_code="10118", invoice_prefix="HUD",
         bank_name="First Hudson Bank", peppol_id="9959:041234567",
         bank_account_number="483920174415", bank_routing_number="021000021",
         remittance_address="Remittance advice to ar@hudson.example; checks payable to Hudson Advisory Inc, "
         "PO Box 4410, New York, NY 10163",
         sales_tax_statement="Consulting services are not subject to New York State sales tax; no sales tax "
         "is charged.",
         contact_name="Accounts receivable", contact_phone="+1 212 555 0100", contact_email="ar@hudson.example"),
)
ENTITY_FOR_CURRENCY = {"EUR": "NWB", "GBP": "TLL", "USD": "HUD"}

ROLES = (("PARTNER", "Partner"), ("SENIOR", "Senior consultant"), ("CONSULTANT", "Consultant"),
         ("ANALYST", "Analyst"))
# Hourly list prices before / from the September increase.
BASE_RATES = {
    "EUR": {"PARTNER": 340, "SENIOR": 220, "CONSULTANT": 160, "ANALYST": 110},
    "GBP": {"PARTNER": 300, "SENIOR": 190, "CONSULTANT": 140, "ANALYST": 95},
    "USD": {"PARTNER": 400, "SENIOR": 260, "CONSULTANT": 190, "ANALYST": 130},
}
INCREASE_PCT = Decimal("4")
LEGACY_CARD = "LEGACY-GBP"

# 1 unit = x EUR on FX_START; the other pairs are crossed from these.
FX_BASE = {"EUR": 1.0, "GBP": 1.1650, "USD": 0.9150, "CHF": 1.0680}
FX_PAIRS = tuple((f, t) for f in ("EUR", "GBP", "USD", "CHF") for t in ("EUR", "GBP", "USD") if f != t)

# --------------------------------------------------------------------------- clients of block 0

# (legal name, country, street, postal code, city, tags). Currency follows the country.
CLIENTS = (
    ("Hanse Kontor Logistik GmbH", "DE", "Am Sandtorkai 12", "20457", "Hamburg", ""),
    ("Bergmann Maschinenbau AG", "DE", "Königstraße 28", "70173", "Stuttgart", "pending_co"),
    ("Elbtal Energie GmbH", "DE", "Ostra-Allee 9", "01067", "Dresden", "foreign_expense,public_buyer"),
    ("Rheinblick Versicherung AG", "DE", "Hohe Straße 41", "50667", "Köln", "po"),
    ("Isarwerk Software GmbH", "DE", "Sendlinger Straße 7", "80331", "München", "small_cap"),
    ("Spreepark Immobilien GmbH", "DE", "Friedrichstraße 95", "10117", "Berlin", "approved_co"),
    ("Mainufer Handelshaus KG", "DE", "Mainkai 3", "60311", "Frankfurt am Main", "on_hold"),
    ("Weserland Lebensmittel GmbH", "DE", "Obernstraße 18", "28195", "Bremen", ""),
    ("Schwarzwald Präzision GmbH", "DE", "Kaiser-Joseph-Straße 210", "79098", "Freiburg", ""),
    ("Nordlicht Medien GmbH", "DE", "Georgstraße 22", "30159", "Hannover", ""),
    ("Ruhrtal Stahlhandel GmbH", "DE", "Kettwiger Straße 4", "45127", "Essen", "invalid_vat"),
    ("Lindenhof Kliniken gGmbH", "DE", "", "04109", "Leipzig", "no_address"),
    ("Donau Consulting Partner GmbH", "AT", "Graben 19", "1010", "Wien", ""),
    ("Tiroler Bergbahnen AG", "AT", "Maria-Theresien-Straße 18", "6020", "Innsbruck", ""),
    ("Grazer Verkehrsbetriebe GmbH", "AT", "Jakominiplatz 1", "8010", "Graz", ""),
    ("Verein Wiener Kulturhäuser", "AT", "Neubaugasse 25", "1070", "Wien", "no_vat"),
    ("Grachtenhuis Vastgoed B.V.", "NL", "Herengracht 420", "1017 BZ", "Amsterdam", ""),
    ("Maasdelta Havendiensten B.V.", "NL", "Wijnhaven 3", "3011 WG", "Rotterdam", ""),
    ("Utrechtse Zorggroep B.V.", "NL", "Oudegracht 112", "3511 AW", "Utrecht", ""),
    ("Polderwind Energie N.V.", "NL", "Stationsplein 45", "3013 AK", "Rotterdam", "po,po_missing"),
    ("Brabant Textiel NV", "BE", "Meir 78", "2000", "Antwerpen", "pending_co"),
    ("Atomium Digital SA", "BE", "Rue Neuve 123", "1000", "Bruxelles", ""),
    ("Gentse Bouwgroep BV", "BE", "Korenmarkt 16", "9000", "Gent", ""),
    ("Société Lyonnaise de Transports SAS", "FR", "12 Rue de la République", "69002", "Lyon", ""),
    ("Atelier Rive Gauche SARL", "FR", "45 Boulevard Saint-Germain", "75005", "Paris", "via_tll"),
    ("Bordelais Vignobles SA", "FR", "8 Cours de l'Intendance", "33000", "Bordeaux", ""),
    ("Normandie Agro SAS", "FR", "21 Rue Saint-Pierre", "14000", "Caen", ""),
    ("Limmat Privatbank AG", "CH", "Bahnhofstrasse 45", "8001", "Zürich", ""),
    ("Léman Horlogerie SA", "CH", "Rue du Rhône 62", "1204", "Genève", ""),
    ("Thames Valley Utilities plc", "GB", "Forbury Road 1", "RG1 3JH", "Reading", "po"),
    ("Pennine Outdoor Ltd", "GB", "Briggate 40", "LS1 6HD", "Leeds", "legacy_card"),
    ("Clyde Shipping Ltd", "GB", "Broomielaw 50", "G1 4RU", "Glasgow", ""),
    ("Severn Aerospace Components Ltd", "GB", "Temple Way 10", "BS2 0BY", "Bristol", "approved_co"),
    ("Camden Publishing Ltd", "GB", "Camden High Street 200", "NW1 8QP", "London", ""),
    ("Mersey Health Partners Ltd", "GB", "Water Street 8", "L2 8TD", "Liverpool", "credit_hold"),
    ("Hudson River Capital LLC", "US", "200 Vesey Street", "10281", "New York, NY", "via_nwb"),
    ("Great Lakes Freight Inc.", "US", "233 S Wacker Drive", "60606", "Chicago, IL", ""),
    ("Bay Area Robotics Inc.", "US", "500 Howard Street", "94105", "San Francisco, CA", ""),
    ("Lone Star Energy Corp.", "US", "811 Main Street", "77002", "Houston, TX", "po"),
    ("Peachtree Health Systems Inc.", "US", "1100 Peachtree Street NE", "30309", "Atlanta, GA", ""),
)
assert len(CLIENTS) == CLIENTS_PER_BLOCK
CURRENCY_OF_COUNTRY = {"DE": "EUR", "AT": "EUR", "NL": "EUR", "BE": "EUR", "FR": "EUR", "CH": "CHF",
                       "GB": "GBP", "US": "USD"}

# Word lists for the generated clients of blocks 1.. (legal form per country).
NAME_PARTS = {
    "DE": (("Alster", "Havel", "Harz", "Eifel", "Taunus", "Rhön", "Allgäu", "Spessart", "Fläming", "Uckermark"),
           ("Logistik", "Maschinenbau", "Energie", "Handel", "Software", "Immobilien", "Chemie", "Medien"),
           ("GmbH", "AG", "GmbH & Co. KG")),
    "AT": (("Wachau", "Salzach", "Kärnten", "Mühlviertel", "Steirer"), ("Holz", "Tourismus", "Bau", "Handel"),
           ("GmbH", "AG")),
    "NL": (("Zuiderzee", "Veluwe", "Kempen", "Waddenzee", "Betuwe"), ("Logistiek", "Techniek", "Zorg", "Bouw"),
           ("B.V.", "N.V.")),
    "BE": (("Schelde", "Ardennen", "Kempen", "Leie"), ("Staal", "Chocolade", "Diamant", "Havens"), ("NV", "SA")),
    "FR": (("Loire", "Provence", "Alsace", "Bretagne", "Vosges"), ("Industrie", "Transports", "Énergie", "Conseil"),
           ("SAS", "SA", "SARL")),
    "CH": (("Aare", "Jura", "Engadin", "Ticino"), ("Privatbank", "Pharma", "Präzision"), ("AG", "SA")),
    "GB": (("Cotswold", "Tyne", "Solent", "Fenland", "Cairngorm", "Humber"),
           ("Utilities", "Engineering", "Retail", "Shipping", "Media"), ("Ltd", "plc")),
    "US": (("Cascade", "Hudson", "Prairie", "Ozark", "Sierra", "Gulf Coast"),
           ("Freight", "Energy", "Robotics", "Health", "Capital"), ("Inc.", "LLC", "Corp.")),
}
CITIES = {
    "DE": (("Hamburg", "20095"), ("Berlin", "10115"), ("München", "80331"), ("Köln", "50667"),
           ("Düsseldorf", "40213")),
    "AT": (("Wien", "1010"), ("Salzburg", "5020"), ("Linz", "4020")),
    "NL": (("Amsterdam", "1012 AB"), ("Den Haag", "2511 CV"), ("Eindhoven", "5611 AZ")),
    "BE": (("Antwerpen", "2000"), ("Liège", "4000"), ("Brugge", "8000")),
    "FR": (("Paris", "75008"), ("Lille", "59000"), ("Nantes", "44000"), ("Toulouse", "31000")),
    "CH": (("Basel", "4051"), ("Bern", "3011"), ("Lugano", "6900")),
    "GB": (("Manchester", "M1 1AE"), ("Birmingham", "B2 4QA"), ("Edinburgh", "EH2 2ER"), ("Cardiff", "CF10 1EP")),
    "US": (("Boston, MA", "02110"), ("Seattle, WA", "98101"), ("Denver, CO", "80202"), ("Miami, FL", "33131")),
}
STREETS = ("Hauptstraße 5", "Marktplatz 2", "Station Road 14", "High Street 88", "Main Street 300",
           "Kerkstraat 21", "Rue de la Gare 9", "Industrieweg 40")

FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Julia", "Karl",
               "Laura", "Lukas", "Marie", "Max", "Nina", "Oliver", "Paula", "Sophie", "Tom", "Amelia", "Harry",
               "Olivia", "George", "Isla", "James", "Chloé", "Louis", "Camille", "Hugo", "Sanne", "Daan", "Lotte",
               "Emily", "Michael", "Sarah", "Daniel", "Grace", "Ethan", "Priya")
LAST_NAMES = ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner", "Becker", "Schäfer", "Koch",
              "Bauer", "Klein", "Wolf", "Neumann", "Schwarz", "Zimmermann", "Krüger", "Smith", "Jones", "Taylor",
              "Brown", "Williams", "Evans", "Dubois", "Lefèvre", "Moreau", "Laurent", "de Vries", "Jansen",
              "Bakker", "Visser", "Johnson", "Miller", "Davis", "Garcia", "Anderson", "Clark", "Patel", "Nguyen",
              "Rossi", "Novak")
PM_NAMES = (("Jana", "Becker"), ("Tobias", "Krause"), ("Hannah", "Wright"), ("Mark", "Collins"),
            ("Sofia", "Romano"))
PRACTICES = ("Strategy", "Finance Transformation", "Technology", "Operations", "Risk & Compliance",
             "People & Change")
PROJECT_TOPICS = ("ERP rollout", "Finance transformation", "Cost reduction", "Data platform", "Supply chain review",
                  "Regulatory reporting", "Pricing strategy", "Post-merger integration", "Cloud migration",
                  "Procurement excellence", "Treasury redesign", "Customer analytics", "Risk framework",
                  "Operating model", "IT due diligence", "Workforce planning")
TASKS = ("Workshop with client finance team", "Process mapping", "Status meeting and minutes", "Data analysis",
         "Requirements interviews", "Steering committee preparation", "Solution design", "Testing support",
         "Stakeholder alignment", "Report drafting", "Model build", "Review of deliverables",
         "Training session", "Travel time (billable)", "Documentation")
REJECTIONS = ("Please split the workshop hours by workstream.",
              "Booked on the wrong project — rebook to the change-request project.",
              "Description too vague for the client report; say what was delivered.",
              "Hours exceed what was agreed for this week; please check.")
MILESTONE_NAMES = ("Kick-off and discovery report", "Target design signed off", "Pilot go-live",
                   "Rollout complete", "Hypercare closed")


# --------------------------------------------------------------------------- VAT ids


def _digits(rng: random.Random, n: int, first_nonzero: bool = True) -> str:
    head = str(rng.randint(1, 9)) if first_nonzero else str(rng.randint(0, 9))
    return head + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))


def valid_vat_id(rng: random.Random, country: str) -> str:
    """A VAT id with correct check digits for `country` (checked with python-stdnum)."""
    for _ in range(1000):
        if country == "DE":
            body = _digits(rng, 8)
            vat = f"DE{body}{mod_11_10.calc_check_digit(body)}"
        elif country == "AT":
            body = _digits(rng, 7)
            vat = f"ATU{body}{at_uid.calc_check_digit('U' + body)}"
        elif country == "NL":
            body = _digits(rng, 8)
            vat = f"NL{body}{rng.randint(0, 9)}B01"
        elif country == "BE":
            body = "0" + _digits(rng, 7)
            vat = f"BE{body}{97 - int(body) % 97:02d}"
        elif country == "FR":
            siren = _digits(rng, 8)
            siren += luhn.calc_check_digit(siren)
            vat = f"FR{(12 + 3 * (int(siren) % 97)) % 97:02d}{siren}"
        elif country == "GB":
            vat = f"GB{_digits(rng, 9)}"
        elif country == "CH":
            body = _digits(rng, 8)
            num = body + ch_uid.calc_check_digit(body)
            vat = f"CHE-{num[:3]}.{num[3:6]}.{num[6:]} MWST"
        else:
            return ""
        if vat_id_is_valid(vat, country):
            return vat
    raise RuntimeError(f"could not generate a VAT id for {country}")  # pragma: no cover


# --------------------------------------------------------------------------- helpers


def _money(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def _at(day: date, hour: int = 17) -> datetime:
    return datetime.combine(day, time(hour, 0), tzinfo=UTC)


def _weekdays(start: date, end: date) -> list[date]:
    days, d = [], start
    while d <= end:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def demo_peppol_id(country: str, vat_id: str, n: int) -> str:
    """A Peppol participant id where the VAT id gives none or Peppol prefers another (ADR 0056).

    Belgian companies are reached under their enterprise number (0208, the VAT
    number's digits); a US company under its EIN (9959); a party without a VAT id
    under a GLN (0088, check digit computed). Others use their VAT id (empty here).
    """
    if country == "BE" and vat_id:
        return f"0208:{vat_id.removeprefix('BE')}"
    if country == "US":
        return f"9959:04{(n * 7919) % 10**7:07d}"
    if not vat_id:
        body = f"400{n:09d}"
        check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10) % 10
        return f"0088:{body}{check}"
    return ""


def demo_leitweg_id(n: int) -> str:
    """A well-formed Leitweg-ID (coarse address of Dresden, fine address from the client number)."""
    from stdnum.iso7064 import mod_97_10

    body = f"14612000-{n:05d}"
    return f"{body}-{mod_97_10.calc_check_digits(body.replace('-', ''))}"


def _slug(text: str) -> str:
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "è": "e", "ô": "o", "ç": "c"})
    return "".join(ch for ch in text.lower().translate(table) if ch.isalnum())


@dataclass
class Context:
    """What every block needs from the reference data."""

    seed: int
    entities: dict[str, LegalEntity]
    roles: dict[str, Role]
    rate_cards: dict[str, RateCard]
    demo_users: dict[str, models.Model]
    password_hash: str
    created: Counter = field(default_factory=Counter)


def _create(model: type[models.Model], objs: list, ctx: Context, *, history: bool = True) -> list:
    """bulk_create (with creation history, attributed to the admin user) and count."""
    if not objs:
        return objs
    if history and hasattr(model, "history"):
        objs = bulk_create_with_history(
            objs, model, batch_size=BATCH, default_user=ctx.demo_users.get("admin"),
            default_change_reason=CHANGE_REASON,
        )
    else:
        objs = model.objects.bulk_create(objs, batch_size=BATCH)
    ctx.created[model._meta.verbose_name_plural] += len(objs)
    return objs


def _db_value(value: object) -> object:
    """A value as the SQLite backend stores it (PostgreSQL's COPY takes Python values as they are)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    if isinstance(value, date | Decimal):
        return str(value)
    return value


def _fast_create(model: type[models.Model], rows: list[dict], ctx: Context) -> None:
    """Insert plain rows (attname -> value) and their creation history without model instances.

    For the volume tables (time entries, expenses): Django's bulk_create prepares every
    value of every field in Python, which dominates at 750k rows. Ids are reserved up
    front so the history rows can point at them; PostgreSQL gets COPY, SQLite executemany.
    """
    if not rows:
        return
    now = timezone.now()
    table = model._meta.db_table
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults = {f.attname: (now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
                            else f.get_default()) for f in fields}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                           [table, len(rows)])
            ids = [r[0] for r in cursor.fetchall()]
        else:
            cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')  # noqa: S608 - table name from _meta
            first = cursor.fetchone()[0] + 1
            ids = list(range(first, first + len(rows)))
    attnames = [f.attname for f in fields]
    values = [(pk, *(row.get(a, defaults[a]) for a in attnames)) for pk, row in zip(ids, rows, strict=True)]
    _insert(table, ["id", *[f.column for f in fields]], values)
    ctx.created[model._meta.verbose_name_plural] += len(rows)

    history = model.history.model
    tracked = [f.attname for f in history.tracked_fields]
    position = {a: i for i, a in enumerate(["id", *attnames])}
    user = ctx.demo_users.get("admin")
    extra = (now, CHANGE_REASON, "+", user.pk if user else None)
    history_columns = [f.column for f in history.tracked_fields]
    _insert(history._meta.db_table,
            [*history_columns, "history_date", "history_change_reason", "history_type", "history_user_id"],
            [(*(v[position[a]] for a in tracked), *extra) for v in values])


def _insert(table: str, columns: list[str], values: list[tuple]) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                for row in values:
                    copy.write_row(row)
        else:
            sql = f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join(["%s"] * len(columns))})'  # noqa: S608
            for start in range(0, len(values), BATCH * 10):
                cursor.executemany(sql, [tuple(map(_db_value, row)) for row in values[start:start + BATCH * 10]])


# --------------------------------------------------------------------------- reference data


def seed_reference(seed: int) -> Context:
    """Entities, roles, rate cards, FX rates, role groups and the demo users (get-or-create)."""
    created: Counter = Counter()

    def count(model: type[models.Model], was_created: bool) -> None:
        if was_created:
            created[model._meta.verbose_name_plural] += 1

    groups = {}
    for name in ROLE_GROUPS:
        groups[name], was_created = Group.objects.get_or_create(name=name)
        count(Group, was_created)

    password_hash = make_password(DEMO_PASSWORD)
    user_model = get_user_model()
    users = {}
    for spec in DEMO_USERS:
        user, was_created = user_model.objects.get_or_create(
            username=spec.username,
            defaults=dict(first_name=spec.first_name, last_name=spec.last_name,
                          email=f"{spec.username}@billable.example", is_staff=spec.is_staff,
                          is_superuser=spec.is_superuser, password=password_hash),
        )
        user.groups.add(groups[spec.group])
        count(user_model, was_created)
        users[spec.username] = user

    entities = {}
    for spec in ENTITIES:
        entities[spec["code"]], was_created = LegalEntity.objects.get_or_create(
            code=spec["code"], defaults={k: v for k, v in spec.items() if k != "code"}
        )
        count(LegalEntity, was_created)

    roles = {}
    for code, name in ROLES:
        roles[code], was_created = Role.objects.get_or_create(code=code, defaults={"name": name})
        count(Role, was_created)

    rate_cards = {}
    for currency, rates in BASE_RATES.items():
        card, was_created = RateCard.objects.get_or_create(
            code=f"STD-{currency}", defaults={"name": f"Standard rates {currency}", "currency": currency}
        )
        count(RateCard, was_created)
        rate_cards[card.code] = card
        for role, rate in rates.items():
            old, new = Decimal(rate), (Decimal(rate) * (1 + INCREASE_PCT / 100)).quantize(Decimal("1"))
            periods = ((date(2026, 1, 1), RATE_INCREASE - timedelta(days=1), old), (RATE_INCREASE, None, new))
            for start, end, value in periods:
                _, was_created = RateCardLine.objects.get_or_create(
                    rate_card=card, role=roles[role], effective_from=start,
                    defaults={"rate": value, "effective_to": end},
                )
                count(RateCardLine, was_created)
    legacy, was_created = RateCard.objects.get_or_create(
        code=LEGACY_CARD, defaults={"name": "Legacy 2025 rates (no analyst rate)", "currency": "GBP"}
    )
    count(RateCard, was_created)
    rate_cards[LEGACY_CARD] = legacy
    for role in ("PARTNER", "SENIOR", "CONSULTANT"):
        _, was_created = RateCardLine.objects.get_or_create(
            rate_card=legacy, role=roles[role], effective_from=date(2025, 1, 1),
            defaults={"rate": Decimal(BASE_RATES["GBP"][role]) - 10},
        )
        count(RateCardLine, was_created)

    created[FxRate._meta.verbose_name_plural] += seed_fx_rates(seed)
    ctx = Context(seed=seed, entities=entities, roles=roles, rate_cards=rate_cards, demo_users=users,
                  password_hash=password_hash)
    ctx.created.update(+created)
    return ctx


def fx_series(seed: int) -> dict[tuple[str, str, date], Decimal]:
    """Daily (weekday) rates for every pair of FX_PAIRS: a seeded random walk around FX_BASE."""
    rng = random.Random(f"{seed}:fx")
    level = dict(FX_BASE)
    rates = {}
    for day in _weekdays(FX_START, FX_END):
        for cur in ("GBP", "USD", "CHF"):
            level[cur] *= 1 + rng.gauss(0, 0.003)
        for from_cur, to_cur in FX_PAIRS:
            rates[(from_cur, to_cur, day)] = Decimal(f"{level[from_cur] / level[to_cur]:.6f}")
    return rates


def seed_fx_rates(seed: int) -> int:
    existing = set(FxRate.objects.values_list("from_currency", "to_currency", "date"))
    missing = [
        FxRate(from_currency=f, to_currency=t, date=d, rate=r)
        for (f, t, d), r in fx_series(seed).items()
        if (f, t, d) not in existing
    ]
    FxRate.objects.bulk_create(missing, batch_size=BATCH)
    return len(missing)


# --------------------------------------------------------------------------- one block


def block_marker(block: int) -> str:
    return f"CL{block * CLIENTS_PER_BLOCK + 1:05d}"


def seed_block(ctx: Context, block: int) -> Counter:
    """Create block `block` (clients, people, contracts, projects, work) in one transaction."""
    before = Counter(ctx.created)
    with transaction.atomic():
        if Client.objects.filter(code=block_marker(block)).exists():
            return Counter()
        _Block(ctx, block).build()
    return Counter({k: v - before.get(k, 0) for k, v in ctx.created.items() if v - before.get(k, 0)})


class _Block:
    def __init__(self, ctx: Context, block: int):
        self.ctx = ctx
        self.block = block
        self.rng = random.Random(f"{ctx.seed}:{block}")

    def n(self, i: int, per_block: int) -> int:
        """Global 1-based number of the i-th object of this block."""
        return self.block * per_block + i + 1

    def build(self) -> None:
        self.pm_users = self.make_pm_users()
        self.clients = self.make_clients()
        self.people = self.make_people()
        self.contracts = self.make_contracts()
        self.projects = self.make_projects()
        self.assignments = self.assign_people()
        with contract_terms_unlocked("demo data: contracts as signed"):
            self.make_rates_and_change_orders()
        self.make_milestones()
        self.make_work()

    # ----- users and master data

    def make_pm_users(self) -> list:
        user_model = get_user_model()
        group = Group.objects.get(name="project_manager")
        users = []
        if self.block == 0:
            users.append(self.ctx.demo_users["pm"])
        new = []
        for k in range(len(users), PMS_PER_BLOCK):
            first, last = PM_NAMES[k - 1] if self.block == 0 else (
                self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES))
            number = self.block * PMS_PER_BLOCK + k
            new.append(user_model(
                username=f"pm{number:04d}", first_name=first, last_name=last,
                email=f"{_slug(first)}.{_slug(last)}.{number}@billable.example", password=make_password(None),
            ))
        new = user_model.objects.bulk_create(new)
        group.user_set.add(*new)
        self.ctx.created[user_model._meta.verbose_name_plural] += len(new)
        return users + new

    def make_clients(self) -> list[Client]:
        rng = self.rng
        clients = []
        for i, (name, country, street, postcode, city, tags) in enumerate(CLIENTS):
            tags = set(filter(None, tags.split(",")))
            n = self.n(i, CLIENTS_PER_BLOCK)
            if self.block:
                first, trade, forms = NAME_PARTS[country]
                name = f"{rng.choice(first)} {rng.choice(trade)} {rng.choice(forms)}"
                city, postcode = rng.choice(CITIES[country])
                street = "" if "no_address" in tags else rng.choice(STREETS)
            vat = "" if country == "US" or "no_vat" in tags else valid_vat_id(rng, country)
            if "invalid_vat" in tags:
                vat = "DE136695977"  # the entity's id with a wrong check digit
            domain = _slug(name.split()[0]) + _slug(name.split()[1])[:6]
            client = Client(
                code=f"CL{n:05d}", legal_name=name, address_line1=street, city=city, postal_code=postcode,
                country=country, vat_id=vat, currency=CURRENCY_OF_COUNTRY[country],
                peppol_id=demo_peppol_id(country, vat, n),
                # Belgian B2B invoices go over Peppol (mandatory since January 2026).
                delivery_channel="peppol" if country == "BE" and vat else "email",
                not_vat_registered="no_vat" in tags and country != "US",
                # A municipal utility: a German public buyer, invoiced with an XRechnung under its Leitweg-ID.
                leitweg_id=demo_leitweg_id(n) if "public_buyer" in tags else "",
                # French buyers get Factur-X PDFs (the CII e-invoice inside the PDF).
                facturx=country == "FR",
                payment_terms_days=rng.choice((14, 30, 30, 30, 45, 60)),
                po_required="po" in tags, credit_hold="credit_hold" in tags,
                billing_emails=f"accounts.payable@{domain}.example",
                source="crm", external_id=f"CRM-{n:06d}", erp_id=f"D{100000 + n}",
            )
            client.tags = tags
            clients.append(client)
        created = _create(Client, clients, self.ctx)
        for c, original in zip(created, clients, strict=True):
            c.tags = original.tags
        return created

    def make_people(self) -> list[Person]:
        rng = self.rng
        roles = ["PARTNER"] * 6 + ["SENIOR"] * 20 + ["CONSULTANT"] * 36 + ["ANALYST"] * 22
        assert len(roles) == PEOPLE_PER_BLOCK
        entity_codes = rng.choices(["NWB", "TLL", "HUD"], weights=[55, 25, 20], k=PEOPLE_PER_BLOCK)
        people = []
        consultant = self.ctx.demo_users["consultant"]
        link_consultant = self.block == 0 and not Person.objects.filter(user=consultant).exists()
        for i, role in enumerate(roles):
            n = self.n(i, PEOPLE_PER_BLOCK)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            user = None
            if link_consultant and role == "CONSULTANT" and i == roles.index("CONSULTANT"):
                first, last, user, entity_codes[i] = consultant.first_name, consultant.last_name, consultant, "NWB"
            people.append(Person(
                code=f"P{n:05d}", name=f"{first} {last}", email=f"{_slug(first)}.{_slug(last)}.{n}@billable.example",
                role=self.ctx.roles[role], user=user, home_entity=self.ctx.entities[entity_codes[i]],
                source="psa", external_id=f"EMP-{n:06d}",
            ))
        return _create(Person, people, self.ctx)

    # ----- contracts and projects

    def make_contracts(self) -> list[Contract]:
        rng = self.rng
        tm, ff, ret = (Contract.BillingModel.TIME_AND_MATERIALS, Contract.BillingModel.FIXED_FEE,
                       Contract.BillingModel.RETAINER)
        cycle = (tm, tm, ff, tm, ret, tm, ff, tm, tm, ret, ff, tm)
        # One contract per client, a second one for the first 20 (60 in all).
        owners = list(range(CLIENTS_PER_BLOCK)) + list(range(20))
        contracts = []
        for j, ci in enumerate(owners):
            client = self.clients[ci]
            first_contract = j < CLIENTS_PER_BLOCK
            special = client.tags - {"po", "no_vat"} if first_contract else set()
            model = tm if special else cycle[j % len(cycle)]
            currency = "EUR" if client.currency == "CHF" else client.currency
            if first_contract and "via_nwb" in client.tags:
                currency = "EUR"
            if first_contract and "via_tll" in client.tags:
                currency = "GBP"
            entity = self.ctx.entities[ENTITY_FOR_CURRENCY[currency]]
            card = self.ctx.rate_cards[LEGACY_CARD if "legacy_card" in special else f"STD-{currency}"]
            n = self.n(j, 60)
            c = Contract(
                code=f"CT{n:05d}", client=client, entity=entity, billing_model=model, currency=currency,
                rate_card=card, status=Contract.Status.ACTIVE, source="crm", external_id=f"OPP-{n:06d}",
                billing_frequency=Contract.Frequency.MONTHLY,
                sow_signed_on=date(2025, 6, 1) + timedelta(days=rng.randint(0, 390)),
                expense_markup_pct=Decimal(rng.choice((0, 0, 0, 5, 10))),
                discount_pct=Decimal(rng.choice((0, 0, 0, 0, 3, 5, 10))),
                payment_terms_days=rng.choice((None, None, None, 30, 45)),
            )
            if client.po_required and "po_missing" not in special:
                c.po_number = f"PO-{rng.randint(4500000000, 4599999999)}"
            if model == tm:
                c.name = "Time & materials services"
                if "small_cap" in special:
                    c.cap = Decimal("25000.00")
                elif rng.random() < 0.3:
                    c.cap = Decimal(rng.choice((250, 400, 600, 900))) * 1000
            elif model == ff:
                c.name = "Fixed-fee engagement"
                c.billing_frequency = Contract.Frequency.ON_MILESTONE
                c.cap = Decimal(rng.choice((60, 90, 120, 180, 240))) * 1000  # the fee: milestones add up to it
            else:
                c.name = "Advisory retainer"
                c.retainer_amount = Decimal(rng.choice((8, 12, 15, 20, 30))) * 1000
                c.included_hours = Decimal(rng.choice((40, 60, 80, 120)))
            c.project_count = 2 if model == tm and j % 5 == 0 else 1
            c.invoice_per_project = c.project_count == 2 and rng.random() < 0.5
            c.tags = special
            contracts.append(c)
        created = _create(Contract, contracts, self.ctx)
        for c, original in zip(created, contracts, strict=True):
            c.tags, c.project_count = original.tags, original.project_count
        return created

    def make_projects(self) -> list[Project]:
        rng = self.rng
        slots = [(contract, p) for contract in self.contracts for p in range(contract.project_count)]
        # Every status: on hold (with approved time), completed, planned and closed on plain contracts.
        statuses = [Project.Status.ON_HOLD if "on_hold" in c.tags else Project.Status.ACTIVE for c, _ in slots]
        plain = [k for k, (c, _) in enumerate(slots)
                 if not c.tags and c.billing_model != Contract.BillingModel.RETAINER]
        for k, status in zip(plain[3::7], ("completed", "planned", "completed", "closed", "on_hold"), strict=False):
            statuses[k] = status
        projects = []
        for k, ((contract, p), status) in enumerate(zip(slots, statuses, strict=True)):
            n = self.block * 1000 + k + 1
            topic = rng.choice(PROJECT_TOPICS)
            project = Project(
                contract=contract, code=f"PR{n:05d}", name=f"{topic}{' – phase 2' if p else ''}",
                business_unit=rng.choice(PRACTICES), status=status,
                project_manager=self.pm_users[k % PMS_PER_BLOCK], source="psa", external_id=f"PSA-{n:06d}",
            )
            project.tags = contract.tags
            projects.append(project)
        created = _create(Project, projects, self.ctx)
        for p, original in zip(created, projects, strict=True):
            p.tags = original.tags
        return created

    def make_rates_and_change_orders(self) -> None:
        rng = self.rng
        roles = self.ctx.roles
        controller, start = self.ctx.demo_users["controller"], date(2026, 1, 1)
        rates, orders, order_rates, order_milestones = [], [], [], []
        pm_of = {}
        for project in self.projects:
            pm_of.setdefault(project.contract_id, project.project_manager)
        tm = Contract.BillingModel.TIME_AND_MATERIALS
        for j, contract in enumerate(self.contracts):
            card_rates = BASE_RATES.get(contract.currency, {})
            if contract.billing_model == tm and not contract.tags and j % 4 == 1:
                # A negotiated partner rate on the contract (role override).
                rates.append(ContractRate(contract=contract, role=roles["PARTNER"], effective_from=start,
                                          rate=Decimal(card_rates["PARTNER"]) - 40))
            seniors = [p for p in self.people if p.role_id == roles["SENIOR"].pk
                       and any(pr.contract_id == contract.pk for pr in self.assignments[p.pk])]
            if contract.billing_model == tm and not contract.tags and j % 9 == 7 and seniors:
                senior = seniors[0]
                rates.append(ContractRate(contract=contract, person=senior, effective_from=start,
                                          rate=Decimal(card_rates["SENIOR"]) + 15))
            pm = pm_of[contract.pk]
            if "pending_co" in contract.tags:
                co = ChangeOrder(contract=contract, code="CO-01", status=ChangeOrder.Status.SUBMITTED,
                                 description="Extend scope to the second business unit; new senior rate.",
                                 cap_delta=Decimal("50000.00"), submitted_by=pm, submitted_at=_at(date(2026, 10, 20)))
                orders.append(co)
                order_rates.append((co, "SENIOR", Decimal(card_rates["SENIOR"]) + 20, date(2026, 11, 1)))
            if "approved_co" in contract.tags:
                co = ChangeOrder(contract=contract, code="CO-01", status=ChangeOrder.Status.APPROVED,
                                 description="Rate change for the data migration workstream from 15 September.",
                                 cap_delta=Decimal("40000.00"), submitted_by=pm, submitted_at=_at(date(2026, 9, 2)),
                                 decided_by=controller, decided_at=_at(date(2026, 9, 8)),
                                 decision_reason="Signed by the client on 5 September.", signed_on=date(2026, 9, 5))
                orders.append(co)
                order_rates.append((co, "CONSULTANT", Decimal(card_rates["CONSULTANT"]) + 12,
                                    CHANGE_ORDER_RATES_FROM))
                order_rates.append((co, "SENIOR", Decimal(card_rates["SENIOR"]) + 18, CHANGE_ORDER_RATES_FROM))
            elif contract.billing_model == Contract.BillingModel.FIXED_FEE and j % 12 == 2:
                co = ChangeOrder(contract=contract, code="CO-01", status=ChangeOrder.Status.APPROVED,
                                 description="Additional go-live support milestone.", cap_delta=Decimal("20000.00"),
                                 submitted_by=pm, submitted_at=_at(date(2026, 8, 10)), decided_by=controller,
                                 decided_at=_at(date(2026, 8, 12)), signed_on=date(2026, 8, 11))
                orders.append(co)
                order_milestones.append(co)
            elif contract.billing_model == tm and not contract.tags and j % 12 == 5:
                status = rng.choice((ChangeOrder.Status.DRAFT, ChangeOrder.Status.REJECTED))
                orders.append(ChangeOrder(
                    contract=contract, code="CO-01", status=status, description="Extension of the analysis phase.",
                    cap_delta=Decimal("15000.00"),
                    submitted_by=pm if status == ChangeOrder.Status.REJECTED else None,
                    submitted_at=_at(date(2026, 9, 20)) if status == ChangeOrder.Status.REJECTED else None,
                    decided_by=controller if status == ChangeOrder.Status.REJECTED else None,
                    decided_at=_at(date(2026, 9, 25)) if status == ChangeOrder.Status.REJECTED else None,
                    decision_reason="Client declined the extension." if status == ChangeOrder.Status.REJECTED else "",
                ))
        if self.block == 0:
            self._demo_pm_change_orders(orders, order_rates, pm_of)
        orders = _create(ChangeOrder, orders, self.ctx)
        by_key = {(o.contract_id, o.code): o for o in orders}
        co_rates = []
        for co, role, rate, frm in order_rates:
            co = by_key[(co.contract_id, co.code)]
            co_rates.append(ChangeOrderRate(change_order=co, role=roles[role], rate=rate, effective_from=frm))
            if co.status == ChangeOrder.Status.APPROVED:
                rates.append(ContractRate(contract=co.contract, role=roles[role], rate=rate, effective_from=frm,
                                          change_order=co))
        _create(ChangeOrderRate, co_rates, self.ctx)
        _create(ContractRate, rates, self.ctx)
        self.milestone_orders = [by_key[(co.contract_id, co.code)] for co in order_milestones]

    def _demo_pm_change_orders(self, orders: list, order_rates: list, pm_of: dict) -> None:
        """The demo `pm`'s change orders: one of theirs refused (reason on view), one of a co-manager's to decide.

        Only a manager of one of the contract's projects, finance or a billing admin submits a change order,
        and a PM of the contract who did not submit it decides it (a controller when no such PM is left). So
        the one `pm` decides is submitted by the manager of the contract's other project; `pm`'s own
        submitted change order (the `pending_co` client's) waits for that co-manager instead.
        No random draws: the other blocks and the history stay as they were.
        """
        pm, controller = self.ctx.demo_users["pm"], self.ctx.demo_users["controller"]
        tm = Contract.BillingModel.TIME_AND_MATERIALS
        taken = {o.contract_id for o in orders}
        managers: dict[int, list] = {}
        for project in self.projects:
            managers.setdefault(project.contract_id, []).append(project.project_manager)
        plain = [c for c in self.contracts if c.billing_model == tm and not c.tags and c.pk not in taken
                 and any(u.pk == pm.pk for u in managers[c.pk])]
        shared = next((c for c in plain if {u.pk for u in managers[c.pk]} - {pm.pk}), None)
        if shared is not None:
            co_manager = next(u for u in managers[shared.pk] if u.pk != pm.pk)
            co = ChangeOrder(contract=shared, code="CO-01", status=ChangeOrder.Status.SUBMITTED,
                             description="Add the data-migration workstream from 1 November: consultants at a "
                                         "project rate, signed by the client's CFO.",
                             cap_delta=Decimal("30000.00"), submitted_by=co_manager,
                             submitted_at=_at(date(2026, 10, 28)))
            orders.append(co)
            card_rates = BASE_RATES[shared.currency]
            order_rates.append((co, "CONSULTANT", Decimal(card_rates["CONSULTANT"]) + 10, date(2026, 11, 1)))
        refused = next((c for c in plain if c is not shared and pm_of[c.pk].pk == pm.pk), None)
        if refused is not None:
            orders.append(ChangeOrder(
                contract=refused, code="CO-01", status=ChangeOrder.Status.REJECTED,
                description="Extend the workshop series by four sessions.", cap_delta=Decimal("12000.00"),
                submitted_by=pm, submitted_at=_at(date(2026, 10, 5)), decided_by=controller,
                decided_at=_at(date(2026, 10, 7)),
                decision_reason="The client's purchase order does not cover extra sessions; ask for a new PO first.",
            ))

    def make_milestones(self) -> None:
        rng = self.rng
        ff = Contract.BillingModel.FIXED_FEE
        milestones, co_milestones = [], []
        added_by_contract = {co.contract_id: co for co in self.milestone_orders}
        dues = (date(2026, 7, 31), date(2026, 8, 31), date(2026, 9, 30), date(2026, 10, 30), date(2026, 12, 15))
        demo_pm = self.ctx.demo_users["pm"]
        for project in self.projects:
            if project.contract.billing_model != ff:
                continue
            fee = project.contract.cap
            shares = (Decimal("0.2"), Decimal("0.25"), Decimal("0.25"), Decimal("0.2"), Decimal("0.1"))
            pm = project.project_manager
            other = next(u for u in self.pm_users if u.pk != pm.pk)
            for idx, (name, due, share) in enumerate(zip(MILESTONE_NAMES, dues, shares, strict=True)):
                status = self._milestone_status(project, due, idx)
                if pm.pk == demo_pm.pk and project.status == Project.Status.ACTIVE and due > date(2026, 9, 1):
                    # The demo `pm` finds milestones to approve (completed by the project's previous manager:
                    # who completes may not approve) and one to complete; after the draw, so nothing else moves.
                    status = Milestone.Status.COMPLETED if due <= PERIOD_END else Milestone.Status.PLANNED
                ms = Milestone(project=project, name=name, amount=(fee * share).quantize(Decimal("0.01")),
                               due_date=due, status=status,
                               evidence=f"{name} — deliverable accepted by the client steering committee."
                               if status != Milestone.Status.PLANNED else "")
                if status in (Milestone.Status.COMPLETED, Milestone.Status.APPROVED):
                    ms.completed_by, ms.completed_at = other, _at(due)
                if status == Milestone.Status.APPROVED:
                    ms.approved_by, ms.approved_at = pm, _at(due + timedelta(days=rng.randint(1, 6)))
                milestones.append(ms)
            co = added_by_contract.get(project.contract_id)
            if co:
                name, due, amount = "Go-live support (change order)", date(2026, 10, 15), co.cap_delta
                milestones.append(Milestone(project=project, name=name, amount=amount, due_date=due,
                                            status=Milestone.Status.COMPLETED, completed_by=other,
                                            completed_at=_at(due), change_order=co,
                                            evidence="Four weeks of on-site go-live support delivered."))
                co_milestones.append(ChangeOrderMilestone(change_order=co, project=project, name=name,
                                                          amount=amount, due_date=due))
        _create(Milestone, milestones, self.ctx)
        _create(ChangeOrderMilestone, co_milestones, self.ctx)

    def _milestone_status(self, project: Project, due: date, idx: int) -> str:
        s = Milestone.Status
        if project.status in (Project.Status.PLANNED,):
            return s.PLANNED
        if due <= date(2026, 8, 31):
            return s.APPROVED
        if due <= date(2026, 9, 30):
            return s.APPROVED if self.rng.random() < 0.7 else s.COMPLETED
        if due <= date(2026, 10, 31):
            return s.COMPLETED if self.rng.random() < 0.6 else s.PLANNED
        return s.PLANNED

    # ----- time and expenses

    def _window(self, project: Project) -> tuple[date, date] | None:
        status = project.status
        if status == Project.Status.ACTIVE:
            return PERIOD_START, PERIOD_END
        if status == Project.Status.ON_HOLD:
            return PERIOD_START, date(2026, 9, 30)
        if status == Project.Status.COMPLETED:
            return PERIOD_START, date(2026, 9, 15)
        return None

    def assign_people(self) -> dict[int, list[Project]]:
        """Each person works on a primary project and often a second one (projects with time only)."""
        rng = self.rng
        staffable = [p for p in self.projects if self._window(p)]
        analyst_role = self.ctx.roles["ANALYST"].pk
        assignments: dict[int, list[Project]] = {}
        for i, person in enumerate(self.people):
            primary = staffable[i % len(staffable)]
            mine = [primary]
            if rng.random() < 0.6:
                second = rng.choice(staffable)
                if second.pk != primary.pk:
                    mine.append(second)
            assignments[person.pk] = mine
        # The legacy rate card has no ANALYST rate: make sure an analyst books on it (MISSING_RATE).
        for project in staffable:
            if "legacy_card" in project.tags:
                analyst = next(p for p in self.people if p.role_id == analyst_role)
                if project not in assignments[analyst.pk]:
                    assignments[analyst.pk].append(project)
        return assignments

    def make_work(self) -> None:
        rng = self.rng
        assignments = self.assignments
        staffable = [p for p in self.projects if self._window(p)]
        windows = {p.pk: self._window(p) for p in staffable}
        days = _weekdays(PERIOD_START, PERIOD_END)
        consultant_user = self.ctx.demo_users["consultant"]
        entries, expenses = [], []
        te_no = ex_no = 0
        consultant_rejected = None
        for person in self.people:
            is_demo_consultant = person.user_id == consultant_user.pk
            mine = assignments[person.pk]
            holiday_start = rng.choice(days[5:-10]) if rng.random() < 0.6 else None
            holiday = {holiday_start + timedelta(days=d) for d in range(rng.choice((5, 7, 10, 14)))} \
                if holiday_start else set()
            week_status: dict[date, tuple[str, bool]] = {}
            for day in days:
                if day in holiday or rng.random() < 0.02:
                    continue
                open_projects = [p for p in mine if windows[p.pk][0] <= day <= windows[p.pk][1]]
                if not open_projects:
                    continue
                monday = day - timedelta(days=day.weekday())
                if monday not in week_status:
                    week_status[monday] = self._week_status(monday, is_demo_consultant)
                status, late = week_status[monday]
                total = Decimal(str(rng.choice((6, 7.5, 8, 8, 8, 8.5, 9, 9.5))))
                k = rng.choice((2, 3, 3, 3, 4))
                quarters = int(total * 4)
                cuts = sorted(rng.sample(range(1, quarters), k - 1))
                parts = [b - a for a, b in zip([0, *cuts], [*cuts, quarters], strict=True)]
                for q in parts:
                    project = open_projects[0] if len(open_projects) == 1 or rng.random() < 0.7 \
                        else rng.choice(open_projects)
                    te_no += 1
                    # The demo consultant gets one rejection to fix (the PM's reason shows on the timesheet).
                    force = None
                    if is_demo_consultant and day >= date(2026, 10, 12) and not consultant_rejected:
                        force = consultant_rejected = "rejected"
                    entries.append(dict(
                        person_id=person.pk, project_id=project.pk, date=day, hours=Decimal(q) / 4,
                        description=rng.choice(TASKS), billable=rng.random() > 0.04,
                        source="psa", external_id=f"T{self.block:03d}-{te_no:07d}",
                        **self._work_state(status, day, project, late=late, force=force),
                    ))
            for monday in week_status:
                if rng.random() < 0.12:
                    for expense in self._trip(person, mine, monday, windows, week_status[monday][0]):
                        ex_no += 1
                        expense["external_id"] = f"X{self.block:03d}-{ex_no:06d}"
                        expenses.append(expense)
        # A receipt in a currency with no FX rates (MISSING_FX_RATE) on a running T&M project.
        target = next((p for p in staffable if "foreign_expense" in p.tags), None)
        if target is not None:
            person = next(p for p in self.people if target in assignments[p.pk])
            ex_no += 1
            expense = dict(person_id=person.pk, project_id=target.pk, date=date(2026, 9, 17), category="travel",
                           amount=Decimal("1450.00"), currency="SEK", description="Ferry Stockholm – Turku",
                           source="psa", external_id=f"X{self.block:03d}-{ex_no:06d}",
                           **self._work_state("approved", date(2026, 9, 17), target, force="approved"))
            expenses.append(expense)
        if self.block == 0:
            self._demo_pm_backlog(entries)
        _fast_create(TimeEntry, entries, self.ctx)
        _fast_create(Expense, expenses, self.ctx)

    def _demo_pm_backlog(self, entries: list[dict]) -> None:
        """The demo `pm` finds weeks of time to approve: their projects' last two weeks still submitted.

        Applied after the random draws, so the other projects and blocks keep their data.
        """
        pm = self.ctx.demo_users["pm"]
        managed = {p.pk for p in self.projects if p.project_manager_id == pm.pk}
        for entry in entries:
            if entry["project_id"] in managed and entry["date"] >= PM_BACKLOG_FROM and entry["status"] == "approved":
                entry["status"] = "submitted"
                entry.pop("approved_by_id", None)
                entry.pop("approved_at", None)

    def _week_status(self, monday: date, demo_consultant: bool) -> tuple[str, bool]:
        """(status of a person's week, submitted after the month's cut-off?)."""
        if demo_consultant and monday >= date(2026, 10, 26):
            return "draft", False
        if demo_consultant and monday >= date(2026, 10, 19):
            return "submitted", False
        r = self.rng.random()
        if monday < date(2026, 10, 1):
            table = (("approved", 0.99), ("submitted", 1.0))
        elif monday < date(2026, 10, 26):
            table = (("approved", 0.985), ("submitted", 0.995), ("draft", 1.0))
        else:  # the last week of the demo: approvals still under way
            table = (("approved", 0.86), ("submitted", 0.96), ("draft", 1.0))
        status = next(status for status, upto in table if r < upto)
        month_end_week = (monday + timedelta(days=7)).month != monday.month
        return status, month_end_week and status != "draft" and self.rng.random() < 0.02

    def _work_state(self, status: str, day: date, project: Project, late: bool = False,
                    force: str | None = None) -> dict:
        """Status and approval trail of a time entry or expense dated `day`.

        Weeks are submitted on Friday or a little later, but by the month's cut-off
        (the 2nd of the next month), unless the week is `late` (LATE_TIME).
        """
        rng = self.rng
        friday = day + timedelta(days=4 - day.weekday())
        if force:
            status = force
        elif status != "draft" and rng.random() < 0.012:
            status = "rejected"
        state: dict = {"status": status}
        if status == "draft":
            return state
        next_month = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        submitted = min(friday + timedelta(days=rng.choice((0, 0, 0, 1, 3))), next_month + timedelta(days=1))
        if late:
            submitted = next_month + timedelta(days=rng.randint(4, 8))
        state["submitted_at"] = _at(submitted)
        if status == "approved":
            state["approved_by_id"] = project.project_manager_id
            state["approved_at"] = _at(submitted + timedelta(days=rng.randint(1, 5)), 9)
        elif status == "rejected":
            state["rejection_reason"] = REJECTIONS[0] if force else rng.choice(REJECTIONS)
        return state

    def _trip(self, person: Person, mine: list[Project], monday: date, windows: dict, status: str) -> list[dict]:
        rng = self.rng
        open_projects = [p for p in mine if windows[p.pk][0] <= monday + timedelta(days=2) <= windows[p.pk][1]]
        if not open_projects:
            return []
        project = rng.choice(open_projects)
        client = project.contract.client
        currency = client.currency if rng.random() < 0.8 else person.home_entity.currency
        scale = {"EUR": 1.0, "GBP": 0.86, "USD": 1.09, "CHF": 0.95}[currency]
        nights = rng.choice((1, 1, 2, 3))
        day = monday + timedelta(days=rng.randint(0, 2))
        billable = rng.random() > 0.1
        items = [
            ("travel", _money(rng.uniform(90, 620) * scale), f"Travel to {client.city}"),
            ("lodging", _money(rng.uniform(120, 240) * nights * scale), f"Hotel {client.city}, {nights} night(s)"),
            ("meals", _money(rng.uniform(18, 85) * scale), "Meals on client site"),
        ]
        if rng.random() < 0.05:
            items.append(("software", _money(rng.uniform(20, 300) * scale), "Survey tool licence for the project"))
        expenses = []
        for category, amount, description in items:
            expenses.append(dict(person_id=person.pk, project_id=project.pk, date=day, category=category,
                                 amount=amount, currency=currency, description=description, billable=billable,
                                 source="psa", **self._work_state(status, day, project)))
        return expenses


# --------------------------------------------------------------------------- entry point


#: Demo data of other apps, seeded after the billing blocks, in this order: each module has
#: `seed_demo_extension(*, scale, seed, log) -> Counter` and, like the blocks, adds only what is missing.
DEMO_EXTENSIONS = ("integrations.demo", "insights.demo", "disputes.demo", "revenue.demo", "customers.demo")


def seed_demo(*, scale: int = 1, seed: int = DEFAULT_SEED, log: Callable[[str], None] = print) -> Counter:
    """Seed reference data and blocks 0..scale-1; return what was created, by model."""
    if scale < 1:
        raise ValueError("scale must be at least 1")
    with transaction.atomic():
        ctx = seed_reference(seed)
    total = Counter(ctx.created)
    if ctx.created:
        log("Reference data: " + _summary(ctx.created))
    for block in range(scale):
        made = seed_block(ctx, block)
        if made:
            log(f"Block {block + 1}/{scale}: " + _summary(made))
            total.update(made)
        else:
            log(f"Block {block + 1}/{scale}: already seeded, skipped.")
    with transaction.atomic():
        opened = open_demo_approvals()
    if opened:
        log(f"Approval requests opened for {opened:,} items awaiting approval.")
        total["approval requests"] += opened
    for name in DEMO_EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        made = module.seed_demo_extension(scale=scale, seed=seed, log=log)
        total.update(made or {})
    return total


def open_demo_approvals() -> int:
    """Route every seeded item awaiting approval (submitted time and expenses, completed milestones,
    submitted change orders) to its policy, as submitting it in the product would have.

    The blocks write those rows in bulk, without the approval requests the services open; without a
    request an item is in no one's "My approvals", and an item nobody may decide (a PM's own change
    order) never reaches a controller. Items that already have a pending request are skipped, so a
    second seed opens nothing.
    """
    from approvals.services import approval_requests_open_bulk

    opened = 0
    for model, related in ((TimeEntry, ("person", "project")), (Expense, ("person", "project")),
                           (Milestone, ("project",)), (ChangeOrder, ("contract",))):
        awaiting = {TimeEntry: "submitted", Expense: "submitted", Milestone: "completed",
                    ChangeOrder: "submitted"}[model]
        pending = ApprovalRequest.objects.filter(
            content_type=ContentType.objects.get_for_model(model), status=ApprovalRequest.Status.PENDING
        ).values("object_id")
        subjects = list(model.objects.filter(status=awaiting).exclude(pk__in=pending).select_related(*related)
                        .order_by("pk"))
        opened += approval_requests_open_bulk(subjects=subjects, user=None)
    return opened


def _summary(counts: Counter | dict) -> str:
    return ", ".join(f"{n:,} {name}" for name, n in counts.items()) or "nothing new"


def demo_logins() -> Iterable[tuple[str, str, str]]:
    for spec in DEMO_USERS:
        yield spec.username, DEMO_PASSWORD, spec.role_label
