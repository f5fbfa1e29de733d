"""The deployment manifests start real subcommands with documented settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from viz.cli import build_parser

ROOT = Path(__file__).parents[1]


def _commands() -> list[list[str]]:
    found = []
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        if "command" in service and "image" not in service or service.get("build"):
            found.append([str(a) for a in service.get("command", [])])
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "viz.yaml").read_text()):
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            found.append([str(a) for a in container["args"]])
    return [c for c in found if c]


def test_every_manifest_command_is_a_valid_viz_invocation() -> None:
    commands = _commands()
    assert {tuple(c[:2]) for c in commands if c[0] == "serve"} >= {
        ("serve", s) for s in ("config", "collect", "consumer", "analytics", "cmp")}
    for command in commands:
        build_parser().parse_args(command)  # exits (SystemExit) on an unknown subcommand


def test_every_variable_in_the_manifests_is_documented() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    text = (ROOT / "deploy" / "docker-compose.yml").read_text() + (
        ROOT / "deploy" / "k8s" / "viz.yaml").read_text()
    missing = sorted({v for v in re.findall(r"\b(VIZ_[A-Z0-9_]+)\b", text)
                      if f"`{v}`" not in documented})
    assert missing == []
