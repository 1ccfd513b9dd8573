"""Speed of the LLM agent's SFT and RRHF steps on a GPU (or this CPU), with a SmolLM2-135M-sized model.

Self-contained for a machine without the catalogue, the weights or diffagent's other dependencies: it
builds a ``LlamaConfig`` of SmolLM2-135M's shape with random weights (speed does not depend on the
values) and loads the project's own loss code from ``src/diffagent/train/losses.py`` by path, so the timed
code is the trainer's. Each step works like ``diffagent.train.loop``: ``--batch`` examples, gradients
accumulated over chunks of ``--micro-batch`` examples (one padded forward pass per chunk), clipping, AdamW.
Prompt and answer lengths vary by up to a fifth around the given means, so packing pays for its padding.
Prints one JSON object.

    python scripts/gpu_train_speed.py                  # cuda when available, else cpu
    python scripts/gpu_train_speed.py --micro-batch 8  # all 8 instructions of a step in one forward pass
    python scripts/gpu_train_speed.py --steps 3 --device cpu
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

LOSSES = Path(__file__).resolve().parents[1] / "src" / "diffagent" / "train" / "losses.py"

# SmolLM2-135M-Instruct's shape (its GGUF's config); 134.5M parameters.
SMOLLM2_135M = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, head_dim=64, max_position_embeddings=8192, rope_theta=100000.0,
    rms_norm_eps=1e-5, tie_word_embeddings=True,
)  # fmt: skip


def _losses():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("diffagent_losses", LOSSES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_steps(model, trainable, examples, loss_fn, args, device):  # type: ignore[no-untyped-def]
    batch, micro_batch, warmup = args.batch, args.micro_batch, args.warmup
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    times = []
    for step in range(warmup + args.steps):
        _sync(device)
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step_examples = [examples[(step * batch + i) % len(examples)] for i in range(batch)]
        for begin in range(0, batch, micro_batch):
            chunk = step_examples[begin : begin + micro_batch]
            loss = loss_fn(model, chunk) * len(chunk) / batch
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - began)
    times.sort()
    return {"step_s_median": round(times[len(times) // 2], 4), "step_s_min": round(times[0], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weights' dtype")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="instructions per step (the trainer's default)")
    parser.add_argument("--micro-batch", type=int, default=1, help="instructions packed per forward pass")
    parser.add_argument("--prompt-tokens", type=int, default=380, help="typical prompt with 5 candidates")
    parser.add_argument("--answer-tokens", type=int, default=48, help="typical compact JSON answer")
    parser.add_argument("--responses", type=int, default=6, help="RRHF responses per instruction")
    args = parser.parse_args()
    if args.micro_batch < 1:
        parser.error("--micro-batch must be at least 1")

    losses = _losses()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    generator = torch.Generator().manual_seed(0)

    def ids(mean: int) -> list[int]:
        """Random tokens, the count uniform within a fifth of ``mean``."""
        spread = mean // 5
        n = mean + int(torch.randint(-spread, spread + 1, (1,), generator=generator))
        return torch.randint(100, 49000, (max(1, n),), generator=generator).tolist()

    sft_examples = [(ids(args.prompt_tokens), ids(args.answer_tokens)) for _ in range(16)]
    rrhf_examples = [
        (ids(args.prompt_tokens), [ids(args.answer_tokens - 8 + 4 * r) for r in range(args.responses)],
         [float(r % 3) for r in range(args.responses)])
        for _ in range(16)
    ]  # fmt: skip

    result: dict = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "batch": args.batch,
        "micro_batch": args.micro_batch,
        "prompt_tokens": args.prompt_tokens,
        "answer_tokens": args.answer_tokens,
        "rrhf_responses": args.responses,
        "cases": {},
    }
    for method in ("lora", "full"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(device=device, dtype=dtype)
        if method == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
            )
            model = get_peft_model(model, lora)
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        result[f"trainable_parameters_m-{method}"] = round(sum(p.numel() for p in trainable) / 1e6, 2)
        stages = (
            ("sft", sft_examples, losses.sft_batch_loss),
            ("rrhf", rrhf_examples, losses.rrhf_batch_loss),
        )
        for stage, examples, loss_fn in stages:
            timing = _time_steps(model, trainable, examples, loss_fn, args, device)
            timing["examples_per_s"] = round(args.batch / timing["step_s_median"], 2)
            result["cases"][f"{stage}-{method}"] = timing
        if device.type == "cuda":
            result["cases"][f"peak_memory_gib-{method}"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
        del model, trainable
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
