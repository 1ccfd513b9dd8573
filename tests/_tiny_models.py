"""Tiny randomly initialised models of the real classes and tokenizers, for the reward and rendering tests.

The published weights cannot be downloaded here: each builder writes its model in the *source* layout
(OpenCLIP for HPS v2, the authors' BLIP code for ImageReward, transformers for CLIP, diffusers for SD).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import torch

WORDS = ["a", "cat", "dog", "on", "the", "hill", "red", "photo", "of", "castle", "at", "night"]


def write_bpe(path: Path) -> Path:
    """A tiny file in the format of OpenAI's bpe_simple_vocab_16e6.txt.gz, merging each test word whole."""
    merges: list[str] = []
    for word in WORDS:
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = f"{symbols[0]} {symbols[1]}"
            if pair not in merges:
                merges.append(pair)
            symbols = [symbols[0] + symbols[1], *symbols[2:]]
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return path


def write_bert_tokenizer(folder: Path) -> Path:
    """A BERT WordPiece tokenizer over the test words, saved in ``folder``."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    BertTokenizer(vocab={token: i for i, token in enumerate(specials + WORDS)}).save_pretrained(folder)
    return folder


def open_clip_state(vocab: int, width: int = 128, layers: int = 2, grid: int = 3) -> dict[str, torch.Tensor]:
    """An OpenCLIP ViT state dict (names and shapes as open_clip saves them) with random values."""
    patch, embed, context = 8, 48, 77
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.05

    def norm(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + rand(width), f"{prefix}.bias": rand(width)}

    def blocks(prefix: str) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i in range(layers):
            p = f"{prefix}transformer.resblocks.{i}."
            out |= norm(p + "ln_1") | norm(p + "ln_2")
            out |= {
                p + "attn.in_proj_weight": rand(3 * width, width),
                p + "attn.in_proj_bias": rand(3 * width),
            }
            out |= {p + "attn.out_proj.weight": rand(width, width), p + "attn.out_proj.bias": rand(width)}
            out |= {p + "mlp.c_fc.weight": rand(4 * width, width), p + "mlp.c_fc.bias": rand(4 * width)}
            out |= {p + "mlp.c_proj.weight": rand(width, 4 * width), p + "mlp.c_proj.bias": rand(width)}
        return out

    state = {
        "visual.class_embedding": rand(width),
        "visual.positional_embedding": rand(grid * grid + 1, width),
        "visual.conv1.weight": rand(width, 3, patch, patch),
        "visual.proj": rand(width, embed),
        "token_embedding.weight": rand(vocab, width),
        "positional_embedding": rand(context, width),
        "text_projection": rand(width, embed),
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
        "attn_mask": torch.full((context, context), float("-inf")).triu(1),
    }
    state |= norm("visual.ln_pre") | norm("visual.ln_post") | norm("ln_final")
    return state | blocks("visual.") | blocks("")


def tiny_clip(tokenizer):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    vocab = len(tokenizer)
    config = CLIPConfig(
        text_config={"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1,
                     "pad_token_id": vocab - 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    return CLIPModel(config)


def imagereward_state(
    vocab: int, vision: int = 128, text: int = 128, layers: int = 2
) -> dict[str, torch.Tensor]:
    """An ImageReward.pt state dict (names and shapes as the authors' BLIP code saves them), random values."""
    patch, grid, positions = 8, 3, 40
    gen = torch.Generator().manual_seed(1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.05

    def linear(name: str, out_dim: int, in_dim: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": rand(out_dim, in_dim), f"{name}.bias": rand(out_dim)}

    def norm(name: str, dim: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": 1 + rand(dim), f"{name}.bias": rand(dim)}

    v = "blip.visual_encoder."
    state = {
        v + "cls_token": rand(1, 1, vision),
        v + "pos_embed": rand(1, grid * grid + 1, vision),
        v + "patch_embed.proj.weight": rand(vision, 3, patch, patch),
        v + "patch_embed.proj.bias": rand(vision),
    } | norm(v + "norm", vision)
    for i in range(layers):
        b = f"{v}blocks.{i}."
        state |= (
            norm(b + "norm1", vision) | norm(b + "norm2", vision) | linear(b + "attn.qkv", 3 * vision, vision)
        )
        state |= linear(b + "attn.proj", vision, vision) | linear(b + "mlp.fc1", 4 * vision, vision)
        state |= linear(b + "mlp.fc2", vision, 4 * vision)
    t = "blip.text_encoder."
    state |= {
        t + "embeddings.position_ids": torch.arange(positions).expand(1, -1),
        t + "embeddings.word_embeddings.weight": rand(vocab, text),
        t + "embeddings.position_embeddings.weight": rand(positions, text),
    } | norm(t + "embeddings.LayerNorm", text)
    for i in range(layers):
        b = f"{t}encoder.layer.{i}."
        for kind, source in (("attention", text), ("crossattention", vision)):
            state |= linear(f"{b}{kind}.self.query", text, text) | linear(f"{b}{kind}.self.key", text, source)
            state |= linear(f"{b}{kind}.self.value", text, source) | linear(
                f"{b}{kind}.output.dense", text, text
            )
            state |= norm(f"{b}{kind}.output.LayerNorm", text)
        state |= linear(b + "intermediate.dense", 4 * text, text) | linear(b + "output.dense", text, 4 * text)
        state |= norm(b + "output.LayerNorm", text)
    state |= linear("blip.vision_proj", 256, vision) | linear("blip.text_proj", 256, text)
    head = ((1024, text), (128, 1024), (64, 128), (16, 64), (1, 16))
    for index, (out_dim, in_dim) in zip((0, 2, 4, 6, 7), head, strict=True):
        state |= linear(f"mlp.layers.{index}", out_dim, in_dim)
    return state


def tiny_sd_pipeline(tokenizer, seed: int):  # type: ignore[no-untyped-def]
    """A StableDiffusionPipeline of tiny random UNet, VAE and CLIP text encoder (its scale factor is 1)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, norm_num_groups=8,
        attention_head_dim=4,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(8,), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=8, sample_size=16,
    )  # fmt: skip
    vocab = len(tokenizer)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab - 2,
            eos_token_id=vocab - 1, pad_token_id=vocab - 1,
        )
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer,
        scheduler=DDIMScheduler(clip_sample=False, steps_offset=1), safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_scorers(root: Path) -> dict[str, Path]:
    """Folders of tiny clip, imagereward, hpsv2 and pickscore weights, each with its tokenizer beside it,
    in the layouts ``diffagent reward score --clip/--imagereward/--hpsv2/--pickscore`` take."""
    from diffagent.reward.clip import clip_tokenizer_from_bpe

    folders = {name: root / name for name in ("clip", "imagereward", "hpsv2", "pickscore")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    bpe = write_bpe(folders["hpsv2"] / "bpe_tiny.txt.gz")
    tokenizer = clip_tokenizer_from_bpe(bpe)
    for name in ("clip", "pickscore"):
        model = tiny_clip(tokenizer)
        if name == "clip":  # a shared direction in both towers: cosines above 0, so CLIP score varies
            with torch.no_grad():
                model.text_projection.weight.copy_(model.visual_projection.weight)
                model.vision_model.post_layernorm.bias.fill_(0.5)
                model.text_model.final_layer_norm.bias.fill_(0.5)
        model.save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
    torch.save(
        {"state_dict": open_clip_state(vocab=len(tokenizer))}, folders["hpsv2"] / "HPS_v2_compressed.pt"
    )
    torch.save(imagereward_state(vocab=len(WORDS) + 5), folders["imagereward"] / "ImageReward.pt")
    write_bert_tokenizer(folders["imagereward"])
    return folders


def tiny_llama(tokenizer, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """A randomly initialised (seed 0) Llama of SmolLM2's class with ``tokenizer``'s vocabulary, saved with
    the tokenizer as a plain model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
