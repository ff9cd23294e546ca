"""The local dev stack (deploy/local/devstack) is not part of the product, and still a command.

The bordermon wheel and the Docker image's build context carry none of it; `bordermon` finds
its `stack` command through the `bordermon.commands` entry points when it is installed, and
without it says in one line what to do. The `--help` examples of `stack` and `topics` parse.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from setuptools import find_packages

import bordermon.cli
from bordermon.cli import PLUGIN_GROUP, build_parser, main

REPO = Path(__file__).resolve().parents[2]
DEVSTACK = REPO / "deploy" / "local" / "devstack"
DEV_STACK_MODULES = {"stack.py", "secure_stack.py", "stack_base.py"}
DEV_STACK_MARKERS = ("bordermon_devstack", "apt-get", "dependency:copy-dependencies")
"""Text that only the dev stack has: its package, its apt installs, its Maven resolve."""
STACK_ENTRY_POINT = EntryPoint(name="stack", value="bordermon_devstack.cli", group=PLUGIN_GROUP)


def _pyproject(path: Path) -> dict[str, object]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def product_wheel_files() -> list[Path]:
    """What the bordermon wheel holds, by the rules setuptools builds it with (pyproject.toml):
    the *.py modules of every package found under `where`, and the package data.

    (Building the wheel itself needs setuptools >= 77 in the venv, which a build-isolated
    install does not leave there.)"""
    setuptools = _pyproject(REPO / "pyproject.toml")["tool"]["setuptools"]  # type: ignore[index]
    found = setuptools["packages"]["find"]
    package_data: dict[str, list[str]] = setuptools.get("package-data", {})
    files: list[Path] = []
    for where in found["where"]:
        root = REPO / where
        packages = find_packages(
            where=str(root),
            include=found.get("include", ("*",)),
            exclude=found.get("exclude", ()),
        )
        for package in packages:
            folder = root.joinpath(*package.split("."))
            files += sorted(folder.glob("*.py"))
            for pattern in package_data.get(package, []):
                files += sorted(folder.glob(pattern))
    return files


def docker_context_files() -> list[Path]:
    """The files of this checkout that reach the image's build context: git's tracked files
    filtered by deploy/docker/Dockerfile.dockerignore as BuildKit does (a pattern matches a path
    or any folder above it; `**` spans folders, `*` does not; the last matching pattern wins;
    `!` lets back in)."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in (REPO / "deploy/docker/Dockerfile.dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        rules.append((keep, _dockerignore_regex(pattern.removeprefix("!").strip("/"))))
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], check=True, capture_output=True, text=True
    ).stdout.split("\0")
    context = []
    for name in filter(None, tracked):
        parts = name.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        included = True
        for keep, regex in rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                included = keep
        if included:
            context.append(REPO / name)
    return context


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    tokens = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(token, re.escape(token)) for token in tokens))


def _dev_stack_traces(files: list[Path]) -> list[str]:
    """The files (relative to the repo) that are the dev stack, or code that uses it (the
    README and pyproject.toml may mention it)."""
    found = []
    for path in files:
        relative = str(path.relative_to(REPO))
        code = path.read_text("utf-8", errors="replace") if path.suffix == ".py" else ""
        if (
            path.name in DEV_STACK_MODULES
            or relative.startswith("deploy/local/")
            or any(marker in code for marker in DEV_STACK_MARKERS)
        ):
            found.append(relative)
    return found


# --- the product does not carry it --------------------------------------------------------------


def test_the_product_wheel_has_no_dev_stack() -> None:
    files = product_wheel_files()
    names = {str(path.relative_to(REPO)) for path in files}
    assert (
        "services/bordermon/cli/__init__.py" in names
        and "services/bordermon/admin/users.py" in names
    )
    assert "services/bordermon/admin/credentials.py" in names, "the secure Docker stack's secrets"
    assert _dev_stack_traces(files) == []


def test_the_product_never_imports_the_dev_stack() -> None:
    for path in (REPO / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                assert not module.startswith("bordermon_devstack"), f"{path}: imports {module}"


def test_the_docker_build_context_has_no_dev_stack() -> None:
    context = docker_context_files()
    names = {str(path.relative_to(REPO)) for path in context}
    assert "services/bordermon/cli/__init__.py" in names and "topics/topics.toml" in names
    assert not any(name.startswith(("deploy/", ".venv/", "run/")) for name in names)
    assert _dev_stack_traces(context) == []


def test_the_dockerignore_reading_follows_buildkit() -> None:
    assert _dockerignore_regex("*").fullmatch("deploy")
    assert not _dockerignore_regex("*").fullmatch("deploy/local")
    assert _dockerignore_regex("**/__pycache__").fullmatch("__pycache__")
    assert _dockerignore_regex("**/__pycache__").fullmatch("services/bordermon/__pycache__")
    assert _dockerignore_regex("services/*.egg-info").fullmatch("services/bordermon.egg-info")
    assert not _dockerignore_regex("services/*.egg-info").fullmatch("services/a/b.egg-info")


# --- how `bordermon` finds the command ----------------------------------------------------------


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """The entry points `bordermon` sees in the group (empty: a product-only install)."""
    entries: list[EntryPoint] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [entry for entry in entries if entry.group == group]

    monkeypatch.setattr(bordermon.cli, "entry_points", entry_points)
    yield entries


@pytest.mark.parametrize(
    "argv", [["stack", "up"], ["stack", "--secure", "up"], ["stack", "--help"], ["stack"]]
)
def test_without_the_dev_stack_stack_is_one_line_and_exit_2(
    installed: list[EntryPoint], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("bordermon stack: a development tool, not part of the bordermon")
    assert "source deploy/local/bootstrap.sh" in line and "deploy/local/devstack" in line


def test_without_the_dev_stack_help_still_lists_every_command(
    installed: list[EntryPoint],
) -> None:
    listing = build_parser().format_help()
    for name in (*bordermon.cli.COMMANDS, "stack"):
        assert re.search(rf"^\s+{re.escape(name)}\b", listing, re.MULTILINE), name
    assert "development tool: not installed" in " ".join(listing.split())


def test_the_installed_dev_stack_is_the_stack_command(installed: list[EntryPoint]) -> None:
    from bordermon_devstack import cli as stack_command

    installed.append(STACK_ENTRY_POINT)
    args = build_parser().parse_args(["stack", "status", "kafka", "--secure"])
    assert args.handler is stack_command.run
    assert (args.action, args.services, args.secure) == ("status", ["kafka"], True)
    assert "not installed" not in " ".join(build_parser().format_help().split())


def test_a_dev_stack_that_does_not_load_is_one_line_and_leaves_the_rest_working(
    installed: list[EntryPoint], capsys: pytest.CaptureFixture[str]
) -> None:
    installed.append(EntryPoint(name="stack", value="bordermon_devstack.moved", group=PLUGIN_GROUP))
    assert main(["stack", "up"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "bordermon_devstack.moved cannot be loaded" in line and "bootstrap.sh" in line
    assert build_parser().parse_args(["replay", "x.jsonl"]).file == "x.jsonl"


def test_a_plugin_cannot_replace_a_product_command(installed: list[EntryPoint]) -> None:
    installed.append(EntryPoint(name="replay", value="bordermon_devstack.cli", group=PLUGIN_GROUP))
    args = build_parser().parse_args(["replay"])
    assert args.handler is bordermon.cli.COMMANDS["replay"].run


def test_the_dev_stack_declares_the_entry_point_bordermon_reads() -> None:
    project = _pyproject(DEVSTACK / "pyproject.toml")["project"]
    assert project["entry-points"][PLUGIN_GROUP] == {"stack": STACK_ENTRY_POINT.value}  # type: ignore[index]
    command = STACK_ENTRY_POINT.load()
    assert callable(command.configure_parser) and callable(command.run) and command.HELP


# --- --help examples ---------------------------------------------------------------------------


def _example_commands(help_text: str) -> list[list[str]]:
    """The command lines under "examples:" (up to a blank line), comments dropped, `a && b`
    split in two."""
    examples = help_text.split("\nexamples:\n", 1)[1].split("\n\n", 1)[0]
    commands: list[list[str]] = []
    for line in examples.splitlines():
        command: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word != "&&":
                command.append(word)
            elif command:
                commands.append(command)
                command = []
    return commands


@pytest.mark.parametrize("command", ["stack", "topics", "worker"])
def test_help_examples_are_real_command_lines(installed: list[EntryPoint], command: str) -> None:
    installed.append(STACK_ENTRY_POINT)
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    examples = _example_commands(subparsers.choices[command].format_help())
    assert 3 <= len(examples) <= 6, examples
    for words in examples:
        assert words[:2] == ["bordermon", command], words
        parser.parse_args(words[1:])  # exits (fails the test) on an option that does not exist
