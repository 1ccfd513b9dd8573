"""Image scorers on tiny randomly initialised models of the real classes, and the checkpoint key mappings.

The published checkpoints cannot be downloaded here, so each test writes a tiny checkpoint in the
*source* layout (OpenCLIP for HPS v2, the authors' BLIP code for ImageReward), with key names and
shapes generated independently of the mapping under test, and loads it through the real loading path.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _tiny_models import WORDS, write_bert_tokenizer, write_bpe
from _tiny_models import imagereward_state as _imagereward_state
from _tiny_models import open_clip_state as _open_clip_state
from _tiny_models import tiny_clip as _tiny_clip
from diffagent.errors import UserInputError
from diffagent.reward import CLIPScorer, HPSv2Scorer, ImageRewardScorer, PickScoreScorer
from diffagent.reward._hub import load_state_dict, resolve_file
from diffagent.reward._images import to_pixels
from diffagent.reward.clip import clip_tokenizer_from_bpe
from diffagent.reward.hps import clip_model_from_open_clip, open_clip_to_transformers
from diffagent.reward.imagereward import (
    IMAGEREWARD_MEAN,
    IMAGEREWARD_STD,
    imagereward_model_from_state_dict,
    imagereward_to_transformers,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["a photo of a cat", "a red castle on the hill at night", "dog", "the cat on a red hill"]


def _images(count: int, seed: int = 0) -> list:
    """Real-looking inputs of mixed kinds and sizes: uint8 arrays, a float array, a float tensor."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 56), (64, 64), (33, 20), (48, 90)]
    out: list = []
    for i in range(count):
        height, width = sizes[i % len(sizes)]
        array = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        if i % 3 == 1:
            out.append(torch.from_numpy(array).permute(2, 0, 1).float() / 255.0)
        elif i % 3 == 2:
            out.append(array.astype(np.float32) / 255.0)
        else:
            out.append(array)
    return out


@pytest.fixture(scope="module")
def bpe_file(tmp_path_factory: pytest.TempPathFactory):
    """A tiny file in the format of OpenAI's bpe_simple_vocab_16e6.txt.gz, merging each test word whole."""
    return write_bpe(tmp_path_factory.mktemp("bpe") / "bpe_tiny.txt.gz")


@pytest.fixture(scope="module")
def clip_tokenizer(bpe_file):
    return clip_tokenizer_from_bpe(bpe_file)


def test_bpe_tokenizer_matches_open_clip_ids(clip_tokenizer) -> None:
    vocab = clip_tokenizer.get_vocab()
    size = len(vocab)
    assert vocab["<|startoftext|>"] == size - 2 and vocab["<|endoftext|>"] == size - 1
    assert vocab["!"] == 0 and vocab["a"] == ord("a") - ord("!")  # byte-level order, as in open_clip
    ids = clip_tokenizer(["A  photo of a CAT"])["input_ids"][0]
    words = [vocab[f"{word}</w>"] for word in ("a", "photo", "of", "a", "cat")]
    assert ids == [size - 2, *words, size - 1]


# -- OpenCLIP layout (HPS v2) ---------------------------------------------------------------------------


def _open_clip_tower(state: dict, x: torch.Tensor, prefix: str, mask: torch.Tensor | None) -> torch.Tensor:
    """OpenCLIP's residual attention blocks, written from its definition with torch's own attention."""
    width = x.shape[-1]
    block = re.compile(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
    layers = 1 + max(int(m.group(1)) for key in state if (m := block.match(key)))
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        h = F.layer_norm(x, (width,), state[p + "ln_1.weight"], state[p + "ln_1.bias"])
        attn, _ = F.multi_head_attention_forward(
            h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), width, width // 64,
            state[p + "attn.in_proj_weight"], state[p + "attn.in_proj_bias"], None, None, False, 0.0,
            state[p + "attn.out_proj.weight"], state[p + "attn.out_proj.bias"], training=False,
            need_weights=False, attn_mask=mask,
        )  # fmt: skip
        x = x + attn.transpose(0, 1)
        h = F.layer_norm(x, (width,), state[p + "ln_2.weight"], state[p + "ln_2.bias"])
        x = x + F.linear(F.gelu(F.linear(h, state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"])),
                         state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])  # fmt: skip
    return x


def _open_clip_features(
    state: dict, pixels: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCLIP's encode_image / encode_text, for checking the converted model against."""
    width = state["visual.conv1.weight"].shape[0]
    x = F.conv2d(pixels, state["visual.conv1.weight"], stride=state["visual.conv1.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["visual.class_embedding"].expand(x.shape[0], 1, width), x], dim=1)
    x = F.layer_norm(x + state["visual.positional_embedding"], (width,), state["visual.ln_pre.weight"],
                     state["visual.ln_pre.bias"])  # fmt: skip
    x = _open_clip_tower(state, x, "visual.", None)
    image = F.layer_norm(x[:, 0], (width,), state["visual.ln_post.weight"], state["visual.ln_post.bias"])
    image = image @ state["visual.proj"]
    t = state["token_embedding.weight"][ids] + state["positional_embedding"][: ids.shape[1]]
    mask = state["attn_mask"][: ids.shape[1], : ids.shape[1]]
    t = _open_clip_tower(state, t, "", mask)
    t = F.layer_norm(t, (width,), state["ln_final.weight"], state["ln_final.bias"])
    text = t[torch.arange(ids.shape[0]), ids.argmax(dim=-1)] @ state["text_projection"]
    return image, text


def test_open_clip_mapping_loads_every_key_and_matches_open_clip(clip_tokenizer) -> None:
    state = _open_clip_state(vocab=len(clip_tokenizer))
    mapped = open_clip_to_transformers(state)
    model = clip_model_from_open_clip(state).eval()  # raises on any missing or unexpected key
    assert set(mapped) == set(model.state_dict())
    pixels = torch.randn(2, 3, 24, 24)
    ids = clip_tokenizer(PROMPTS[:2], padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want_image, want_text = _open_clip_features(state, pixels, ids)
        got_image = model.get_image_features(pixel_values=pixels)
        got_text = model.get_text_features(input_ids=ids)
    got_image = got_image if isinstance(got_image, torch.Tensor) else got_image.pooler_output
    got_text = got_text if isinstance(got_text, torch.Tensor) else got_text.pooler_output
    torch.testing.assert_close(got_image, want_image, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got_text, want_text, atol=1e-5, rtol=1e-4)


def test_open_clip_mapping_rejects_unknown_keys(clip_tokenizer) -> None:
    state = _open_clip_state(vocab=len(clip_tokenizer)) | {"visual.attnpool.weight": torch.zeros(1)}
    with pytest.raises(UserInputError, match="attnpool"):
        open_clip_to_transformers(state)


def _check_scorer(
    scorer, low: float = -math.inf, high: float = math.inf, distinct: bool = True
) -> list[float]:
    images = _images(len(PROMPTS))
    batched = scorer.score(PROMPTS, images)
    assert len(batched) == len(PROMPTS)
    assert all(math.isfinite(s) and low <= s <= high for s in batched)
    one_by_one = [scorer.score([p], [i])[0] for p, i in zip(PROMPTS, images, strict=True)]
    assert one_by_one == pytest.approx(batched, abs=1e-5)
    assert scorer.score(PROMPTS, images) == batched  # deterministic
    assert len(set(batched)) > 1 or not distinct
    with pytest.raises(UserInputError):
        scorer.score(PROMPTS, images[:-1])
    return batched


def test_hps_scorer_from_open_clip_checkpoint(tmp_path, bpe_file, clip_tokenizer) -> None:
    state = {f"module.{k}": v for k, v in _open_clip_state(vocab=len(clip_tokenizer)).items()}
    folder = tmp_path / "hps"
    folder.mkdir()
    torch.save({"epoch": 1, "state_dict": state}, folder / "HPS_v2_compressed.pt")  # as the authors save it
    scorer = HPSv2Scorer.from_pretrained(folder, tokenizer=bpe_file, device="cpu", batch_size=3)
    assert scorer.name == "hpsv2" and scorer.image_size == 24
    _check_scorer(scorer, -1.0, 1.0)
    with pytest.raises(UserInputError, match="HPS version"):
        HPSv2Scorer.from_pretrained(folder, version="v3")


def test_clip_scorer_from_local_folder(tmp_path, clip_tokenizer) -> None:
    _tiny_clip(clip_tokenizer).save_pretrained(tmp_path / "clip")
    clip_tokenizer.save_pretrained(tmp_path / "clip")
    scorer = CLIPScorer.from_pretrained(tmp_path / "clip", device="cpu", batch_size=3)
    assert scorer.name == "clip"
    scores = _check_scorer(scorer, 0.0, 100.0, distinct=False)  # random weights: cosines near 0
    cosine = scorer.cosine(PROMPTS, _images(len(PROMPTS)))
    assert scores == pytest.approx((100 * cosine.clamp(min=0)).tolist())


def test_pickscore_scales_by_logit_scale(clip_tokenizer) -> None:
    scorer = PickScoreScorer(_tiny_clip(clip_tokenizer), clip_tokenizer, device="cpu")
    images = _images(2)
    cosine = scorer.cosine(PROMPTS[:2], images)
    assert scorer.score(PROMPTS[:2], images) == pytest.approx(
        (cosine * scorer.model.logit_scale.exp()).tolist()
    )


# -- BLIP layout (ImageReward) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory: pytest.TempPathFactory):
    return write_bert_tokenizer(tmp_path_factory.mktemp("bert"))


def test_imagereward_mapping_loads_every_key() -> None:
    state = _imagereward_state(vocab=20)
    mapped = imagereward_to_transformers(state)
    model = imagereward_model_from_state_dict(state)  # raises on any missing or unexpected key
    assert set(mapped) == set(model.state_dict())
    assert not any("vision_proj" in k or "position_ids" in k for k in mapped)
    torch.testing.assert_close(
        model.vision_model.encoder.layers[1].self_attn.qkv.weight,
        state["blip.visual_encoder.blocks.1.attn.qkv.weight"],
    )
    assert model.vision_model.config.layer_norm_eps == 1e-6 and model.vision_model.config.image_size == 24
    with pytest.raises(UserInputError, match="itm_head"):
        imagereward_to_transformers(state | {"blip.itm_head.weight": torch.zeros(2, 128)})


def test_imagereward_scorer_from_checkpoint(tmp_path, bert_folder) -> None:
    vocab = len(WORDS) + 5
    torch.save(_imagereward_state(vocab=vocab), tmp_path / "ImageReward.pt")
    scorer = ImageRewardScorer.from_pretrained(
        tmp_path / "ImageReward.pt", tokenizer=bert_folder, device="cpu", batch_size=3
    )
    assert scorer.name == "imagereward"
    scores = _check_scorer(scorer)
    # The published standardisation is applied to the raw head output.
    tokens = scorer.tokenizer(
        PROMPTS, padding="max_length", max_length=35, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        raw = scorer.model(
            to_pixels(_images(len(PROMPTS)), 24), tokens["input_ids"], tokens["attention_mask"]
        )
    assert scores == pytest.approx(((raw.double() - IMAGEREWARD_MEAN) / IMAGEREWARD_STD).tolist(), abs=1e-6)


# -- inputs and files -----------------------------------------------------------------------------------


def test_to_pixels_resizes_shorter_side_and_crops_centre() -> None:
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, 10:30] = 255  # a white centre band exactly as wide as the crop will be
    pixels = to_pixels([image], 10, mean=(0, 0, 0), std=(1, 1, 1))
    assert pixels.shape == (1, 3, 10, 10)
    assert pixels[0, :, :, 2:8].min() > 0.95  # the centre of the crop is the white band
    flat = to_pixels([np.full((7, 9, 3), 128, dtype=np.uint8)], 16, mean=(0, 0, 0), std=(1, 1, 1))
    torch.testing.assert_close(flat, torch.full((1, 3, 16, 16), 128 / 255))

    class PillowLike:  # what scorers receive from Pillow users, without importing Pillow here
        size = (9, 7)

        def convert(self, mode: str) -> np.ndarray:
            assert mode == "RGB"
            return np.full((7, 9, 3), 128, dtype=np.uint8)

    torch.testing.assert_close(to_pixels([PillowLike()], 16, mean=(0, 0, 0), std=(1, 1, 1)), flat)
    with pytest.raises(UserInputError):
        to_pixels(["not an image"], 16)


def test_checkpoint_files(tmp_path) -> None:
    from safetensors.torch import save_file

    tensors = {"a.weight": torch.ones(2)}
    torch.save({"state_dict": {"module.a.weight": torch.ones(2)}, "epoch": 3}, tmp_path / "x.pt")
    save_file(tensors, str(tmp_path / "x.safetensors"))
    for name in ("x.pt", "x.safetensors"):
        assert load_state_dict(tmp_path / name).keys() == {"a.weight"}
    assert resolve_file(tmp_path, "x.pt", "owner/repo") == tmp_path / "x.pt"
    assert resolve_file(tmp_path / "x.pt", "ignored.pt", "owner/repo") == tmp_path / "x.pt"
    with pytest.raises(UserInputError, match=r"no y\.pt"):
        resolve_file(tmp_path, "y.pt", "owner/repo")
    with pytest.raises(UserInputError, match="no such checkpoint"):
        resolve_file(tmp_path / "missing" / "file.pt", "file.pt", "owner/repo")
