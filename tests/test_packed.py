"""Packing several instructions into one forward pass (``--micro-batch``): the same log-probabilities, losses
and updated weights as one instruction at a time, on a tiny random Llama with uneven prompt and response
lengths."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from diffagent.errors import UserInputError
from diffagent.train.adapters import make_trainable
from diffagent.train.config import TrainConfig
from diffagent.train.loop import train_loop
from diffagent.train.losses import (
    packed_response_logprobs,
    response_logprobs,
    rrhf_batch_loss,
    sft_batch_loss,
)

VOCAB = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_llama() -> LlamaForCausalLM:
    """The same random fp32 Llama every call; tied embeddings like SmolLM2's."""
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def _ids(generator: torch.Generator, n: int) -> list[int]:
    return torch.randint(1, VOCAB, (n,), generator=generator).tolist()


def _examples() -> tuple[list, list]:
    """SFT (prompt, answer) and RRHF (prompt, responses, scores) examples of uneven lengths, ties included."""
    generator = torch.Generator().manual_seed(1)
    sft = [(_ids(generator, 2 + 3 * i), _ids(generator, 1 + (5 * i) % 9)) for i in range(7)]
    rrhf = [
        (
            _ids(generator, 20 - 2 * i),
            [_ids(generator, 1 + (3 * i + 2 * r) % 7) for r in range(1 + i % 4)],
            [float((i + r) % 3) for r in range(1 + i % 4)],
        )
        for i in range(7)
    ]
    return sft, rrhf


def test_packed_logprobs_equal_one_instruction_at_a_time() -> None:
    model = _tiny_llama().eval()
    _, rrhf = _examples()
    items = [(prompt, responses) for prompt, responses, _ in rrhf]
    with torch.no_grad():
        packed = packed_response_logprobs(model, items)
        assert [len(scored) for scored in packed] == [len(responses) for _, responses in items]
        for (prompt, responses), scored in zip(items, packed, strict=True):
            for got, expected in zip(scored, response_logprobs(model, prompt, responses), strict=True):
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        packed_response_logprobs(model, [([1, 2], [[3]]), ([4], [[]])])


def test_packed_logprobs_through_lora_adapters() -> None:
    model = make_trainable(_tiny_llama(), TrainConfig(method="lora", lora_dropout=0.0))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # adapters start as a no-op; make them count
                parameter.normal_(std=0.1)
    model.eval()
    items = [([5, 6, 7, 8, 9], [[10, 11], [12]]), ([13, 14], [[15, 16, 17, 18]])]
    with torch.no_grad():
        packed = packed_response_logprobs(model, items)
        for (prompt, responses), scored in zip(items, packed, strict=True):
            for got, expected in zip(scored, response_logprobs(model, prompt, responses), strict=True):
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _train(stage: str, method: str, micro_batch: int, out: Path, steps: int = 2, resume: bool = False):  # type: ignore[no-untyped-def]
    """Steps of the trainer's loop, 5 of the 7 examples each; the step losses and the trained weights.

    Every trainable weight must have moved (TRL's check): a loss that falls while some tensor stays put
    means a part of the model is cut off from the gradient."""
    config = TrainConfig(
        method=method, max_steps=steps, batch_size=5, micro_batch=micro_batch, learning_rate=1e-2,
        warmup_ratio=0.0, lora_dropout=0.0,
    )  # fmt: skip
    model = make_trainable(_tiny_llama(), config)
    sft, rrhf = _examples()
    if stage == "sft":
        examples, loss = sft, sft_batch_loss
    else:
        examples, loss = rrhf, functools.partial(rrhf_batch_loss, ft_weight=0.5)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    result = train_loop(model, examples, loss, config, out, resume=resume)
    after = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    assert before and (method == "full" or all("lora_" in name for name in before))
    if not resume:  # a resumed run starts from the checkpoint's weights, not from these
        assert [name for name in before if torch.equal(before[name], after[name])] == []
    return result.losses, list(after.values())


def _assert_same_weights(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    """Equal up to 1% of the learning rate: gradients agree to ~1e-7, but AdamW divides each by its own
    running scale, so float rounding of a gradient near zero can move a weight by a small share of lr."""
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["full", "lora"])
@pytest.mark.parametrize("stage", ["sft", "rrhf"])
def test_micro_batches_give_the_same_steps(stage: str, method: str, tmp_path: Path) -> None:
    # chunks of 4 and 1 examples: a packed forward and a single-instruction one in the same step
    losses, weights = _train(stage, method, 1, tmp_path / "one")
    packed_losses, packed_weights = _train(stage, method, 4, tmp_path / "packed")
    assert packed_losses == pytest.approx(losses, rel=1e-5)
    _assert_same_weights(packed_weights, weights)


def test_a_packed_run_resumes_one_instruction_at_a_time(tmp_path: Path) -> None:
    straight, weights = _train("sft", "full", 1, tmp_path / "straight")
    _train("sft", "full", 3, tmp_path / "resumed", steps=1)
    resumed, resumed_weights = _train("sft", "full", 1, tmp_path / "resumed", resume=True)
    assert resumed == pytest.approx(straight, rel=1e-5)
    _assert_same_weights(resumed_weights, weights)


def test_micro_batch_below_one_is_a_one_line_error() -> None:
    from typer.testing import CliRunner

    from diffagent.cli import app

    with pytest.raises(UserInputError, match="--micro-batch"):
        TrainConfig(micro_batch=0)
    runner = CliRunner()
    for command in ("sft", "rrhf"):
        done = runner.invoke(app, ["train", command, "--micro-batch", "0"])
        # the command line's error boundary turns a UserInputError into one line and exit 2
        assert done.exit_code == 2 and done.output.startswith("error: ") and "--micro-batch" in done.output
        assert done.output.count("\n") == 1
        assert "--micro-batch" in runner.invoke(app, ["train", command, "--help"]).output
