"""The passes over an output refuse what they cannot do honestly (issue 29): a folder
that is not an output (they would write their tables into it), a dedup without
embeddings (it would mark every clip "not a duplicate"), and README's quick start must
end with clips on an output made with the default options."""

from __future__ import annotations

import re
import shlex
import tarfile
from pathlib import Path

import pytest

from tests.e2e.test_curate import CLIPS, GOOD, write_output
from tests.support.helpers import ROOT, run_cli
from vidcurate.pipeline.query import connect


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def vocabulary(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("car\nstreet\n")
    return path


@pytest.mark.parametrize("folder", ["empty", "input"])
@pytest.mark.parametrize("command", ["curate", "dedup", "balance", "report", "stats"])
def test_passes_refuse_a_folder_that_is_not_an_output(tmp_path, vocabulary, folder, command):
    target = tmp_path / folder
    target.mkdir()
    if folder == "input":  # a folder of videos, the --input of a run named by mistake
        (target / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
        (target / "notes.txt").write_text("raw footage\n")
    before = _files(target)
    extra = ["--vocabulary", str(vocabulary), "--cap", "2"] if command == "balance" else []
    proc = run_cli(command, str(target), *extra)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"vidcurate: {str(target)!r} is not a vidcurate output (no runs/ table): give the "
        "--output folder of a finished run"]
    assert _files(target) == before
    assert sorted(p.name for p in target.iterdir()) == sorted(before)  # no empty folders


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output as a run with the default options makes it on a machine without CLIP
    weights: no embeddings, no aesthetic score."""
    out = tmp_path / "out"
    write_output(out, {name: GOOD | changes | {"aesthetic_score": None}
                       for name, (changes, _) in CLIPS.items()})
    return out


def test_dedup_without_embeddings_refuses_and_curate_still_sees_unmeasured(out):
    before = _files(out)
    proc = run_cli("dedup", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no clip embeddings to compare" in proc.stderr and "CLIP" in proc.stderr
    assert "Traceback" not in proc.stderr and "probability" not in proc.stdout
    assert _files(out) == before  # no duplicates/ file, no passes row
    assert run_cli("curate", str(out)).returncode == 0
    con = connect(str(out))
    unmeasured = con.sql("SELECT count(*) FILTER (list_contains(unmeasured, 'duplicate')), "
                         "count(*) FILTER (kept) FROM curation").fetchall()[0]
    assert unmeasured[0] == unmeasured[1] > 0  # every kept clip reached `duplicate` unjudged


def _quick_start() -> list[list[str]]:
    """The vidcurate commands of README's quick start block, as argument lists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("Then, on your own videos")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, "README's quick start lost its bash block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "vidcurate":
            commands.append(words[1:])
    return commands


def run_quick_start_after_run(out: Path, dest: Path) -> set[str]:
    """README's quick start after its `run` (which made `out`), literally: the clip ids
    its export wrote into `dest`."""
    commands = _quick_start()
    assert [c[0] for c in commands] == ["run", "query", "curate", "export"]
    for args in commands[1:]:
        args = [str(out) if a == "./out" else str(dest) if a == "./wds" else a for a in args]
        proc = run_cli(*args)
        assert proc.returncode == 0, (args, proc.stdout + proc.stderr)
    exported = set()
    for shard in dest.glob("*.tar"):
        with tarfile.open(shard) as tar:
            exported |= {m.name.split(".", 1)[0] for m in tar.getmembers()}
    return exported


def test_readme_quick_start_ends_with_clips(out, tmp_path):
    """README: run -> query -> curate -> export --view clips_curated. On an output made
    with the default options (no aesthetic head) it exported 0 clips (issue 29)."""
    assert run_quick_start_after_run(out, tmp_path / "wds"), "the quick start ended with no clips"
