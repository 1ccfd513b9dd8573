"""Tiny Stable Diffusion 1.x and SDXL pipelines with random weights, saved the way Civitai ships
checkpoints: one ``.safetensors`` file in the original (LDM) layout, which ``from_single_file`` reads.

The key mapping below is the inverse of the LDM -> diffusers conversion that diffusers applies on load,
written for any number of blocks so that a two-block model stands in for the real four-block one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("conv_shortcut", "skip_connection"))  # fmt: skip


def _resnet(rest: str) -> str:
    for ours, theirs in _RESNET:
        if rest.startswith(ours + "."):
            return theirs + rest[len(ours) :]
    raise KeyError(rest)


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    per = config["layers_per_block"] + 1
    attn_up = ["CrossAttn" in kind for kind in config["up_block_types"]]
    fixed = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
             "time_embedding.linear_2.": "time_embed.2.", "conv_norm_out.": "out.0.",
             "conv_out.": "out.2.", "add_embedding.linear_1.": "label_emb.0.0.",
             "add_embedding.linear_2.": "label_emb.0.2."}  # fmt: skip
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        new = next(
            (theirs + key[len(ours) :] for ours, theirs in fixed.items() if key.startswith(ours)), None
        )
        if new is None and parts[0] == "down_blocks":
            i = int(parts[1])
            if parts[2] == "downsamplers":
                new = f"input_blocks.{(i + 1) * per}.0.op.{'.'.join(parts[5:])}"
            else:
                j = int(parts[3])
                rest = ".".join(parts[4:])
                inner = f"0.{_resnet(rest)}" if parts[2] == "resnets" else f"1.{rest}"
                new = f"input_blocks.{1 + i * per + j}.{inner}"
        elif new is None and parts[0] == "up_blocks":
            i = int(parts[1])
            if parts[2] == "upsamplers":
                new = f"output_blocks.{i * per + per - 1}.{2 if attn_up[i] else 1}.conv.{'.'.join(parts[5:])}"
            else:
                j = int(parts[3])
                rest = ".".join(parts[4:])
                inner = f"0.{_resnet(rest)}" if parts[2] == "resnets" else f"1.{rest}"
                new = f"output_blocks.{i * per + j}.{inner}"
        elif new is None and parts[0] == "mid_block":
            rest = ".".join(parts[3:])
            new = (
                f"middle_block.1.{rest}"
                if parts[1] == "attentions"
                else f"middle_block.{2 * int(parts[2])}.{_resnet(rest)}"
            )
        if new is None:
            raise KeyError(key)
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    blocks = len(config["block_out_channels"])
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        side, new = parts[0], None
        if side in ("quant_conv", "post_quant_conv") or parts[1] in ("conv_in", "conv_out"):
            new = key
        elif parts[1] == "conv_norm_out":
            new = f"{side}.norm_out.{parts[2]}"
        elif parts[1] in ("down_blocks", "up_blocks"):
            i = int(parts[2]) if side == "encoder" else blocks - 1 - int(parts[2])
            level = "down" if side == "encoder" else "up"
            if parts[3] == "resnets":
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.{level}.{i}.block.{parts[4]}.{rest}"
            else:
                new = (
                    f"{side}.{level}.{i}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{parts[-1]}"
                )
        elif parts[1] == "mid_block" and parts[2] == "resnets":
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            new = f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
        elif parts[1] == "mid_block":
            inner = ".".join(parts[4:-1])
            new = f"{side}.mid.attn_1.{attention[inner]}.{parts[-1]}"
            if value.ndim == 2:
                value = value.reshape(*value.shape, 1, 1)
        if new is None:
            raise KeyError(key)
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIP text encoder in the original layout: nested under ``text_model.``."""
    return {prefix + (k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in state.items()}


def open_clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers ``CLIPTextModelWithProjection`` in OpenCLIP's layout (SDXL's second encoder):
    ``resblocks``, fused ``in_proj`` attention, ``text_projection`` transposed."""
    import torch

    out: dict[str, Any] = {}
    fused: dict[str, dict[str, Any]] = {}
    names = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
             "text_model.embeddings.position_embedding.weight": "positional_embedding",
             "text_model.final_layer_norm.weight": "ln_final.weight",
             "text_model.final_layer_norm.bias": "ln_final.bias"}  # fmt: skip
    for key, value in state.items():
        if key in names:
            out[prefix + names[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            layer, rest = key[len("text_model.encoder.layers.") :].split(".", 1)
            base = f"{prefix}transformer.resblocks.{layer}."
            if rest.startswith("self_attn.") and rest[10] in "qkv" and rest[11:17] == "_proj.":
                fused.setdefault(base + "attn.in_proj_" + rest.rsplit(".", 1)[1], {})[rest[10]] = value
                continue
            for ours, theirs in (("self_attn.", "attn."), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                                 ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):  # fmt: skip
                rest = rest.replace(ours, theirs)
            out[base + rest] = value
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def tiny_vocab(folder: Path) -> None:
    """A byte-level CLIP vocabulary without merges: ``CLIPTokenizer`` loads it like the real one."""
    from diffagent.execute.generate.diffusers_configs import _bytes_to_unicode

    letters = list(_bytes_to_unicode().values())
    tokens = [*letters, *(c + "</w>" for c in letters), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def _configs(family: str, unet: Any, vae: Any, text_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The family's component configs with the tiny UNet's, VAE's and text encoder's in place."""
    from diffagent.execute.generate.diffusers_configs import CONFIGS

    configs = {k: dict(v) for k, v in CONFIGS[family].items()}
    configs["unet"] = {
        "_class_name": "UNet2DConditionModel",
        **{k: v for k, v in unet.config.items() if not k.startswith("_")},
    }
    configs["vae"] = {
        "_class_name": "AutoencoderKL",
        **{k: v for k, v in vae.config.items() if not k.startswith("_")},
    }
    configs["text_encoder"] = {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        **text_config,
    }
    return configs


def tiny_sd1(path: Path) -> dict[str, dict[str, Any]]:
    """Write a random tiny SD 1.x checkpoint to ``path``; returns its configs in the shape of
    :data:`diffagent.execute.generate.diffusers_configs.CONFIGS`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
        norm_num_groups=32,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32, sample_size=32,
    )  # fmt: skip
    text_config = {
        "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
        "max_position_embeddings": 77, "vocab_size": 514, "hidden_act": "quick_gelu", "projection_dim": 32,
        "layer_norm_eps": 1e-05, "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513,
    }  # fmt: skip
    text = CLIPTextModel(CLIPTextConfig(**text_config))
    state = {
        **unet_to_ldm(unet.state_dict(), dict(unet.config)),
        **vae_to_ldm(vae.state_dict(), dict(vae.config)),
        **clip_to_ldm(text.state_dict(), "cond_stage_model.transformer."),
    }
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return _configs("SD1", unet, vae, text_config)


def tiny_sdxl(path: Path) -> dict[str, dict[str, Any]]:
    """Write a random tiny SDXL checkpoint (two text encoders, text-time embedding) to ``path``; returns
    its configs in the shape of ``CONFIGS["SDXL"]``."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=80, attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=80, norm_num_groups=32,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32, sample_size=32,
    )  # fmt: skip
    text_config = {
        "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
        "max_position_embeddings": 77, "vocab_size": 514, "hidden_act": "gelu", "projection_dim": 32,
        "layer_norm_eps": 1e-05, "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513,
    }  # fmt: skip
    # the second encoder is wider, as in SDXL (768 and 1280): diffusers tells the two apart by width
    text_2_config = {**text_config, "hidden_size": 48}
    text = CLIPTextModel(CLIPTextConfig(**text_config))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_2_config))
    state = {
        **unet_to_ldm(unet.state_dict(), dict(unet.config)),
        **vae_to_ldm(vae.state_dict(), dict(vae.config)),
        **clip_to_ldm(text.state_dict(), "conditioner.embedders.0.transformer."),
        **open_clip_to_ldm(text_2.state_dict(), "conditioner.embedders.1.model."),
    }
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    configs = _configs("SDXL", unet, vae, text_config)
    configs["text_encoder_2"] = {
        "architectures": ["CLIPTextModelWithProjection"],
        "model_type": "clip_text_model",
        **text_2_config,
    }
    return configs
