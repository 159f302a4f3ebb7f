"""docs/controls.md is complete: every service that changes state is mapped to its controls, every test it
cites exists, and every control the adversarial suite attacks is a row of the matrix.

The rule (also written in docs/controls.md, "How this document is checked"):

- A *service module* is `<app>/services/**/*.py`, `<app>/services.py` or `<app>/services_*.py` of every
  Django app of the project (a directory with an `apps.py`), and the kernel's workflow and audit helpers
  (`kernel/workflow.py`, `kernel/audit.py`), which every service calls to lock, transition and save.
- Every public (no leading `_`) module-level function of a service module is listed exactly once: in
  "Services covered" (it changes state; the row names its controls) or in "Read-only helpers" (it does not).
- A read-only helper may not write: no `transaction.atomic`, no `save()`/`delete()`/`update()`/`create()`/
  `select_for_update()`/... call and no call of a listed service (an AST check, so a mislabelled writer fails).
- Every control a service names, and every `@pytest.mark.control("<id>")` in tests/controls/, is a row of
  the "Controls" table; a control row cites at least one test unless it is marked *pending*.
- Every `tests/<path>.py::<name>` the document cites exists (the file parses and defines that function,
  or `Class::method`).

So a new service needs one row; a new control needs one row and a test.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "controls.md"
CONTROL_TESTS = ROOT / "tests" / "controls"

#: Calls that write (or lock for writing) when a function makes them; `open_approval` etc. are caught as
#: calls of listed services.
WRITING_CALLS = frozenset({
    "save", "delete", "update", "create", "bulk_create", "bulk_update", "get_or_create", "update_or_create",
    "select_for_update", "save_audited", "apply_transition", "execute", "send", "send_mail", "on_commit",
    "async_task", "set", "add", "remove", "clear",
})
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:::(\w+))?")
CODE = re.compile(r"`([^`]+)`")


# --- the code --------------------------------------------------------------------------------------


def service_modules() -> list[Path]:
    found: list[Path] = []
    for apps_py in sorted(ROOT.glob("*/apps.py")):
        app = apps_py.parent
        found += sorted(app.glob("services/**/*.py"))
        found += sorted(app.glob("services.py"))
        found += sorted(app.glob("services_*.py"))
    found += [ROOT / "kernel" / "workflow.py", ROOT / "kernel" / "audit.py"]
    return found


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@cache
def public_functions() -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """`app.services.module.function` → its AST, for every public module-level function of a service module."""
    functions = {}
    for path in service_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                functions[f"{dotted(path)}.{node.name}"] = node
    return functions


@cache
def module_functions() -> dict[str, dict[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Service module → every module-level function (private ones too) by name."""
    found: dict[str, dict[str, ast.FunctionDef | ast.AsyncFunctionDef]] = {}
    for path in service_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found[dotted(path)] = {
            node.name: node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
    return found


def looks_like_a_writer(name: str, listed_writers: set[str]) -> list[str]:
    """Why `module.function` looks like it changes state (empty: it does not).

    It writes itself, or calls a listed writer, or calls a function of its own module that does (followed
    through private helpers).
    """
    module, _, function = name.rpartition(".")
    local = module_functions()[module]
    short_writers = {writer.rsplit(".", 1)[-1] for writer in listed_writers}
    reasons: list[str] = []
    seen: set[str] = set()
    todo = [function]
    while todo:
        current = todo.pop()
        if current in seen or current not in local:
            continue
        seen.add(current)
        node = local[current]
        where = "" if current == function else f" (in {current})"
        if "atomic" in _decorator_names(node):
            reasons.append(f"runs in transaction.atomic{where}")
        calls = _called_names(node)
        if calls & WRITING_CALLS:
            reasons.append(f"calls {sorted(calls & WRITING_CALLS)}{where}")
        if calls & short_writers:
            reasons.append(f"calls services {sorted(calls & short_writers)}{where}")
        todo += [call for call in calls if call in local]
    return reasons


_CONTAINER_FACTORIES = {"dict", "set", "list", "defaultdict", "Counter", "OrderedDict", "fromkeys"}


def _local_containers(node: ast.AST) -> set[str]:
    """Names bound to an in-memory dict/set/list in this function: their .update()/.add() write nothing."""
    names = set()
    for assign in ast.walk(node):
        if isinstance(assign, ast.Assign | ast.AnnAssign) and assign.value is not None:
            value = assign.value
            built = isinstance(value, ast.Dict | ast.Set | ast.List | ast.DictComp | ast.SetComp | ast.ListComp) or (
                isinstance(value, ast.Call)
                and ast.unparse(value.func).rsplit(".", 1)[-1] in _CONTAINER_FACTORIES
            )
            targets = assign.targets if isinstance(assign, ast.Assign) else [assign.target]
            if built:
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    containers = _local_containers(node)
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            if isinstance(call.func, ast.Attribute):
                receiver = call.func.value
                if isinstance(receiver, ast.Name) and receiver.id in containers:
                    continue  # an in-memory container, not the database
                names.add(call.func.attr)
            elif isinstance(call.func, ast.Name):
                names.add(call.func.id)
    return names


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        names.add(ast.unparse(target).rsplit(".", 1)[-1])
    return names


# --- the document ----------------------------------------------------------------------------------


@cache
def doc_text() -> str:
    assert DOC.exists(), "docs/controls.md is missing"
    return DOC.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of `## <title>` up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", doc_text(), flags=re.M | re.S)
    assert match, f"docs/controls.md has no section '## {title}'"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text`, as lists of stripped cells."""
    # the first row of each table is its header
    bodies, previous_was_table = [], False
    for line in text.splitlines():
        stripped = line.strip()
        is_row = stripped.startswith("|")
        if is_row and not previous_was_table:
            bodies.append(None)  # header marker
        elif is_row and not set(stripped) <= set("|-: "):
            bodies.append([cell.strip() for cell in stripped.strip("|").split("|")])
        previous_was_table = is_row
    return [row for row in bodies if row is not None]


def first_code(cell: str) -> str:
    match = CODE.search(cell)
    return match.group(1) if match else cell.strip()


@cache
def controls() -> dict[str, list[str]]:
    """Control id → its cells (id, control, rule, where enforced, tests)."""
    rows = {}
    for row in table_rows(section("Controls")):
        control_id = first_code(row[0])
        assert control_id not in rows, f"control {control_id!r} is listed twice"
        rows[control_id] = row
    return rows


@cache
def covered_services() -> dict[str, list[str]]:
    """Service → the control ids its row names."""
    rows = {}
    for row in table_rows(section("Services covered")):
        name = first_code(row[0])
        assert name not in rows, f"{name} is listed twice in 'Services covered'"
        rows[name] = CODE.findall(row[1]) if len(row) > 1 else []
    return rows


@cache
def read_only_helpers() -> set[str]:
    names = [first_code(row[0]) for row in table_rows(section("Read-only helpers"))]
    assert len(names) == len(set(names)), "a function is listed twice in 'Read-only helpers'"
    return set(names)


# --- the checks ------------------------------------------------------------------------------------


def test_the_rule_finds_the_service_modules():
    """The enumeration itself: the known modules are found (a rename of the layout must not empty the check)."""
    found = {dotted(path) for path in service_modules()}
    for expected in ("billing.services.invoices", "approvals.services.requests", "disputes.services.disputes",
                     "disputes.services.collections", "integrations.services.inbound"):
        assert expected in found
    assert len(public_functions()) > 100


def test_every_public_service_function_is_in_the_matrix():
    listed = set(covered_services()) | read_only_helpers()
    missing = sorted(set(public_functions()) - listed)
    assert not missing, (
        "Services docs/controls.md does not list (add a row to 'Services covered' naming their controls, "
        f"or to 'Read-only helpers' if they change nothing): {missing}"
    )


def test_the_matrix_names_no_function_that_is_gone_and_none_twice():
    code = set(public_functions())
    gone = sorted((set(covered_services()) | read_only_helpers()) - code)
    assert not gone, f"docs/controls.md lists functions that no longer exist: {gone}"
    both = sorted(set(covered_services()) & read_only_helpers())
    assert not both, f"Listed both as changing state and as read-only: {both}"


def test_read_only_helpers_do_not_write():
    writers = set(covered_services())
    wrong = {}
    for name in sorted(read_only_helpers()):
        if name not in public_functions():
            continue  # reported by the test above
        reasons = looks_like_a_writer(name, writers)
        if reasons:
            wrong[name] = reasons
    assert not wrong, f"Listed as read-only but they look like writers (move them to 'Services covered'): {wrong}"


def test_every_service_row_names_known_controls():
    known = set(controls())
    for name, control_ids in covered_services().items():
        assert control_ids, f"{name}: its row names no control"
        unknown = sorted(set(control_ids) - known)
        assert not unknown, f"{name}: unknown control ids {unknown} (add them to the 'Controls' table)"


def test_every_control_cites_a_test_or_is_marked_pending():
    for control_id, row in controls().items():
        text = " ".join(row)
        assert TEST_REF.search(text) or "pending" in text.lower(), (
            f"control {control_id!r} cites no test (tests/...py::name) and is not marked pending"
        )


def _defines(path: Path, name: str, method: str | None) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if method is None and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        if method is not None and isinstance(node, ast.ClassDef) and node.name == name:
            return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == method for n in node.body)
    return False


def test_every_cited_test_exists():
    refs = TEST_REF.findall(doc_text())
    assert refs, "docs/controls.md cites no test"
    missing = []
    for path, name, method in sorted(set(refs)):
        file = ROOT / path
        if not file.exists() or not _defines(file, name, method or None):
            missing.append(f"{path}::{name}" + (f"::{method}" if method else ""))
    assert not missing, f"docs/controls.md cites tests that do not exist: {missing}"


def _control_marks(path: Path) -> set[str]:
    marks = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "control"
            and ast.unparse(node.func.value).endswith("mark")
        ):
            marks |= {arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
    return marks


@pytest.mark.parametrize("path", sorted(CONTROL_TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_every_attacked_control_is_a_row_of_the_matrix(path):
    unknown = sorted(_control_marks(path) - set(controls()))
    assert not unknown, f"{path.name} marks controls that docs/controls.md does not list: {unknown}"


def test_the_readme_links_the_matrix():
    assert "docs/controls.md" in (ROOT / "README.md").read_text(encoding="utf-8")
