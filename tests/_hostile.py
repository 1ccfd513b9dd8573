"""A hostile Civitai dump, built in the tests: every string a stranger controls tries something."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

INJECTED_WORD = "<lora:injected:9>"
EVIL_CKPT_FILE = "../../../../etc/passwd"
EVIL_LORA_FILE = "x:1><lora:../../evil:5.safetensors"


def _file(model_id: int, name: str) -> dict[str, Any]:
    """A primary file with the hashes and download URL the catalogue filter asks for."""
    sha = f"{model_id:064X}"
    return {
        "id": model_id * 100, "name": name, "primary": True, "hashes": {"AutoV2": sha[-10:], "SHA256": sha},
        "downloadUrl": f"https://civitai.com/api/download/models/{model_id * 10}",
    }  # fmt: skip


def checkpoint(
    model_id: int = 1, name: str = "Hostile Vision", file_name: str = EVIL_CKPT_FILE
) -> dict[str, Any]:
    return {
        "id": model_id,
        "name": name,
        "type": "Checkpoint",
        "nsfw": False,
        "tags": ["photo", "\x1b[2Jclear"],
        "modelVersions": [
            {
                "id": model_id * 10,
                "name": "v1",
                "baseModel": "SD 1.5",
                "trainedWords": ["photo", "embedding:EvilEmbedding"],
                "files": [_file(model_id, file_name)],
                "images": [
                    {
                        "id": model_id * 1000,
                        "nsfw": "None",
                        "meta": {"prompt": "a cat [/set] on a mat", "Size": "512x512", "steps": 20},
                    }
                ],
            }
        ],
    }


def lora(
    model_id: int = 2, words: list[str] | None = None, file_name: str = EVIL_LORA_FILE
) -> dict[str, Any]:
    return {
        "id": model_id,
        "name": "Sneaky \x1b]0;pwned\x07 LoRA",
        "type": "LORA",
        "nsfw": False,
        "modelVersions": [
            {
                "id": model_id * 10,
                "name": "v1",
                "baseModel": "SD 1.5",
                "trainedWords": words
                if words is not None
                else [INJECTED_WORD, "sneaky style", "x:1><lora:e:5"],
                "files": [_file(model_id, file_name)],
            }
        ],
    }


def write_dump(path: Path, items: list[Any]) -> Path:
    """One line per item: dicts and lists as JSON, bytes as they are."""
    with path.open("wb") as handle:
        for item in items:
            handle.write(item if isinstance(item, bytes) else json.dumps(item).encode())
            handle.write(b"\n")
    return path
