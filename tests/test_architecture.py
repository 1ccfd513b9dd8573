"""The data flow of DESIGN.md, held in the imports: no package imports one above it; public names pinned.

Every ``import`` counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "diffagent"

LAYERS: dict[str, float] = {
    # the base layer, in its own order: errors, configuration, shared types, I/O and process helpers, the
    # protocols
    "errors": 0.0, "config": 0.1, "extras": 0.1, "textsafety": 0.1, "filenames": 0.1, "schema": 0.2,
    "_io": 0.3, "_fork": 0.3, "_npz": 0.4, "protocols": 0.5,
    "catalog": 1,
    "bench": 2,
    "llm": 3, "reward": 3,
    "train": 4,
    "agents": 5,
    "library": 6,
    "execute": 7,
    "client": 8,
    "service": 8.5,
    "cli": 9,
}  # fmt: skip
"""A package may import its own layer's package and those of lower layers, never a higher one."""


def _part(module: Path) -> str:
    relative = module.relative_to(SRC).with_suffix("")
    return relative.parts[0]


def _imports(module: Path) -> set[str]:
    """The top-level ``diffagent`` parts a module imports (absolute or relative)."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    package = module.relative_to(SRC).with_suffix("").parts[:-1]  # the package the module is in
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("diffagent.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("diffagent."):
                    found.add(node.module.split(".")[1])
                elif node.module == "diffagent":
                    found |= {a.name for a in node.names}
                continue
            base = list(package[: len(package) - (node.level - 1)]) if node.level > 1 else list(package)
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(target[0])
            else:  # "from .. import x" at the top of the package
                found |= {a.name for a in node.names}
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_package_has_a_layer() -> None:
    parts = {_part(p) for p in MODULES}
    assert parts <= set(LAYERS), f"give these a layer: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_against_the_flow(module: Path) -> None:
    mine = LAYERS[_part(module)]
    upward = sorted(
        target
        for target in _imports(module)
        if target in LAYERS and target != _part(module) and LAYERS[target] >= mine
    )
    assert not upward, f"{module.relative_to(SRC)} (layer {mine}) imports {upward} from its layer or above"


PUBLIC = {
    "diffagent": {
        "APICall", "Alternative", "Answer", "Checkpoint", "DiffAgent", "Evidence", "LoRA", "api_json_schema",
    },
    "diffagent.protocols": {"Agent", "Progress", "Reward"},
    "diffagent.agents": {"AGENT_NAMES", "LLM_DECODINGS", "Agent", "load_agent"},
    "diffagent.agents.default": {
        "DefaultIndex", "RetrievalAgent", "build_default_agent", "cache_dir", "train_default",
    },
    "diffagent.bench": {
        "SPLITS", "BenchReport", "Pair", "PairFiles", "PairSource", "build_bench", "ensure_bench",
        "load_pairs", "save_pairs",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_names_are_pinned_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == PUBLIC[name]
    for attribute in module.__all__:
        assert getattr(module, attribute) is not None


def test_every_package_declares_its_public_names() -> None:
    for init in SRC.rglob("__init__.py"):
        name = ".".join(("diffagent", *init.parent.relative_to(SRC).parts))
        module = importlib.import_module(name)
        if init.read_text(encoding="utf-8").count("import ") > 0:
            assert hasattr(module, "__all__"), f"{name} imports names but declares no __all__"
