"""The package's layering, read from its source with ``ast``.

- the import graph of the package's modules has no cycle, lazy and ``TYPE_CHECKING``
  imports included;
- no module imports another module's private name (``from m import _name``);
- no module reads or writes a private attribute that another module defines
  (``client._slots``): a leading underscore is private to the module that defines it;
- the CLI imports public names only; the core imports neither the CLI nor the emulator;
  the emulator imports nothing of the client;
- the rooms: stores in ``_stores/``, transports in ``_transports/``, no module over
  ``MAX_LINES`` lines; each session rule and the column list written once;
- ``phoneconfirm_async.errors`` exports every exception class.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import phoneconfirm_async

PACKAGE = "phoneconfirm_async"
ROOT = Path(phoneconfirm_async.__file__).parent

#: Private attributes of third-party objects we touch on purpose, each with its reason.
ALLOWED_FOREIGN = {
    # aiohttp re-sends a GET by itself when the connection drops; no public switch exists,
    # and a re-sent placement can phone a person twice (see _aiohttp_transport.py).
    ("phoneconfirm_async._transports._aiohttp", "_retry_connection"),
}
#: Public API despite the underscore: namedtuple's methods (named so to stay clear of fields).
NAMEDTUPLE_API = {"_asdict", "_field_defaults", "_fields", "_make", "_replace"}
#: Modules a CLI module may import from.
PUBLIC_MODULES = {
    PACKAGE,
    f"{PACKAGE}.emulator",
    f"{PACKAGE}.errors",
    f"{PACKAGE}.stores",
    f"{PACKAGE}.testing",
}
#: The longest a module may grow: past it, it does more than one job.
MAX_LINES = 450


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: set[str] = field(default_factory=set)
    imported_names: list[tuple[str, str, int]] = field(default_factory=list)


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    for module in modules.values():
        collect_imports(module, modules)
    return modules


def collect_imports(module: Module, modules: dict[str, Module]) -> None:
    """Every import anywhere in the file: top level, in functions, under TYPE_CHECKING."""
    package = module.name if module.path.name == "__init__.py" else module.name.rsplit(".", 1)[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    module.imports.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if not source.startswith(PACKAGE):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    module.imports.add(submodule)  # ``from package import _module``
                else:
                    module.imports.add(source)
                    module.imported_names.append((source, alias.name, node.lineno))


def find_cycle(modules: dict[str, Module]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for target in sorted(modules[name].imports):
            if target not in modules:
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(modules):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: its functions, classes, variables, methods, class
    attributes, ``__slots__`` entries and ``self._x``/``cls._x`` assignments."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
            names.add(node.target.attr)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.isidentifier()
        ):
            names.add(node.value)  # __slots__ entries
    return {name for name in names if is_private(name)}


def private_attribute_uses(tree: ast.Module) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and is_private(node.attr)
            and node.attr not in NAMEDTUPLE_API
        ):
            yield node.attr, node.lineno


MODULES = load_modules()


def test_the_package_is_what_the_walk_sees() -> None:
    """The walk finds the modules the layering rules are about."""
    for name in ("_client", "_engine", "_transports", "_stores", "_scheduler", "cli", "testing"):
        assert f"{PACKAGE}.{name}" in MODULES


def test_the_import_graph_has_no_cycle() -> None:
    """No import cycle, counting lazy and TYPE_CHECKING imports."""
    assert find_cycle(MODULES) is None


def test_no_module_imports_a_private_name_of_another() -> None:
    """``from m import _name`` never crosses a module boundary (private modules may be
    imported; their private names may not)."""
    offences = [
        f"{module.name}:{line} imports {name} from {source}"
        for module in MODULES.values()
        for source, name, line in module.imported_names
        if is_private(name)
    ]
    assert offences == []


def test_no_module_touches_a_private_attribute_it_does_not_define() -> None:
    """``other._x`` only where this module defines ``_x`` itself."""
    offences = []
    for module in MODULES.values():
        own = defined_private_names(module.tree)
        for attr, line in private_attribute_uses(module.tree):
            if attr not in own and (module.name, attr) not in ALLOWED_FOREIGN:
                offences.append(f"{module.name}:{line} uses ._{attr.lstrip('_')}")
    assert offences == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(f"{PACKAGE}.cli")))
def test_the_cli_imports_public_names_only(name: str) -> None:
    """The CLI is a user of the library: it imports from the public modules (and itself)."""
    module = MODULES[name]
    for imported in module.imports:
        assert imported in PUBLIC_MODULES or imported.startswith(f"{PACKAGE}.cli"), imported


def test_the_layers_point_one_way() -> None:
    """The core imports neither the CLI, the emulator nor testing; the emulator imports
    nothing of the client."""
    outer = (f"{PACKAGE}.cli", f"{PACKAGE}.emulator", f"{PACKAGE}.testing", f"{PACKAGE}._testing")
    for module in MODULES.values():
        if module.name.startswith(outer):
            continue
        assert not [i for i in module.imports if i.startswith(outer)], module.name
    for module in MODULES.values():
        if module.name.startswith(f"{PACKAGE}.emulator"):
            foreign = [i for i in module.imports if not i.startswith(f"{PACKAGE}.emulator")]
            assert foreign == [], module.name


def test_stores_and_transports_live_in_their_folders() -> None:
    """A reader finds "the stores" and "the transports" by looking at the folder."""
    stores = {n for n in MODULES if n.startswith(f"{PACKAGE}._stores.")}
    transports = {n for n in MODULES if n.startswith(f"{PACKAGE}._transports.")}
    assert {f"{PACKAGE}._stores._{n}" for n in ("rules", "memory", "sqlite", "postgres")} <= stores
    assert {f"{PACKAGE}._transports._{n}" for n in ("seam", "httpx", "aiohttp")} <= transports
    flat = {n.rsplit(".", 1)[-1] for n in MODULES if n.count(".") == 1}
    assert not {n for n in flat if "store" in n} - {"stores", "_stores", "_store_writes"}
    assert not {n for n in flat if "transport" in n} - {"_transports"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_the_line_limit(name: str) -> None:
    lines = len(MODULES[name].path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by job"


def arithmetic_on(tree: ast.AST, attribute: str) -> list[int]:
    """Lines where ``<x>.attribute`` is an operand of arithmetic (``+``, ``+=``, ...)."""
    lines = []
    for node in ast.walk(tree):
        operands: list[ast.expr] = []
        if isinstance(node, ast.BinOp):
            operands = [node.left, node.right]
        elif isinstance(node, ast.AugAssign):
            operands = [node.target, node.value]
        lines += [
            operand.lineno
            for operand in operands
            if isinstance(operand, ast.Attribute) and operand.attr == attribute
        ]
    return lines


def test_the_next_call_rule_is_written_once() -> None:
    """ "Next call ``redial_interval`` after the last" is arithmetic in one place (the
    rules every store applies); stores, driver and scheduler call it."""
    places = {
        name: lines
        for name, module in MODULES.items()
        if (lines := arithmetic_on(module.tree, "redial_interval"))
    }
    assert list(places) == [f"{PACKAGE}._stores._rules"]
    assert len(places[f"{PACKAGE}._stores._rules"]) == 1


def string_constants(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_the_columns_are_listed_once() -> None:
    """The session row's columns are named in ``_stores._schema`` only: DDL, inserts,
    selects and updates of both SQL stores are generated from that list."""
    naming = sorted(
        name
        for name, module in MODULES.items()
        if any(
            "redial_count" in text or "country_code" in text
            for text in string_constants(module.tree)
        )
        and name.startswith(f"{PACKAGE}._stores")
    )
    assert naming == [f"{PACKAGE}._stores._schema"]


def test_errors_exports_every_exception_class() -> None:
    """``phoneconfirm_async.errors`` is the one place every exception is importable from."""
    import phoneconfirm_async._errors as private
    import phoneconfirm_async.errors as errors

    defined = {
        name
        for name, value in vars(private).items()
        if isinstance(value, type) and issubclass(value, BaseException) and not is_private(name)
    }
    assert set(errors.__all__) == defined
    assert all(getattr(errors, name) is getattr(private, name) for name in defined)


def test_the_walk_catches_what_it_forbids() -> None:
    """The checks fail on the shapes they guard against (a check that cannot fail is no
    check)."""
    bad = ast.parse("from x import _hidden\nclient._slots.acquire()\n")
    assert "_slots" not in defined_private_names(bad)
    assert [attr for attr, _ in private_attribute_uses(bad)] == ["_slots"]
    cyclic = {
        "a": Module("a", ROOT, ast.parse(""), imports={"b"}),
        "b": Module("b", ROOT, ast.parse(""), imports={"a"}),
    }
    assert find_cycle(cyclic) == ["a", "b", "a"]
    assert arithmetic_on(ast.parse("due = now + record.redial_interval"), "redial_interval")
    assert arithmetic_on(ast.parse("r.due += r.redial_interval"), "redial_interval")
    assert not arithmetic_on(ast.parse("f(record.redial_interval)"), "redial_interval")
