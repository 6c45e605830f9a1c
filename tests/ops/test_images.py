"""The Dockerfiles, linted without a container engine: pinned bases (the default of the BASE build
argument), a non-root numeric user, `plait` as the entrypoint, and COPY sources that exist, matching
what the chart runs. tests/node builds and runs them."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.ops.support import CHART, REPO

IMAGES = REPO / "images"
BASES = {"operator": IMAGES / "operator" / "Dockerfile", "worker": IMAGES / "worker" / "Dockerfile"}
EXAMPLE = IMAGES / "worker" / "example.Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [arg for kw, arg in self.instructions if kw == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(path: Path) -> list[Stage]:
    """Dockerfile instructions per build stage (continuation lines joined, comments dropped)."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    stages: list[Stage] = []
    build_args: dict[str, str] = {}  # ARGs before the first FROM, at their defaults
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, argument = line.strip().partition(" ")
        keyword, argument = keyword.upper(), " ".join(argument.split())
        if keyword == "ARG" and not stages:
            name, _, default = argument.partition("=")
            build_args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], argument).split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, argument))
    return stages


def exec_form(argument: str) -> list[str]:
    value = json.loads(argument)
    assert isinstance(value, list), f"not the exec form: {argument}"
    return [str(v) for v in value]


def pinned(image: str) -> bool:
    """A digest, or a tag naming an exact release (x.y.z), never latest or a moving major."""
    if "@sha256:" in image:
        return True
    _, _, tag = image.rpartition(":")
    return bool(re.match(r"^\d+\.\d+\.\d+", tag)) and "latest" not in tag


@pytest.mark.parametrize("component", sorted(BASES))
def test_base_images_are_pinned_non_root_and_run_plait(component: str) -> None:
    stages = parse(BASES[component])
    known_stages = {s.name for s in stages if s.name}
    for stage in stages:
        assert stage.base in known_stages or pinned(stage.base), f"{component}: unpinned base {stage.base}"
    final = stages[-1]
    user = final.last("USER")
    assert user is not None and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user), f"{component}: USER {user}"
    # the same uid the chart's securityContext runs as
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    section = values["operator"] if component == "operator" else values["workers"]
    assert int(user.split(":")[0]) == section["podSecurityContext"]["runAsUser"]
    assert exec_form(final.last("ENTRYPOINT") or "null") == ["plait"]
    assert exec_form(final.last("CMD") or "null")[0] == component
    assert final.last("EXPOSE") == str(section["metricsPort"])
    env = " ".join(final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # the chart mounts the root filesystem read-only
    installs = " ".join(final.all("RUN"))
    assert "pip install" in installs and re.search(r"\bplait\b", installs)


@pytest.mark.parametrize("path", [*BASES.values(), EXAMPLE], ids=lambda p: p.name if p == EXAMPLE else p.parent.name)
def test_copy_sources_exist_in_the_build_context(path: Path) -> None:
    """Every image builds from the repository root: what it copies must be there (and not ignored)."""
    ignore = path.with_name(path.name + ".dockerignore")
    assert ignore.exists(), f"{path.name} has no {ignore.name}"
    included = [line[1:].rstrip("/") for line in ignore.read_text().splitlines() if line.startswith("!")]
    for stage in parse(path):
        for argument in stage.all("COPY"):
            words = [w for w in shlex.split(argument) if not w.startswith("--")]
            if any(w.startswith("--from") for w in shlex.split(argument)):
                continue
            for source in words[:-1]:
                source = source.rstrip("/")
                assert (REPO / source).exists(), f"{path.name}: COPY {source} does not exist"
                assert any(source == inc or source.startswith(inc + "/") for inc in included), (
                    f"{path.name}: COPY {source} is excluded by {ignore.name}"
                )


def test_a_user_image_builds_from_the_worker_base_the_chart_defaults_to() -> None:
    stages = parse(EXAMPLE)
    (stage,) = stages
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert stage.base == f"{values['workers']['image']['repository']}:{chart['appVersion']}"
    user = stage.last("USER")
    assert user is not None and not user.startswith("0"), "the image must end as a non-root user"
    assert exec_form(stage.last("CMD") or "null")[:2] == ["worker", "examples"]
    assert (REPO / "examples").is_dir()
