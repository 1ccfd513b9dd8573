"""Speed of the LLM agent's SFT and RRHF steps on a GPU (or this CPU), with a SmolLM2-135M-sized model.

Self-contained for a machine without the catalogue, the weights or diffagent's other dependencies: it
builds a ``LlamaConfig`` of SmolLM2-135M's shape with random weights (speed does not depend on the
values) and loads the project's own loss code from ``src/diffagent/train/losses.py`` by path, so the timed
code is the trainer's. Each step works like ``diffagent.train.loop``: ``--batch`` examples, gradients
accumulated one example at a time, clipping, AdamW. Prints one JSON object.

    python scripts/gpu_train_speed.py                  # cuda when available, else cpu
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


def _time_steps(model, trainable, examples, loss_fn, batch, steps, warmup, device):  # type: ignore[no-untyped-def]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    times = []
    for step in range(warmup + steps):
        _sync(device)
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for i in range(batch):
            loss = loss_fn(model, examples[(step * batch + i) % len(examples)]) / batch
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
    parser.add_argument("--prompt-tokens", type=int, default=380, help="typical prompt with 5 candidates")
    parser.add_argument("--answer-tokens", type=int, default=48, help="typical compact JSON answer")
    parser.add_argument("--responses", type=int, default=6, help="RRHF responses per instruction")
    args = parser.parse_args()

    losses = _losses()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    generator = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(100, 49000, (n,), generator=generator).tolist()

    sft_examples = [(ids(args.prompt_tokens), ids(args.answer_tokens)) for _ in range(16)]
    rrhf_examples = [
        (ids(args.prompt_tokens), [ids(args.answer_tokens - 8 + 4 * r) for r in range(args.responses)],
         [float(r % 3) for r in range(args.responses)])
        for _ in range(16)
    ]  # fmt: skip

    def sft(model, example):  # type: ignore[no-untyped-def]
        prompt, answer = example
        return losses.sft_loss(losses.response_logprobs(model, prompt, [answer])[0])

    def rrhf(model, example):  # type: ignore[no-untyped-def]
        prompt, responses, scores = example
        return losses.rrhf_loss(losses.response_logprobs(model, prompt, responses), scores)

    result: dict = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "batch": args.batch,
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
        for stage, examples, loss_fn in (("sft", sft_examples, sft), ("rrhf", rrhf_examples, rrhf)):
            timing = _time_steps(
                model, trainable, examples, loss_fn, args.batch, args.steps, args.warmup, device
            )
            timing["examples_per_s"] = round(args.batch / timing["step_s_median"], 2)
            result["cases"][f"{stage}-{method}"] = timing
        if device.type == "cuda":
            result["cases"][f"peak_memory_gib-{method}"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
        del model, trainable
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
