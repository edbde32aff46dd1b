"""The package's shape (issue 12): one-way layers, no cycles, no private reach-ins, small modules, a light import.

The import graph is read from the source with ``ast``: every ``import`` counts, the ones inside functions too
(a lazy import that dodges a cycle is still a cycle). An edge goes to the module an import names (``from
reelforge.jobs import worker`` names ``reelforge.jobs.worker``; ``from reelforge.jobs import JobStatus`` names the
package ``reelforge.jobs``), not to the packages above it that Python runs on the way.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import reelforge

ROOT = Path(reelforge.__file__).parent

# Who may import whom, by package (the second part of a module's name; "reelforge" is the package's own
# __init__, the public API). Imports inside one package are always allowed. The layers, top to bottom:
# cli/server -> client/workflows -> jobs -> engines -> request/media/storage, with config and errors below all.
BASE = {"config", "errors"}
BOTTOM = {"request", "media", "storage"}
ALLOWED: dict[str, set[str]] = {
    "__main__": {"cli"},
    "cli": {"reelforge", "server", "client", "workflows", "jobs", "engines"} | BOTTOM | BASE,
    "server": {"reelforge", "client", "workflows", "jobs", "engines"} | BOTTOM | BASE,
    "reelforge": {"client", "workflows", "jobs", "engines"} | BOTTOM | BASE,  # the public API's re-exports
    "workflows": {"client", "jobs", "engines"} | BOTTOM | BASE,  # batches and storyboards drive the Client
    "client": {"jobs", "engines"} | BOTTOM | BASE,
    "jobs": {"engines"} | BOTTOM | BASE,
    "engines": BOTTOM | BASE,
    "request": {"media"} | BASE,
    "storage": {"media"} | BASE,  # media owns the atomic file helpers
    "media": BASE,
    "config": {"errors"},
    "errors": set(),
}

MAX_TOP_ENTRIES = 12
# The issue says "no module over ~400 lines"; the test holds the line at 450 so that a module a few lines
# past 400 is a judgement call, not a failure.
MAX_MODULE_LINES = 450


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the reelforge module it names
    names: tuple[str, ...]  # the names taken from it (from-imports), else ()
    where: str  # file:line

    def __str__(self) -> str:
        taken = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.where}: {self.source} imports {self.target}{taken}"


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("reelforge", *path.relative_to(ROOT).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT.parent)}:{node.lineno}"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + is_package]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, (), _where(path, node)) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target not in MODULES:
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{target}.{n}" in MODULES]
            found += [Import(module, f"{target}.{n}", (), _where(path, node)) for n in submodules]
            rest = tuple(n for n in names if n not in submodules)
            if rest:
                found.append(Import(module, target, rest, _where(path, node)))
    return found


ALL_IMPORTS = [imp for module in MODULES for imp in imports_of(module)]


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "reelforge"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_cycle_and_only_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycles():
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in ALL_IMPORTS:
        if imp.target != imp.source:
            edges[imp.source].add(imp.target)
    found = cycles(edges)
    report = []
    for component in found:
        inside = [str(i) for i in ALL_IMPORTS if i.source in component and i.target in component and i.source != i.target]
        report.append(" <-> ".join(component) + "\n    " + "\n    ".join(inside))
    assert not found, "import cycles (lazy imports included):\n" + "\n".join(report)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reach_ins(module: str) -> list[str]:
    """``from reelforge.x import _y`` and ``x._y`` on a reelforge module bound by an import, from another module."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    found = [f"{imp} - private: {', '.join(filter(_private, imp.names))}" for imp in imports_of(module) if imp.target != module and any(map(_private, imp.names))]
    bound: dict[str, str] = {}  # local name -> the reelforge module it is
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:  # `import reelforge.x as y` binds y; `import reelforge.x` binds reelforge
                    bound[a.asname or "reelforge"] = a.name if a.asname else "reelforge"
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            for a in node.names:
                if f"{target}.{a.name}" in MODULES:
                    bound[a.asname or a.name] = f"{target}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _dotted(node.value)
            if owner is None:
                continue
            head, _, rest = owner.partition(".")
            resolved = bound.get(head)
            if resolved and rest:
                resolved = f"{resolved}.{rest}" if f"{resolved}.{rest}" in MODULES else None
            if resolved and resolved != module:
                found.append(f"{_where(path, node)}: {module} reads {resolved}.{node.attr} - private")
    return found


def test_no_module_imports_a_private_name_from_another():
    found = [line for module in MODULES for line in private_reach_ins(module)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_layers_point_one_way():
    assert set(ALLOWED) >= {package_of(m) for m in MODULES}, "a package the layer table does not know"
    wrong = [
        f"{imp} - {package_of(imp.source)} may not import {package_of(imp.target)}"
        for imp in ALL_IMPORTS
        if package_of(imp.source) != package_of(imp.target) and package_of(imp.target) not in ALLOWED[package_of(imp.source)]
    ]
    assert not wrong, "imports against the layers (cli/server -> client/workflows -> jobs -> engines -> request/media/storage; config, errors below all):\n" + "\n".join(wrong)


def test_the_top_of_the_package_is_small():
    entries = sorted(p.name for p in ROOT.iterdir() if p.name not in {"__init__.py", "py.typed", "__pycache__"} and (p.suffix == ".py" or (p / "__init__.py").is_file()))
    assert len(entries) <= MAX_TOP_ENTRIES, f"{len(entries)} entries at the top of reelforge/ (at most {MAX_TOP_ENTRIES}): {entries}"


def test_no_module_is_long():
    long = {str(p.relative_to(ROOT.parent)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (the issue asks for ~400): {json.dumps(long, indent=1)}"


def test_every_module_says_what_it_owns():
    bare = [str(p.relative_to(ROOT.parent)) for p in MODULES.values() if p.read_text().strip() and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not bare, f"modules without a docstring: {bare}"


HEAVY = ("torch", "diffusers", "transformers", "uvicorn", "starlette", "reelforge.server", "reelforge.cli")
PROBE = """
import gc, json, sys
import reelforge
clients = 0
if "botocore.client" in sys.modules:
    base = sys.modules["botocore.client"].BaseClient
    clients = sum(1 for o in gc.get_objects() if isinstance(o, base))
print(json.dumps({"clients": clients}))
"""


def test_importing_reelforge_stays_light():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", PROBE], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "reelforge" in imported  # the probe reads -X importtime's report
    heavy = sorted(m for m in imported if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"`import reelforge` imports {heavy}"
    assert json.loads(done.stdout) == {"clients": 0}, "`import reelforge` creates a boto3 client"


PUBLIC_API = [
    "Audio",
    "Client",
    "ConflictError",
    "Engine",
    "EngineError",
    "EngineOptions",
    "ImageError",
    "ImageInput",
    "Job",
    "JobCanceledError",
    "JobFailedError",
    "JobNotFoundError",
    "JobPage",
    "JobStatus",
    "NoPlayerError",
    "ReelforgeError",
    "RenderContext",
    "RequestError",
    "Shot",
    "ShotOutput",
    "ShotPlan",
    "StorageError",
    "UnknownModelError",
    "UnreachableError",
    "VideoRequest",
    "WaitTimeoutError",
    "generate",
    "register_engine",
]


def test_all_is_exactly_the_public_api():
    assert reelforge.__all__ == PUBLIC_API
    # Every other public name of the package is one of its subpackages (or the logging it sets up).
    extra = {n for n in vars(reelforge) if not n.startswith("_") and n not in PUBLIC_API}
    assert extra <= {m.split(".")[1] for m in MODULES if m.count(".") >= 1} | {"logging"}, sorted(extra)


@pytest.mark.parametrize("name", PUBLIC_API)
def test_each_public_name_imports_and_is_documented(name):
    namespace: dict[str, object] = {}
    exec(f"from reelforge import {name}", namespace)
    obj = namespace[name]
    own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    assert own and own.strip(), f"reelforge.{name} has no docstring of its own"


# Which wire's error shape each module's routes answer in (server/errors.py, wire_of); the routes themselves
# come from the app.
WIRE_OF_MODULE = {
    "reelforge.server.bedrock_api": "bedrock",
    "reelforge.server.extensions": "bedrock",
    "reelforge.server.openapi": "bedrock",
    "reelforge.server.openai_api": "openai",
    "reelforge.server.gemini_api": "gemini",
    "reelforge.server.gallery": "bedrock",  # its pages answer in HTML; its other errors in Bedrock's shape
}
SHAPES = {
    "bedrock": lambda reply: reply.headers.get("x-amzn-ErrorType") and set(reply.json()) == {"message"},
    "openai": lambda reply: set(reply.json()) == {"error"} and set(reply.json()["error"]) == {"message", "type", "param", "code"},
    "gemini": lambda reply: set(reply.json()) == {"error"} and set(reply.json()["error"]) == {"code", "message", "status"},
}


def _owner(route) -> str:
    endpoint = getattr(route, "endpoint", None)
    module = endpoint.__module__ if endpoint else "reelforge.server.gallery"  # the gallery's static Mount
    return next((m for m in WIRE_OF_MODULE if module == m or module.startswith(m + ".")), module)


def test_the_error_shapes_cover_every_route(tmp_path):
    from starlette.testclient import TestClient

    from reelforge.server.app import ServerSettings, create_app
    from reelforge.server.errors import wire_of

    app = create_app(ServerSettings(workers=0, bucket_dir=tmp_path / "buckets", data_dir=tmp_path / "home"))
    assert len(app.routes) > 20  # the routes are the app's, all of them
    client = TestClient(app, base_url="http://127.0.0.1:8080")
    wrong = []
    for route in app.routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path) + ("/x" if not hasattr(route, "endpoint") else "")
        owner = _owner(route)
        if owner not in WIRE_OF_MODULE:
            wrong.append(f"{route.path}: its module {owner} is not in the table")
            continue
        expected = WIRE_OF_MODULE[owner]
        reply = client.request("PUT", path)  # no route answers PUT: every wire's error path
        if wire_of(path) != expected or reply.status_code < 400 or not SHAPES[expected](reply):
            wrong.append(f"{route.path} ({owner}): wire_of says {wire_of(path)}, expected {expected}; PUT got {reply.status_code} {reply.text[:120]}")
    assert not wrong, "\n".join(wrong)
