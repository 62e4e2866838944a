"""The documentation site builds strictly (no broken link, anchor or reference), its
generated reference documents every command, option, table and column the code has, and
the commands that README and the docs show use only commands and options that exist."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import ROOT
from vidcurate.pipeline import cli
from vidcurate.schemas.tables import TABLES


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    # --strict turns every warning (a broken link or anchor, an undocumented option or
    # column) into a failed build; show them all.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder


def shown_flags(action: argparse.Action) -> list[str]:
    """An argument's names as a user types them: positionals by name, options by every
    flag except the --snake_case twin each --kebab-case option has."""
    if not action.option_strings:
        return [action.dest]
    return [f for f in action.option_strings
            if not (f.startswith("--") and "_" in f
                    and f.replace("_", "-") in action.option_strings)]


def test_the_site_builds_strictly_with_every_page(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {"index.html", "reference/cli.html", "reference/tables.html",
            "tour.html", "gpus.html"} <= pages
    # README's tour is part of the site, its links into docs/ made site links.
    tour = (site / "tour.html").read_text()
    assert "kept 7 of 11 clips (view clips_curated)" in tour
    assert 'href="quality/index.html"' in tour
    assert 'src="images/report-gallery.png"' in tour
    # Review and calibration: the page and a calibration result, in the tour and its page.
    assert 'src="images/review-page.png"' in tour and "static_motion 0.005 -&gt; 0.028" in tour
    review = (site / "quality" / "review.html").read_text()
    assert 'src="../images/calibration-static.png"' in review


def test_every_command_and_option_is_in_the_cli_reference(site):
    html = (site / "reference" / "cli.html").read_text()
    assert set(cli.PARSERS) == set(cli.COMMANDS), "a command without a parser builder"
    for name in cli.COMMANDS:
        start = html.find(f'id="vidcurate-{name}"')
        assert start >= 0, f"vidcurate {name} is missing from the CLI reference"
        following = [html.find(f'id="vidcurate-{other}"') for other in cli.COMMANDS]
        end = min([i for i in following if i > start] or [len(html)])
        section = html[start:end]
        parser = cli.PARSERS[name]()
        actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        assert actions
        for action in actions:
            for flag in shown_flags(action):
                assert f"<code>{flag}</code>" in section, f"vidcurate {name} {flag}"
            # Each option's help is rendered in its row (the first words of it).
            words = " ".join(parser._get_formatter()._expand_help(action).split()[:3])
            row = section[section.find(f'id="{name}-{shown_flags(action)[0].lstrip("-")}"'):]
            row = re.sub(r"<[^>]+>", "", row[:row.find("</tr>")])
            assert words.replace("<", "&lt;").replace(">", "&gt;") in row, (name, action)


def test_every_table_and_column_is_in_the_tables_reference(site):
    html = (site / "reference" / "tables.html").read_text()
    for table, schema in TABLES.items():
        assert f'id="{table}"' in html, table
        for field in schema:
            assert f'id="{table}-{field.name}"' in html, f"{table}.{field.name}"


def _hooks():
    spec = importlib.util.spec_from_file_location("vidcurate_docs_hooks",
                                                  ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_undocumented_column_or_command_fails_the_build(monkeypatch, caplog):
    # The strict build fails on these warnings; what is checked here is that they are
    # raised at all, for a column, a stale description and a command the docs miss.
    from vidcurate.schemas import descriptions

    hooks = _hooks()
    clips = dict(descriptions.COLUMN_DESCRIPTIONS["clips"])
    clips.pop("motion_score")
    clips["no_such_column"] = "gone"
    monkeypatch.setitem(descriptions.COLUMN_DESCRIPTIONS, "clips", clips)
    monkeypatch.setitem(cli.COMMANDS, "newcommand", lambda argv: 0)
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.vidcurate"):
        hooks.tables_reference()
        hooks.cli_reference()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("clips.motion_score has no description" in m for m in messages), messages
    assert any("clips.no_such_column" in m for m in messages), messages
    assert any("vidcurate newcommand has no parser" in m for m in messages), messages


def test_an_option_without_help_fails_the_build(monkeypatch, caplog):
    hooks = _hooks()

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog="vidcurate new")
        p.add_argument("--explained", help="says what it does")
        p.add_argument("--mystery", type=int, default=3)
        return p

    monkeypatch.setitem(cli.COMMANDS, "new", lambda argv: 0)
    monkeypatch.setitem(cli.PARSERS, "new", parser)
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.vidcurate"):
        text = hooks.cli_reference()
    assert "## vidcurate new" in text and "says what it does" in text
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "no help" in m] == [
        "vidcurate new --mystery has no help text: the CLI reference has nothing to say "
        "about it"]


# ---- commands shown in README and the docs -------------------------------------------

def _code(markdown: str) -> list[str]:
    """The code in a Markdown text: fenced blocks (continuation lines joined) and inline
    code spans, where commands are shown."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", prose)


def _known_flags() -> dict[str, set[str]]:
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    # A runner's flags exist once its options class is imported (--dask_client_address).
    import vidcurate.pipeline.dask_runner  # noqa: F401

    def flags_of(parser: argparse.ArgumentParser) -> set[str]:
        return {f for a in parser._actions for f in a.option_strings}

    # Every Beam flag, as PipelineOptions itself collects them (flags, not dests: Dask's
    # --dask_client_address is stored as `address`).
    beam_parser = _BeamArgumentParser(allow_abbrev=False, conflict_handler="resolve")
    for options in {str(c): c for c in PipelineOptions.__subclasses__()
                    if c.__module__.startswith("apache_beam.")}.values():
        options._add_argparse_args(beam_parser)
    beam = flags_of(beam_parser)
    known = {name: flags_of(build()) for name, build in cli.PARSERS.items()}
    # Flags a command passes on: run and demo to Beam (demo's rest to run), dedup to
    # Beam, reselect to query.
    known["run"] |= beam
    known["demo"] |= known["run"]
    known["dedup"] |= beam
    known["reselect"] |= known["query"]
    return known


def test_commands_shown_in_readme_and_docs_exist_with_their_options():
    known = _known_flags()
    shown = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for code in _code(page.read_text(encoding="utf-8")):
            for match in re.finditer(r"\bvidcurate\s+([a-z_]+)(.*)", code):
                command, rest = match[1], match[2].split("#")[0]
                where = f"{page.relative_to(ROOT)}: {code.strip()}"
                assert command in known, f"no command {command!r} in {where}"
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", rest):
                    assert flag in known[command], f"vidcurate {command} has no {flag}: {where}"
                shown += 1
    assert shown > 40  # the scan finds the commands (README and usage alone show 20)
