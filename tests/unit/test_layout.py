"""The package installs under one name, vidcurate.*: from the editable install and from a
built wheel, and the bare folder names (pipeline, transforms, schemas) are not ours."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.helpers import ROOT

PROBE = """
import importlib, json, sys
found = {}
for name in ("vidcurate.pipeline.cli", "vidcurate.transforms.media.tools",
             "vidcurate.schemas.tables"):
    found[name] = importlib.import_module(name).__file__
for name in ("pipeline", "transforms", "schemas"):
    try:
        found[name] = importlib.import_module(name).__file__
    except ModuleNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


def _imports(cwd: Path, extra_path: str | None = None) -> dict[str, str | None]:
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if extra_path:
        env["PYTHONPATH"] = extra_path
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_outside_the_checkout_only_vidcurate_is_ours(tmp_path):
    found = _imports(tmp_path)
    assert found["vidcurate.pipeline.cli"] == str(ROOT / "pipeline" / "cli.py")
    for bare in ("pipeline", "transforms", "schemas"):
        assert found[bare] is None or not found[bare].startswith(str(ROOT)), found


def test_a_built_wheel_holds_the_vidcurate_namespace_and_works(tmp_path):
    # Built from a copy: setuptools leaves build/ folders beside the sources.
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "pipeline", "transforms", "schemas"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (ROOT / name).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(src)], check=True,
                   capture_output=True)
    wheel = next(tmp_path.glob("vidcurate-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if ".dist-info/" not in n]
        entry_points = z.read(next(n for n in z.namelist()
                                   if n.endswith("entry_points.txt"))).decode()
        z.extractall(tmp_path / "site")
    assert names and all(n.startswith("vidcurate/") for n in names), names
    # Package data travels with the code.
    assert {"vidcurate/pipeline/report.js",
            "vidcurate/transforms/teachers/vocabulary.txt",
            "vidcurate/pipeline/profiles/default.toml",
            "vidcurate/pipeline/profiles/open_sora.toml"} <= set(names)
    assert "vidcurate = vidcurate.pipeline.cli:main" in entry_points
    # The wheel's copy is what Python imports when it comes first on the path.
    site = tmp_path / "site"
    found = _imports(tmp_path, str(site))
    assert found["vidcurate.transforms.media.tools"] == str(
        site / "vidcurate/transforms/media/tools.py")
    assert found["pipeline"] is None or not found["pipeline"].startswith(str(site))


def _our_imports() -> dict[str, set[str]]:
    """vidcurate module -> the vidcurate modules it imports, anywhere in its code
    (function-level imports too; TYPE_CHECKING ones count as well)."""
    import ast

    graph: dict[str, set[str]] = {}
    for layer in ("pipeline", "transforms", "schemas"):
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("vidcurate", *parts)).removesuffix(".__init__")
            found = graph.setdefault(name, set())
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                else:
                    continue
                found.update(t for t in targets if t.startswith("vidcurate."))
    # Keep only names that are modules ("from x import Class" names the module x).
    return {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items()}


def test_layers_point_one_way():
    """pipeline (the program) -> transforms (stages, media, models) -> schemas."""
    below = {"vidcurate.pipeline": 2, "vidcurate.transforms": 1, "vidcurate.schemas": 0}

    def level(module: str) -> int:
        return below[".".join(module.split(".")[:2])]

    upward = sorted(f"{m} imports {t}" for m, ts in _our_imports().items() for t in ts
                    if level(t) > level(m))
    assert upward == []


def test_no_import_cycles():
    graph = _our_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_stage_names_agree():
    """A stage's module, its name in metrics and error rows (STAGE) and its step in the
    DAG are one name: transforms/embed_clips.py, stage embed_clips, step EmbedClips."""
    import ast

    stages = {}
    for path in (ROOT / "transforms").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "STAGE"
                    and isinstance(node.value, ast.Constant)):
                stages[path.stem] = node.value.value
    assert len(stages) >= 15
    assert {m: s for m, s in stages.items() if m != s} == {"fetch_config": "fetch"}

    dag = (ROOT / "pipeline" / "dag.py").read_text()
    labels = {node.left.value for node in ast.walk(ast.parse(dag))
              if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift)
              and isinstance(node.left, ast.Constant)}
    by_name = {label.lower(): label for label in labels}
    in_dag = {"manifest", "resume", "fetch", "content_dedup", "probe", "detect_scenes",
              "stitch", "clip_rules", "cut_clips", "ocr", "asr", "embed_clips",
              "judge_clips", "captioning", "score_captions"}
    missing = {s for s in in_dag if s.replace("_", "") not in by_name}
    assert missing == set(), f"no DAG step named after stages {missing}; steps: {labels}"
