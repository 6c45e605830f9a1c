"""Finding the workflows a worker serves: ``MODULE``, ``MODULE:ATTR``, a ``.py`` file or a directory.

``MODULE`` serves every :class:`~plait.Workflow` built at the module's top level; ``MODULE:ATTR``
serves the workflow or list of workflows named ``ATTR``; a file or a directory of files is
imported by path. The current directory is importable, as with ``python -m``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from plait._authoring.flow import Workflow
from plait.errors import PlaitError


class LoadError(PlaitError):
    """The worker's MODULE argument does not lead to any workflow."""


def _import_path(path: Path) -> ModuleType:
    name = f"plait_user_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _workflows_in(module: ModuleType) -> list[Workflow]:
    return [value for value in vars(module).values() if isinstance(value, Workflow)]


def load_workflows(target: str) -> list[Workflow]:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    path = Path(target)
    workflows: list[Workflow]
    if target.endswith(".py") and path.is_file():
        workflows = _workflows_in(_import_path(path))
    elif path.is_dir() and not (path / "__init__.py").exists():
        workflows = [wf for file in sorted(path.glob("*.py")) for wf in _workflows_in(_import_path(file))]
    else:
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise LoadError(f"cannot import {module_name!r}: {error}") from error
        if attr:
            if not hasattr(module, attr):
                raise LoadError(f"module {module_name!r} has no attribute {attr!r}")
            value = getattr(module, attr)
            workflows = [value] if isinstance(value, Workflow) else list(value)
            bad = [w for w in workflows if not isinstance(w, Workflow)]
            if bad:
                raise LoadError(f"{target} must be a Workflow or a list of them; found {bad[0]!r}")
        else:
            workflows = _workflows_in(module)
            if path.is_dir() or hasattr(module, "__path__"):
                for info in sorted(Path(p) for p in getattr(module, "__path__", [])):
                    for file in sorted(info.glob("*.py")):
                        if file.name != "__init__.py":
                            sub = importlib.import_module(f"{module_name}.{file.stem}")
                            workflows += _workflows_in(sub)
    unique: dict[str, Workflow] = {}
    for workflow in workflows:
        unique.setdefault(workflow.definition_hash, workflow)
    if not unique:
        raise LoadError(f"{target} defines no workflow: build one at module level with Flow(...).build()")
    names = [w.workflow_id for w in unique.values()]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise LoadError(f"{target} defines two different workflows named {', '.join(sorted(duplicates))}")
    return list(unique.values())
