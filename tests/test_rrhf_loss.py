"""The RRHF loss against hand-computed values, and its independence from how responses are batched."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from diffagent.train.losses import response_logprobs, rrhf_loss, sft_loss


def _lp(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)


def test_rrhf_loss_by_hand() -> None:
    # mean log-likelihoods p = (-1.0, -0.5, -2.0); rewards s = (0.2, 0.9, 0.5)
    logprobs = [_lp(-1.5, -0.5), _lp(-0.5), _lp(-1.0, -3.0, -2.0)]
    scores = [0.2, 0.9, 0.5]
    # ordered pairs (worse, better): (0, 1): max(0, -1.0 + 0.5) = 0; (0, 2): max(0, -1.0 + 2.0) = 1.0;
    # (2, 1): max(0, -2.0 + 0.5) = 0. Best response: 1, its mean NLL 0.5.
    loss = rrhf_loss(logprobs, scores, ft_weight=1.0)
    assert loss.item() == pytest.approx(1.0 + 0.5)
    assert rrhf_loss(logprobs, scores, ft_weight=0.0).item() == pytest.approx(1.0)
    loss.backward()
    # d/dp0 of the hinge (p0 - p2) is +1 spread over response 0's two tokens; response 2 gets -1/3 per
    # token from the hinge; response 1 gets -1 (NLL) spread over its single token.
    torch.testing.assert_close(logprobs[0].grad, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(logprobs[1].grad, torch.tensor([-1.0]))
    torch.testing.assert_close(logprobs[2].grad, torch.full((3,), -1 / 3))


def test_rrhf_loss_ties_and_a_well_ordered_model() -> None:
    # equal rewards: no ranking loss between them, only the first best response's NLL
    assert rrhf_loss([_lp(-0.1), _lp(-3.0)], [1.0, 1.0]).item() == pytest.approx(0.1)
    # likelihoods already ordered like the rewards: no ranking loss
    ordered = [_lp(-0.2), _lp(-1.0), _lp(-4.0)]
    assert rrhf_loss(ordered, [3.0, 2.0, 1.0]).item() == pytest.approx(0.2)
    # fully reversed: every ordered pair pays its margin
    reversed_ = [_lp(-4.0), _lp(-1.0), _lp(-0.2)]
    expected = (-1.0 + 4.0) + (-0.2 + 4.0) + (-0.2 + 1.0) + 4.0
    assert rrhf_loss(reversed_, [3.0, 2.0, 1.0]).item() == pytest.approx(expected)
    assert sft_loss(_lp(-1.0, -2.0)).item() == pytest.approx(1.5)
    with pytest.raises(ValueError):
        rrhf_loss([_lp(-1.0)], [1.0, 2.0])


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _naive_logprobs(model: LlamaForCausalLM, prompt: list[int], response: list[int]) -> torch.Tensor:
    """Log-probabilities from one full forward of prompt + response, logits shifted by one against labels."""
    logits = model(torch.tensor([prompt + response])).logits[0, :-1]
    labels = torch.tensor(prompt + response)[1:]
    return torch.log_softmax(logits, -1).gather(-1, labels[:, None])[:, 0][len(prompt) - 1 :]


def test_rrhf_loss_of_a_model_matches_hand_computation_at_any_batch_size(model: LlamaForCausalLM) -> None:
    prompt = [3, 14, 15, 9, 2]
    responses = [[26, 5, 35, 8], [9, 7], [11, 12, 13, 14, 15, 16]]
    scores = [0.1, 0.7, 0.4]
    with torch.no_grad():
        naive = [_naive_logprobs(model, prompt, r) for r in responses]
        p = [float(lp.mean()) for lp in naive]
        by_hand = max(0.0, p[0] - p[1]) + max(0.0, p[0] - p[2]) + max(0.0, p[2] - p[1]) - p[1]
        batched = rrhf_loss(response_logprobs(model, prompt, responses), scores)
        assert float(batched) == pytest.approx(by_hand, abs=1e-5)
        # the same per-response values whether responses share a padded batch or come one at a time
        single = [response_logprobs(model, prompt, [r])[0] for r in responses]
        for a, b in zip(single, naive, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert rrhf_loss(single, scores).item() == pytest.approx(by_hand, abs=1e-5)
    assert math.isfinite(by_hand)


def test_gradients_do_not_depend_on_response_batching(model: LlamaForCausalLM) -> None:
    prompt, responses, scores = [1, 2, 3], [[4, 5, 6, 7, 8], [9], [10, 11]], [0.0, 1.0, 0.5]

    def grads(together: bool) -> list[torch.Tensor]:
        model.zero_grad()
        if together:
            logprobs = response_logprobs(model, prompt, responses)
        else:
            logprobs = [response_logprobs(model, prompt, [r])[0] for r in responses]
        rrhf_loss(logprobs, scores).backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
