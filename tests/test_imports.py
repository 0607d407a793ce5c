"""Imports: no import cycle, whichever module comes first, and ``import interir`` / ``interir --help``
stay fast (they import no heavy optional dependency and no command's implementation).

Each check runs in a fresh interpreter, so what this test process imported does not count.
"""

import json
import subprocess
import sys

import pytest

# Every interir module is imported first in turn: the interir modules are removed from
# sys.modules before each import (third-party ones stay, they cannot take part in a cycle of ours),
# so each import runs the package's own import chain from the start. __main__ modules run programs.
EACH_MODULE_FIRST = """
import importlib, pkgutil, sys
import interir

names = sorted(m.name for m in pkgutil.walk_packages(interir.__path__, "interir.")
               if not m.name.endswith("__main__"))
failed = []
for name in names:
    for key in [k for k in sys.modules if k == "interir" or k.startswith("interir.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("interir"):
            continue  # an optional dependency that is not installed: not a cycle
        failed.append(f"{name}: {exc!r}")
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
print(len(names))
print("\\n".join(failed))
"""

HEAVY_OPTIONAL = ["matplotlib", "gradio", "onnx", "onnxruntime", "tensorboard", "sklearn", "skimage"]
# What `interir --help` must not import: the implementation behind the commands.
COMMAND_IMPLEMENTATIONS = [
    "interir.config", "interir.data", "interir.degradations", "interir.engine.train",
    "interir.engine.evaluate", "interir.explain", "interir.export", "interir.profiling",
    "interir.webapp", "interir.classical", "interir.gpurun",
]
HELP = """
import sys
from interir.cli import main
sys.argv = ["interir", "--help"]
try:
    main()
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""
REPORT = "\nimport json, sys\nprint('MODULES ' + json.dumps(sorted(sys.modules)))\n"


def _run(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def _modules_after(code: str) -> tuple[set[str], str]:
    """The modules loaded after running ``code`` in a fresh interpreter, and its other output."""
    out = _run(code + REPORT).stdout
    head, _, modules = out.rpartition("MODULES ")
    return set(json.loads(modules)), head


@pytest.mark.slow  # about 100 fresh import chains: 20 s of CPU
def test_every_module_imports_first_without_a_cycle():
    lines = _run(EACH_MODULE_FIRST).stdout.splitlines()
    assert int(lines[0]) > 50  # the walk found the package's modules
    assert [line for line in lines[1:] if line] == []


def test_import_interir_leaves_heavy_optional_dependencies_out():
    modules, _ = _modules_after("import interir")
    assert [m for m in HEAVY_OPTIONAL + ["scipy", "torch"] if m in modules] == []
    assert "interir.models.factory" not in modules  # filled on the first lookup (issue 30)
    assert "interir.engine.train" not in modules


def test_lazy_names_and_registry_work_on_first_use():
    code = (
        "import interir\n"
        "assert 'interir-tiny' in interir.list_models()\n"
        "model = interir.create_model('interir-tiny')\n"
        "assert interir.models.InterIR is type(model)\n"
        "from interir import load_pretrained, list_pretrained\n"
        "assert 'default-rain' in list_pretrained()\n"
        "from interir.utils import read_image\n"
    )
    modules, _ = _modules_after(code)
    assert "interir.models.factory" in modules and "torch" in modules


def test_version_and_help_import_no_torch():
    """``interir --version`` took 1.5-7 s when every command imported torch at start-up."""
    code = HELP.replace('"--help"', '"--version"')
    for program in (code, HELP):
        modules, output = _modules_after(program)
        assert "torch" not in modules and "numpy" not in modules
    assert "interir " in _run(code).stdout


def test_help_lists_the_commands_without_importing_them():
    modules, output = _modules_after(HELP)
    assert "restore" in output and "eval" in output and "explain" in output
    assert [m for m in HEAVY_OPTIONAL if m in modules] == []
    loaded = sorted(m for m in modules if any(m == p or m.startswith(p + ".")
                                              for p in COMMAND_IMPLEMENTATIONS))
    assert loaded == []
