"""Where scorer weights come from: a local file, a local folder, or a Hugging Face Hub repository.

Downloads go through ``huggingface_hub.hf_hub_download`` (cached under the usual HF cache), so a machine
with internet fetches each checkpoint once; an offline machine passes a local path instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import UserInputError

__all__ = ["load_state_dict", "resolve_file"]


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def resolve_file(source: str | Path | None, filename: str, default_repo: str) -> Path:
    """The checkpoint file named by ``source``: itself if it is a file, ``source/filename`` if a folder,
    else ``filename`` downloaded from the Hub repository ``source`` (``default_repo`` when None)."""
    if source is not None:
        path = Path(source).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            if not (path / filename).is_file():
                raise UserInputError(f"{path} has no {filename}")
            return path / filename
        if not _looks_like_repo_id(str(source)):
            raise UserInputError(f"no such checkpoint file or folder: {source}")
    repo = str(source) if source is not None else default_repo
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except (OSError, ValueError) as exc:
        raise UserInputError(
            f"cannot get {filename} from the Hub repository {repo} ({type(exc).__name__}: offline, or no "
            "such file); pass a local path to the checkpoint instead"
        ) from None


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pt``/``.bin`` (plain, or wrapped in ``{"state_dict": ...}``) or ``.safetensors`` file.

    Loaded with ``weights_only=True``: a checkpoint cannot run code. A DDP ``module.`` prefix is removed.
    """
    path = Path(path)
    state: Any
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserInputError(f"{path} does not hold a state dict")
    return {
        (key[len("module.") :] if key.startswith("module.") else key): value
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }
