"""Import hygiene of the ``onthefly`` package, read from the source with ``ast`` (nothing is imported).

Four rules, each printed with the file and line that breaks it (exit status 1 when any does):

1. **No cycles** between the package's modules, counting every import (module level and inside functions:
   an import moved into a function to dodge a cycle still is one). ``if TYPE_CHECKING:`` imports do not count.
2. **Layers**: the bottom modules (``BOTTOM``) import nothing of the package above them.
3. **Function-level imports** only where they defer something heavy: an optional dependency (``OPTIONAL``) or
   a package module that (transitively, at module level) imports one, or, in the command-line modules
   (``onthefly.cli``, ``onthefly.commands.*``) that keep ``--help`` fast, any of the heavy required ones (``HEAVY``).
4. **No private names across modules**: ``from .m import _name`` and ``m._name`` (``m`` an imported package module)
   only inside ``m`` itself. A private name is a module's own business: an unchecked twin of a public function
   imported elsewhere is a second way to skip the input checks (the one way is ``onthefly.checks.trusted()``, see
   docs/architecture.md). Private *modules* (``_io``, ``_isolated``) are internal plumbing by name and may be
   imported, as may their public names; exceptions are listed in ``PRIVATE_ALLOWED`` with a reason (none).

    python scripts/check_imports.py            # check; --graph prints the module-level graph too
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "onthefly"
# modules at the bottom of the layers: they may import only each other (and third-party packages)
BOTTOM = {"onthefly.checks", "onthefly.geometry", "onthefly._io", "onthefly._isolated", "onthefly.sources.base"}
# optional dependencies: importing them at module level would make the package need them
OPTIONAL = {"pytorch3d", "face_alignment", "dlib", "face_recognition_models", "moderngl", "matplotlib", "skimage",
            "timm", "torchvision", "numba", "llvmlite", "tensorboard", "iopath", "psutil", "PIL"}
# required but slow to import: the command line defers them so that ``onthefly --help`` answers at once
HEAVY = {"torch", "numpy", "cv2", "h5py", "scipy", "lightning", "jsonargparse", "tqdm", "yaml"}
CLI_MODULES = ("onthefly.cli", "onthefly.commands")
# files rule 3 does not apply to yet (none)
LAZY_PENDING: set[str] = set()
# rule 4's exceptions: (importing module, imported module, private name) -> why it is internal plumbing (none)
PRIVATE_ALLOWED: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Import:
    src: str        # importing module
    target: str     # imported module (package module, or the top-level name of a third-party one)
    internal: bool
    lazy: bool      # inside a function
    line: int
    path: str
    implied: bool = False  # the parent package an import runs first, not the statement's own target


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def collect(root: Path) -> tuple[set[str], list[Import]]:
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(f, root): f for f in files}
    imports: list[Import] = []
    for name, f in modules.items():
        is_pkg = f.name == "__init__.py"
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))

        def visit(node: ast.AST, lazy: bool, name: str = name, f: Path = f, is_pkg: bool = is_pkg) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    for c in child.orelse:
                        visit(c, lazy)
                    continue
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    visit(child, True)
                    continue
                if isinstance(child, ast.Import):
                    for a in child.names:
                        _add(a.name, child.lineno, lazy)
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = name.split(".") if is_pkg else name.split(".")[:-1]
                        base = base[: len(base) - (child.level - 1)]
                        mod = ".".join(base + ([child.module] if child.module else []))
                    else:
                        mod = child.module or ""
                    for a in child.names:  # `from pkg import submodule` imports the submodule
                        sub = f"{mod}.{a.name}"
                        _add(sub if sub in modules else mod, child.lineno, lazy)
                else:
                    visit(child, lazy)

        def _add(target: str, line: int, lazy: bool, name: str = name, f: Path = f) -> None:
            internal = target == PACKAGE or target.startswith(PACKAGE + ".")
            if internal:
                while target not in modules and "." in target:  # `import onthefly.x.y as z`, names of modules
                    target = target.rsplit(".", 1)[0]
            else:
                target = target.split(".")[0]
            if target == name:
                return
            imports.append(Import(name, target, internal, lazy, line, str(f.relative_to(root))))
            if internal:  # importing a.b.c runs a/b/__init__.py first (unless the importer is inside a.b)
                parts = target.split(".")
                for k in range(2, len(parts)):
                    parent = ".".join(parts[:k])
                    if parent in modules and parent != name and not name.startswith(parent + "."):
                        imports.append(Import(name, parent, True, lazy, line, str(f.relative_to(root)), True))

        visit(tree, False)
    return set(modules), imports


@dataclass(frozen=True)
class PrivateUse:
    src: str        # the module that uses the name
    target: str     # the package module the name belongs to
    name: str       # the private name
    line: int
    path: str


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(root: Path) -> list[PrivateUse]:
    """Private names of one package module used by another: ``from m import _x`` (and ``from m import _x as y``)
    and ``m._x`` where ``m`` is bound by an import of a package module (``import onthefly.m as m``,
    ``from onthefly import m``), at any depth (in functions, ``if TYPE_CHECKING:`` too: a type is a use)."""
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(f, root): f for f in files}
    out: list[PrivateUse] = []
    for name, f in modules.items():
        is_pkg = f.name == "__init__.py"
        rel = str(f.relative_to(root))
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        bound: dict[str, str] = {}  # local name -> package module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod != PACKAGE and not mod.startswith(PACKAGE + "."):
                    continue
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    if sub in modules:  # a submodule (a private module is plumbing by name)
                        bound[a.asname or a.name] = sub
                    elif _is_private(a.name) and mod != name:
                        out.append(PrivateUse(name, mod, a.name, node.lineno, rel))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname and a.name in modules:
                        bound[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _is_private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and bound[node.value.id] != name):
                out.append(PrivateUse(name, bound[node.value.id], node.attr, node.lineno, rel))
    return out


def cycles(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def check(root: Path, show_graph: bool = False) -> list[str]:
    nodes, imports = collect(root)
    problems: list[str] = []
    internal = [i for i in imports if i.internal]
    every: dict[str, set[str]] = {}
    for i in internal:
        every.setdefault(i.src, set()).add(i.target)
    for comp in cycles(nodes, every):
        where = [f"{i.path}:{i.line} imports {i.target}" + (" (in a function)" if i.lazy else "")
                 for i in internal if i.src in comp and i.target in comp]
        problems.append("import cycle between " + ", ".join(comp) + ":\n    " + "\n    ".join(where))
    for i in internal:
        if i.src in BOTTOM and i.target not in BOTTOM:
            problems.append(f"{i.path}:{i.line}: bottom-layer module {i.src} imports {i.target} from above it")
    # heavy(m): m imports an optional dependency at module level, itself or through package modules
    top: dict[str, set[str]] = {}
    for i in imports:
        if not i.lazy:
            top.setdefault(i.src, set()).add(i.target)
    memo: dict[str, set[str]] = {}

    def deps(m: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if m in memo:
            return memo[m]
        got: set[str] = set()
        for t in top.get(m, ()):
            if t in nodes:
                if t not in seen:
                    got |= deps(t, seen | {m})
            else:
                got.add(t)
        memo[m] = got
        return got

    for i in imports:
        if not i.lazy or i.implied or i.path in LAZY_PENDING:
            continue
        cli = i.src.startswith(CLI_MODULES)
        allowed = OPTIONAL | HEAVY if cli else OPTIONAL
        reached = {i.target}
        if i.internal:  # what the target imports, and what its parent packages' __init__ import
            parts = i.target.split(".")
            reached = set().union(*(deps(".".join(parts[:k])) for k in range(2, len(parts) + 1)
                                    if not i.src.startswith(".".join(parts[:k]) + ".")))
        if not reached & allowed:
            problems.append(f"{i.path}:{i.line}: function-level import of {i.target} defers nothing heavy "
                            "(import it at the top of the module)")
    for u in private_uses(root):
        if (u.src, u.target, u.name) not in PRIVATE_ALLOWED:
            problems.append(f"{u.path}:{u.line}: {u.src} uses the private name {u.name} of {u.target} "
                            "(make it public or keep it in its module)")
    if show_graph:
        for m in sorted(top):
            print(m, "->", ", ".join(sorted(t for t in top[m] if t in nodes)))
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent), help="repository root")
    ap.add_argument("--graph", action="store_true", help="print the module-level import graph")
    args = ap.parse_args(argv)
    problems = check(Path(args.root), args.graph)
    for p in problems:
        print(p)
    lazy = sum(1 for i in collect(Path(args.root))[1] if i.lazy)
    print(f"check_imports: {len(problems)} problem(s); {lazy} function-level imports (outside {sorted(LAZY_PENDING)}: each defers a heavy one)"
          if not problems else f"check_imports: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
