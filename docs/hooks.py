"""MkDocs hook: the parts of the documentation that the code can say are generated from
it at build time, so they cannot drift from it.

A page asks for them with a marker on a line of its own:

- ``<!-- generated: cli -->``: every command of ``vidcurate`` (``cli.COMMANDS``) with its
  arguments, rendered from its argparse parser (``cli.PARSERS``): flags, default,
  choices, help. New commands and options appear without touching the docs.
- ``<!-- generated: tables -->``: every table of ``schemas.tables.TABLES`` with every
  column, its type and nullability, and its meaning from ``schemas.descriptions``.
- ``<!-- generated: tour -->``: README.md's tour of the demo output, so the front door
  and the site tell the same tour from one text.

Anything the generator cannot document (a command without a parser, an option without
help, a column without a description) is logged as a warning, which fails
``mkdocs build --strict`` (``make docs`` and tests/e2e/test_docs.py).
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
from mkdocs.exceptions import PluginError

# Under "mkdocs" so that --strict counts these warnings.
log = logging.getLogger("mkdocs.hooks.vidcurate")

MARKER = re.compile(r"^<!-- generated: (?P<what>[a-z]+) -->$", re.MULTILINE)

# Where each group of `vidcurate run`'s flags comes from (the function that declared
# them) -> its heading, and the page section that explains it (link text, target). A
# stage added later still gets its own group, titled after its config class, until it
# gets an entry here.
RUN_GROUPS: dict[str, tuple[str, tuple[str, str] | None]] = {
    "CurationOptions._add_argparse_args": ("The run", ("Usage", "../usage.md")),
    "FetchConfig.add_arguments": ("Fetching", ("Fetching", "../pipeline/inputs.md#fetching")),
    "add_split_arguments": ("Cut detection, clip rules and stitching",
                            ("How videos are split", "../pipeline/splitting.md")),
    "TransitionConfig.add_arguments": (
        "Gradual transitions",
        ("Gradual transitions", "../pipeline/splitting.md#gradual-transitions")),
    "MediaConfig.add_arguments": (
        "Clip media and keyframes",
        ("Clip media and keyframes", "../pipeline/splitting.md#clip-media-and-keyframes")),
    "MediaLimits.add_arguments": ("Limits of ffmpeg and ffprobe",
                                  ("Untrusted media", "../security.md#untrusted-media")),
    "OcrConfig.add_arguments": ("OCR", ("OCR", "../pipeline/ocr.md")),
    "AsrConfig.add_arguments": ("ASR", ("ASR", "../pipeline/asr.md")),
    "TeachersConfig.add_arguments": ("Caption teachers",
                                     ("Caption teachers", "../pipeline/teachers.md")),
    "ClipModelConfig.add_arguments": ("CLIP", ("CLIP", "../pipeline/clip.md")),
    "QualityConfig.add_arguments": ("Quality flags and subtitles",
                                    ("Judging clips", "../quality/judging.md")),
    "AestheticConfig.add_arguments": (
        "Aesthetic score", ("Aesthetic score", "../quality/judging.md#aesthetic-score")),
}


def on_page_markdown(markdown: str, page: Any, config: Any, **_: Any) -> str:
    def render(match: re.Match[str]) -> str:
        what = match["what"]
        if what == "cli":
            return cli_reference()
        if what == "tables":
            return tables_reference()
        if what == "tour":
            return readme_tour(Path(config.config_file_path).parent / "README.md")
        raise PluginError(f"{page.file.src_path}: unknown marker <!-- generated: {what} -->")

    return MARKER.sub(render, markdown)


# ---- the CLI ---------------------------------------------------------------------------

def cli_reference() -> str:
    from vidcurate.pipeline import cli

    parts = []
    for name in cli.COMMANDS:
        build = cli.PARSERS.get(name)
        if build is None:
            log.warning("vidcurate %s has no parser builder in vidcurate.pipeline.cli."
                        "PARSERS, so the CLI reference cannot document it", name)
            continue
        with recording_callers() as callers:
            parser = build()
        parts.append(command_section(name, parser, callers))
    return "\n".join(parts)


@contextmanager
def recording_callers() -> Iterator[dict[int, str]]:
    """Record, per argparse action, which function declared it (the stage config whose
    add_arguments it came from), to group `run`'s flags by stage. The options code
    declares flags through small `add(...)` helpers, which are skipped."""
    callers: dict[int, str] = {}
    original = argparse._ActionsContainer.add_argument

    def add_argument(self: Any, *args: Any, **kwargs: Any) -> argparse.Action:
        action = original(self, *args, **kwargs)
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name == "add":
            frame = frame.f_back
        callers[id(action)] = frame.f_code.co_qualname if frame is not None else ""
        return action

    argparse._ActionsContainer.add_argument = add_argument  # type: ignore[method-assign]
    try:
        yield callers
    finally:
        argparse._ActionsContainer.add_argument = original  # type: ignore[method-assign]


def command_section(name: str, parser: argparse.ArgumentParser,
                    callers: dict[int, str]) -> str:
    lines = [f"## vidcurate {name}", ""]
    if parser.description:
        lines += [md_text(parser.description), ""]
    usage = parser.format_usage().strip()
    if usage.count("\n") < 8:  # run's usage lists ~100 flags: the table says it better
        lines += ["```text", usage, "```", ""]
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    groups: dict[str, list[argparse.Action]] = {}
    for action in actions:
        groups.setdefault(callers.get(id(action), ""), []).append(action)
    for caller, members in groups.items():
        if len(groups) > 1:
            title, link = RUN_GROUPS.get(caller, (fallback_title(caller), None))
            lines += [f"### {title}", ""]
            if link:
                lines += [f"How these work: [{link[0]}]({link[1]}).", ""]
        lines += ["| argument | default | meaning |", "|---|---|---|"]
        for action in members:
            lines.append(argument_row(name, parser, action))
        lines.append("")
    return "\n".join(lines)


def fallback_title(caller: str) -> str:
    owner = caller.split(".")[0]
    return owner.removesuffix("Config") or "Other options"


def flags(action: argparse.Action) -> list[str]:
    """The flags to show: --clip-media, not its --clip_media twin (every option takes
    both spellings), but real aliases such as --refuse-private-addresses."""
    if not action.option_strings:
        return [action.dest]
    shown: list[str] = []
    for flag in action.option_strings:
        if any(flag == s.replace("-", "_") or flag == "--" + s[2:].replace("-", "_")
               for s in shown):
            continue
        shown.append(flag)
    return shown


def anchor(command: str, action: argparse.Action) -> str:
    return f"{command}-{flags(action)[0].lstrip('-')}"


def argument_row(command: str, parser: argparse.ArgumentParser,
                 action: argparse.Action) -> str:
    names = ", ".join(f"`{f}`" for f in flags(action))
    cell = f'<a id="{anchor(command, action)}"></a>{names}'
    meaning = help_text(parser, action)
    if not meaning:
        log.warning("vidcurate %s %s has no help text: the CLI reference has nothing to "
                    "say about it", command, flags(action)[0])
    notes = []
    if action.choices:
        notes.append("Choices: " + ", ".join(f"`{c}`" for c in action.choices) + ".")
    if action.required and action.option_strings:
        notes.append("Required.")
    if isinstance(action, argparse._AppendAction) and "repeatable" not in meaning.lower():
        notes.append("Repeatable.")
    if meaning and notes and not meaning.endswith((".", "!", "?")):
        meaning += "."
    meaning = " ".join([meaning, *notes]).strip()
    return f"| {cell} | {default_text(action)} | {meaning} |"


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    # argparse's own expansion: %(default)s and %% as the user sees them in --help.
    return md_text(parser._get_formatter()._expand_help(action))


def default_text(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if isinstance(action, argparse._StoreFalseAction):
        return "on"
    default = action.default
    if default is None or default == argparse.SUPPRESS or default == []:
        return "–"
    if isinstance(default, float) and default.is_integer() and default >= 1024:
        default = int(default)
    text = f"`{default}`"
    if "bytes" in action.dest and isinstance(default, int) and default >= 1024:
        text += f" ({binary_size(default)})"
    return text


def binary_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or n % 1024:
            return f"{n:g} {unit}"
        n //= 1024
    return f"{n} PiB"


def md_text(text: str) -> str:
    """Plain text (help, descriptions) as Markdown for a table cell: markup characters
    outside `code` are shown as themselves, and no line break ends the cell."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):  # outside backticks
        parts[i] = re.sub(r"([\\*_\[\]|])", r"\\\1", html.escape(parts[i], quote=False))
    return "`".join(parts)


# ---- README's tour -------------------------------------------------------------------

TOUR_HEADING = "## A five-minute tour of the demo output"


def readme_tour(readme: Path) -> str:
    """The tour section of README.md (without its heading, which the page has), its
    links to docs/ made relative to the docs folder."""
    text = readme.read_text(encoding="utf-8")
    start = text.find(TOUR_HEADING + "\n")
    if start < 0:
        raise PluginError(f"{readme} has no section {TOUR_HEADING!r}")
    body = text[start + len(TOUR_HEADING):]
    end = body.find("\n## ")
    body = body if end < 0 else body[:end]
    return re.sub(r"\]\(docs/", "](", body).strip() + "\n"


# ---- the tables ------------------------------------------------------------------------

def tables_reference() -> str:
    from vidcurate.schemas.descriptions import COLUMN_DESCRIPTIONS, TABLE_DESCRIPTIONS
    from vidcurate.schemas.tables import SCHEMA_VERSION, TABLES

    lines = [f"Schema version {SCHEMA_VERSION}.", ""]
    for table, schema in TABLES.items():
        described = COLUMN_DESCRIPTIONS.get(table, {})
        lines += [f"### {table}", ""]
        if table in TABLE_DESCRIPTIONS:
            lines += [TABLE_DESCRIPTIONS[table], ""]
        else:
            log.warning("table %s has no description in vidcurate.schemas.descriptions",
                        table)
        lines += ["| column | type | meaning |", "|---|---|---|"]
        for field in schema:
            meaning = described.get(field.name)
            if meaning is None:
                log.warning("column %s.%s has no description in vidcurate.schemas."
                            "descriptions", table, field.name)
                meaning = ""
            type_text = arrow_type(field.type) + ("" if field.nullable else ", not null")
            lines.append(f'| <a id="{table}-{field.name}"></a>`{field.name}` | '
                         f"`{type_text}` | {meaning} |")
        for stale in sorted(set(described) - set(schema.names)):
            log.warning("vidcurate.schemas.descriptions describes %s.%s, which the "
                        "schema does not have", table, stale)
        lines.append("")
    for stale in sorted(set(COLUMN_DESCRIPTIONS) - set(TABLES)):
        log.warning("vidcurate.schemas.descriptions describes table %s, which does not "
                    "exist", stale)
    return "\n".join(lines)


def arrow_type(t: pa.DataType) -> str:
    """A type as a reader of the tables needs it: lists and structs spelled out, without
    pyarrow's `item:` noise."""
    if pa.types.is_fixed_size_list(t):
        return f"{arrow_type(t.value_type)}[{t.list_size}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{arrow_type(t.value_type)}>"
    if pa.types.is_struct(t):
        inner = ", ".join(f"{f.name} {arrow_type(f.type)}" for f in t)
        return f"struct<{inner}>"
    return str(t)


# Not hooks themselves, but handy when editing the docs: `python docs/hooks.py cli`.
def _main(argv: list[str]) -> int:
    render: dict[str, Callable[[], str]] = {"cli": cli_reference, "tables": tables_reference}
    print(render[argv[0] if argv else "cli"]())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
