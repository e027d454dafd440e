"""The layering of the package (STYLE.md "The shape of the house") as tests.

The record is the bottom floor; the gate and the report read only the record, so
importing them must not load the runner, a provider, a classifier backend or torch.
Each import is checked in a fresh interpreter, because this test process has long since
imported everything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import rai_harness

PACKAGE = Path(rai_harness.__file__).resolve().parent

#: Module prefixes the light entry points must never load.
HEAVY = (
    "torch",
    "transformers",
    "rai_harness.run",
    "rai_harness.providers",
    "rai_harness.classifiers",
    "rai_harness.guardrails",
    "rai_harness.suites",
    # The stats floor needs scipy's special functions, not its 800-module distributions package.
    "scipy.stats",
)


def _loaded_after_import(module: str) -> list[str]:
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "module", ["rai_harness", "rai_harness.gate", "rai_harness.report", "rai_harness.record"]
)
def test_light_entry_points_load_no_runner_provider_classifier_or_torch(module: str) -> None:
    loaded = _loaded_after_import(module)
    assert module in loaded  # the probe really imported it in a fresh interpreter
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == [], f"import {module} loaded {heavy}"


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in _imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return bad


def test_record_imports_no_floor_above_it() -> None:
    above = tuple(
        f"rai_harness.{p}"
        for p in (
            "run",
            "suites",
            "report",
            "gate",
            "providers",
            "classifiers",
            "guardrails",
            "config",
            "cli",
        )
    )
    assert _offenders("record", above) == []


def test_suites_never_import_the_run_package() -> None:
    assert _offenders("suites", ("rai_harness.run",)) == []


def test_runtime_packages_never_import_the_training_package() -> None:
    # Training (corpora, fine-tuning, the model card) is offline work: the classifiers, the guard
    # and the run load trained weights, never the code that made them.
    for package in ("classifiers", "guardrails", "run", "suites", "providers"):
        assert _offenders(package, ("rai_harness.training",)) == [], package


def test_gate_and_report_never_import_the_run_package() -> None:
    assert _offenders("gate", ("rai_harness.run",)) == []
    assert _offenders("report", ("rai_harness.run",)) == []


def test_probe_sees_a_heavy_import() -> None:
    # The probe is not blind: importing the pipeline does load the runner.
    assert "rai_harness.run.runner" in _loaded_after_import("rai_harness.run.execute")


def test_a_worker_process_imports_neither_the_pipeline_nor_scipy_nor_the_sdk() -> None:
    # A worker (rai_harness.run.shards) starts a fresh interpreter per process: what it imports is
    # start-up time of every sharded run, and objects every GC pass walks.
    loaded = _loaded_after_import("rai_harness.run.shards, rai_harness.providers.openai_http")
    assert "rai_harness.run.runner" in loaded
    heavy = ("scipy", "openai", "rai_harness.run.execute", "rai_harness.config", "rai_harness.record.schema")
    assert [m for m in heavy if m in loaded] == []


def _module_graph(package: str) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports, at any depth (lazy and
    ``TYPE_CHECKING`` imports included: a cycle hidden in a function is still a cycle).

    ``from pkg import sub`` counts as importing both ``pkg`` (its ``__init__``, which
    re-exports the submodules) and ``pkg.sub``.
    """
    root = f"rai_harness.{package}"
    modules = {
        root
        if p.name == "__init__.py"
        else f"{root}.{p.relative_to(PACKAGE / package).with_suffix('').as_posix().replace('/', '.')}": p
        for p in (PACKAGE / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported_modules(path):
            # The longest known module the import names (``pkg.mod.Class`` -> ``pkg.mod``).
            parts = imported.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in modules:
                    targets.add(candidate)
                    break
        targets.discard(name)
        graph[name] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_guardrails_modules_import_each_other_without_cycles() -> None:
    # No module imports one that imports it back (issue 8). The package's __init__
    # re-exports the submodules, so a submodule importing the package is a cycle too.
    graph = _module_graph("guardrails")
    root = "rai_harness.guardrails"
    offenders = sorted(k for k, v in graph.items() if root in v)
    assert offenders == [], f"{offenders} import the guardrails package itself (import the submodule)"
    assert _cycle(graph) is None
    # The probe is not blind: it sees the edges that are meant to exist.
    assert "rai_harness.guardrails.policy" in graph["rai_harness.guardrails.guard"]
    assert "rai_harness.guardrails.streaming" in graph["rai_harness.guardrails.guard"]
    assert "rai_harness.guardrails.guard" in graph[root]


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


#: Hooks declared on the typed seams (``Provider``; the pool's typed accessors): callers call
#: them, never probe for them with ``getattr``/``hasattr`` (issue 8, "typed seams").
_DECLARED_HOOKS = frozenset({"load", "describe", "aclose", "generate", "embed", "predict", "produces_spans"})


def _probes(path: Path, root: Path = PACKAGE) -> list[str]:
    """``getattr(x, "hook")`` / ``hasattr(x, "hook")`` calls in ``path`` naming a declared hook."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in _DECLARED_HOOKS
        ):
            found.append(
                f"{path.relative_to(root)}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})"
            )
    return found


def test_no_module_probes_for_a_declared_hook() -> None:
    # build_provider (providers/base.py) checks a plugin's object once, by a loop variable;
    # everything after it calls the hooks directly.
    offenders = [probe for path in sorted(PACKAGE.rglob("*.py")) for probe in _probes(path)]
    assert offenders == []


def test_probe_finder_sees_a_probe(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'load = getattr(provider, "load", None)\nok = hasattr(pool, "embed")\n', encoding="utf-8"
    )
    assert len(_probes(sample, tmp_path)) == 2


def test_registry_is_a_bottom_floor_module() -> None:
    # One registry type for suites, backends and provider kinds: it must import none of them.
    imported = _imported_modules(PACKAGE / "registry.py")
    assert {
        m.rpartition(".")[0] if m.count(".") > 1 else m for m in imported if m.startswith("rai_harness.")
    } == {"rai_harness.errors"}


def test_one_did_you_mean_helper() -> None:
    # Ten error sites once spelled their own difflib hint (with different spellings, tie rules
    # and formats); errors.did_you_mean is the one they share now.
    users = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(m == "difflib" or m.startswith("difflib.") for m in _imported_modules(path))
    )
    assert users == ["errors.py"]


def test_no_other_module_builds_its_own_registry() -> None:
    # The three former registries each carried a dict of "module:attr" targets, an entry-point
    # reader and a "did you mean" lookup; only registry.py may read entry points now.
    readers = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(
            m.startswith("importlib.metadata.entry_points") or m == "importlib.metadata.entry_points"
            for m in _imported_modules(path)
        )
        or "entry_points(" in path.read_text(encoding="utf-8")
    )
    assert readers == ["registry.py"]


def test_gate_loads_only_its_floor_and_those_below() -> None:
    # The gate reads a run record and a policy: it needs record, stats, errors, validation and
    # the Markdown escaper, not the report package (which it once loaded, with its charts and
    # views, to escape a table cell). 23 rai_harness modules when this was written (was 31);
    # `lazy` is the packages' lazy-export helper (no imports of its own).
    loaded = [m for m in _loaded_after_import("rai_harness.gate") if m.startswith("rai_harness")]
    floors = {m.split(".")[1] for m in loaded if "." in m}
    assert floors == {"errors", "gate", "lazy", "markdown", "record", "stats", "validation"}, floors
    assert len(loaded) <= 26, loaded


def _timed_wake_wait(call: ast.Call) -> bool:
    """``cond.wait(t)`` / ``event.wait(t)``, or ``asyncio.wait_for(event.wait(), t)``: a wait
    for a wake-up signal that gives up after a timeout (``asyncio.wait(...)`` is not one)."""
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    receiver_is_asyncio = isinstance(func.value, ast.Name) and func.value.id == "asyncio"
    if func.attr == "wait" and not receiver_is_asyncio:
        return bool(call.args or call.keywords)
    if func.attr == "wait_for" and call.args:
        inner = call.args[0]
        return (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Attribute)
            and inner.func.attr == "wait"
            and len(call.args) + len(call.keywords) >= 2
        )
    return False


def _batch_window_loops(path: Path, root: Path = PACKAGE) -> list[str]:
    """``while`` loops that wait, with a timeout, to be woken by a new arrival: a gathering window."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(root).as_posix()}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.While)
        and any(isinstance(sub, ast.Call) and _timed_wake_wait(sub) for sub in ast.walk(node))
    ]


def test_one_micro_batching_engine() -> None:
    # The guard's MicroBatcher and hf-local's generation queue both go through batching.py;
    # a second hand-rolled batcher would show up as another gathering-window loop.
    # run/journal.py is not a batcher of callers: its writer thread polls a write-behind queue
    # (put() returns at once, nobody waits for a result), and it must NOT be woken per item,
    # which is the engine's design (a thread switch per call cost the event loop more than the
    # write it saved; see the journal's module docstring).
    modules = {
        loop.split(":")[0] for path in sorted(PACKAGE.rglob("*.py")) for loop in _batch_window_loops(path)
    }
    assert modules == {"batching.py", "run/journal.py"}


def test_batch_window_finder_sees_both_former_batchers(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "async def gather(wakeup, deadline, loop):\n"
        "    while True:\n"
        "        await asyncio.wait_for(wakeup.wait(), deadline - loop.time())\n"
        "def take(cond, remaining):\n"
        "    while remaining > 0:\n"
        "        cond.wait(remaining)\n"
        "def fine(cond, tasks, reader):\n"
        "    while tasks:\n"
        "        cond.wait()\n"
        "        asyncio.wait(tasks, timeout=1)\n"
        "        asyncio.wait_for(reader.readline(), 1)\n",
        encoding="utf-8",
    )
    assert _batch_window_loops(sample, tmp_path) == ["sample.py:2", "sample.py:5"]


#: The hf-local package's modules, bottom floor first (see its ``__init__`` docstring).
_HF_LOCAL_FLOORS = ("gguf", "config", "governor", "model", "generation", "shared", "provider")


def test_hf_local_modules_import_only_the_floors_below() -> None:
    # Module-level imports only: the config builds its provider through a function-level
    # import, and shared.py names the provider under TYPE_CHECKING (neither runs at import).
    folder = PACKAGE / "providers" / "hf_local"
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted([*_HF_LOCAL_FLOORS, "__init__"])
    prefix = "rai_harness.providers.hf_local."
    upward = []
    for floor, name in enumerate(_HF_LOCAL_FLOORS):
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
                target = node.module.removeprefix(prefix)
                if _HF_LOCAL_FLOORS.index(target) >= floor:
                    upward.append(f"{name} imports {target}")
    assert upward == []
