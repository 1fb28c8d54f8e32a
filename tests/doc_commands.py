"""The `zvsr` command lines the documentation shows, and a strict parse of one against the real command tree — for
the tests that keep the docs and the CLI from drifting apart (a helpers module, not a test module: STYLE rule 15).

What counts as a command shown:
- in a code block (fenced, or indented by four spaces), a line that starts with ``zvsr `` — or, in a block
  that is a console transcript (it has ``$ `` prompts), a prompt line — and each ``zvsr …`` part of a line
  joined with ``;``, ``&&`` or ``||``; a fenced block marked ``text`` is output, never commands;
- in running text, an inline code span that starts with ``zvsr ``: a synopsis (``[--json]``, ``get|put``,
  ``FILE``), which is checked less strictly (`synopsis_problems`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from zvsr.cli_options import check_outer_options

ROOT = Path(__file__).resolve().parent.parent
_SKIPPED_DIRECTORIES = {"node_modules", "build", "dist"}
_FENCE = re.compile(r"^\s*```\s*(\w*)")
_SEPARATOR = re.compile(r"\s*(?:;|&&|\|\|)\s*")
_INLINE = re.compile(r"`(zvsr [^`]+)`")
_SUBSTITUTION = re.compile(r"\$\([^)]*\)")
_COMMENT = re.compile(r"(?:^|\s)#.*$")


@dataclass(frozen=True, slots=True)
class Shown:
    """One command line as a document shows it, and where."""

    path: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def arguments(self) -> list[str]:
        """The words after ``zvsr``, as a shell would split them (a ``$(…)`` counts as one word; comments and a
        trailing ``&`` go)."""
        words = shlex.split(_SUBSTITUTION.sub("X", self.text), comments=True)
        if words and words[-1] == "&":
            words.pop()
        assert words[0] == "zvsr", self
        return words[1:]


def documents() -> list[Path]:
    """Every Markdown file of the repository (not dependencies' or build output)."""
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in _SKIPPED_DIRECTORIES for part in path.relative_to(ROOT).parts)
    )


def code_block_commands(path: Path) -> Iterator[Shown]:
    """The command lines in `path`'s code blocks, in order."""
    lines = path.read_text().splitlines()
    for block_start, language, block in _code_blocks(lines):
        if language == "text":
            continue
        transcript = any(line.lstrip().startswith("$ ") for line in block)
        for offset, line in enumerate(block):
            text = line.strip()
            if transcript:
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            for part in _SEPARATOR.split(_COMMENT.sub("", text)):
                if part.startswith("zvsr "):
                    yield Shown(path, block_start + offset + 1, part)


def _code_blocks(lines: list[str]) -> Iterator[tuple[int, str, list[str]]]:
    """(index of the first line, fence language or "", lines) of each code block."""
    index = 0
    previous_blank = True
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence:
            end = index + 1
            while end < len(lines) and not _FENCE.match(lines[end]):
                end += 1
            yield index + 1, fence.group(1), lines[index + 1 : end]
            index, previous_blank = end + 1, False
            continue
        if previous_blank and lines[index].startswith("    ") and lines[index].strip():
            end = index
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            yield index, "", lines[index:end]
            index = end
            continue
        previous_blank = not lines[index].strip()
        index += 1


def section_code_lines(path: Path, heading: str) -> list[str]:
    """Every line, comments dropped, of the code blocks under the Markdown heading `heading` (to the next heading
    of the same or a higher level)."""
    lines = path.read_text().splitlines()
    level = heading.split(" ")[0]
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if lines[i].startswith("#") and lines[i].split(" ")[0] <= level),
        len(lines),
    )
    section = lines[start:end]
    return [
        text
        for _, language, block in _code_blocks(section)
        if language != "text"
        for text in (_COMMENT.sub("", line).strip() for line in block)
        if text
    ]


def inline_commands(path: Path) -> Iterator[Shown]:
    """The inline code spans that start with ``zvsr `` (synopses and examples in running text; a span may run
    over a line break)."""
    lines = path.read_text().splitlines()
    for start, _, block in _code_blocks(lines):  # blank out code blocks, keeping the line numbers
        lines[start : start + len(block)] = [""] * len(block)
    text = "\n".join(line if not _FENCE.match(line) else "" for line in lines)
    for match in _INLINE.finditer(text):
        yield Shown(path, text.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split()))


def parse(main: click.Group, arguments: list[str]) -> click.Context:
    """Parse `arguments` exactly as `zvsr` would, level by level, without running anything: click's usage error
    (an unknown command or option, a missing or extra argument, a bad value) if it would not accept them."""
    context = main.make_context("zvsr", list(arguments))
    while isinstance(context.command, click.Group):
        # click 8.2 renamed protected_args (still readable, with a deprecation warning).
        protected = context._protected_args if hasattr(context, "_protected_args") else context.protected_args
        rest = [*protected, *context.args]
        if not rest:
            raise click.UsageError("missing command", context)
        name, command, rest = context.command.resolve_command(context, rest)
        assert name is not None and command is not None
        if context.parent is None:
            context.invoked_subcommand = name
            check_outer_options(context)  # what the root's callback checks before running the command
        context = command.make_context(name, rest, parent=context)
    return context


def synopsis_problems(main: click.Group, arguments: list[str]) -> list[str]:
    """What is wrong with a synopsis such as ``kv [--config FILE] get|put … [--proxy EP]``: its command words
    must name a command (options and their values may come between them), and every ``--option`` in it must
    be one that command, a group above it or, when it stops at a group, a command below takes."""
    words = [word.strip("[](){},…") for word in arguments]
    command: click.Command = main
    chain: list[click.Command] = [main]
    index = 0
    while index < len(words) and isinstance(command, click.Group):
        word = words[index]
        if word.startswith("-"):  # an option of a group on the way: skip it, and its value if it takes one
            option = next((p for p in command.params if word.split("=")[0] in p.opts), None)
            takes_value = isinstance(option, click.Option) and not option.is_flag and "=" not in word
            index += 2 if takes_value else 1
            continue
        names = [name for name in word.split("|") if name]
        if not names or any(name not in command.commands for name in names):
            break
        # Alternatives (`get|put`) are walked on the first; options are checked against all of them.
        chain += [command.commands[name] for name in names]
        command = command.commands[names[0]]
        index += 1
    if len(chain) == 1:
        return [f"no command named by {' '.join(arguments)!r}"]
    # The options of each command named, and, when the synopsis stops at a group (`zvsr kv …`), its commands'.
    parameters = [p for part in chain for p in part.params] + list(_all_params(command))
    known = {flag for parameter in parameters for flag in parameter.opts}
    flags = {word.split("=")[0] for word in words if word.startswith("--")}
    return [f"unknown option {flag}" for flag in sorted(flags - known)]


def _all_params(command: click.Command) -> Iterator[click.Parameter]:
    """A command's parameters, and those of every command under it (a synopsis may name a subcommand's)."""
    yield from command.params
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _all_params(sub)
