"""scripts/check_imports.py: the package has no import cycle, its bottom layer imports nothing above it, and a
function-level import defers something heavy; the check finds each kind of break."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_imports", ROOT / "scripts" / "check_imports.py")
check_imports = importlib.util.module_from_spec(spec)
sys.modules["check_imports"] = check_imports  # (its dataclass looks itself up there)
spec.loader.exec_module(check_imports)


def test_the_package_passes():
    assert check_imports.check(ROOT) == []


def _pkg(tmp_path, files: dict[str, str]) -> Path:
    for name, text in {"onthefly/__init__.py": "", **files}.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    root = _pkg(tmp_path, {"onthefly/a.py": "from . import b\n",
                           "onthefly/b.py": "def f():\n    from .a import x  # hides the cycle\n    return x\n"})
    problems = check_imports.check(root)
    assert any(p.startswith("import cycle between onthefly.a, onthefly.b") and "onthefly/b.py:2" in p
               for p in problems), problems


def test_a_cycle_through_a_package_init_is_found(tmp_path):
    root = _pkg(tmp_path, {"onthefly/sub/__init__.py": "from .m import y\n",
                           "onthefly/sub/m.py": "from ..top import z\ny = 1\n",
                           "onthefly/top.py": "from .sub.m import y\nz = 2\n"})
    problems = check_imports.check(root)
    assert any("import cycle" in p and "onthefly.sub" in p and "onthefly.top" in p for p in problems), problems


def test_layers_and_lazy_imports(tmp_path):
    root = _pkg(tmp_path, {"onthefly/geometry.py": "from .dataset import D\n",
                           "onthefly/dataset.py": "D = 1\n",
                           "onthefly/viz.py": "def f():\n    import json\n    import matplotlib\n",
                           "onthefly/commands/__init__.py": "",
                           "onthefly/commands/x.py": "def run():\n    import torch\n"})
    problems = check_imports.check(root)
    assert any("onthefly/geometry.py:1: bottom-layer module onthefly.geometry imports onthefly.dataset" in p
               for p in problems), problems
    lazy = [p for p in problems if "function-level import" in p]
    # json defers nothing; matplotlib (optional) and torch in a command (fast --help) are deferrals
    assert lazy == ["onthefly/viz.py:2: function-level import of json defers nothing heavy (import it at the top "
                    "of the module)"], lazy
