"""Limits a model card states in words, and the default agent keeping to them."""

from __future__ import annotations

import pytest

from diffagent.agents.default.params import fit_settings
from diffagent.catalog import VersionRef, size_ok
from diffagent.catalog.cards import CardLimits, card_limits


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Please use at least <b>768x768</b> before complaining.</p>", CardLimits(min_side=768)),
        ("Never go below 768 px, it breaks.", CardLimits(min_side=768)),
        (
            "Recommended: CFG scale: 5 ~ 7, Steps: 20-30",
            CardLimits(cfg_range=(5.0, 7.0), steps_range=(20, 30)),
        ),
        ("Works best with DDIM + CFG 8-12 + Sampling Steps 25-30", CardLimits(None, (8.0, 12.0), (25, 30))),
        ("CFG: 4 to 11", CardLimits(cfg_range=(4.0, 11.0))),
        # numbers that are no limits of the first pass
        ("Hires steps: 10-15, denoising 0.4", CardLimits()),
        ("I take mine much higher to at least 150 on most outputs", CardLimits()),
        ("trained on more than 200 images", CardLimits()),
        ("Steps: 20, Sampler: Euler a, CFG scale: 7, Size: 512x704", CardLimits()),
        ("cfg 30-10", CardLimits()),
        (None, CardLimits()),
    ],
)
def test_card_limits_read_only_the_written_forms(html: str | None, expected: CardLimits) -> None:
    assert card_limits(html) == expected


def _ref(base: str = "SD 1.5") -> VersionRef:
    return VersionRef(1, 10, "Some Mix", "v1", "Checkpoint", base, ())


def test_settings_keep_to_the_card_inside_the_family() -> None:
    params = {"sampler": "Euler a", "steps": 50, "cfg_scale": 11.0, "width": 512, "height": 768}
    card = CardLimits(min_side=768, cfg_range=(5.0, 7.0), steps_range=(20, 30))
    out = fit_settings(_ref(), params, card=card)
    assert (out["steps"], out["cfg_scale"]) == (30, 7.0)
    assert min(out["width"], out["height"]) == 768 and out["height"] > out["width"]  # still portrait
    assert size_ok("SD 1.5", out["width"], out["height"])
    # a card range outside the family's bounds gives way to the family (CFG 15-20 on SD 1.5: 12 at most)
    assert fit_settings(_ref(), params, card=CardLimits(cfg_range=(15.0, 20.0)))["cfg_scale"] == 11.0
    # a minimum side the family cannot run in one pass is left to hires fix: the size stays
    big = fit_settings(_ref(), params, card=CardLimits(min_side=1024))
    assert (big["width"], big["height"]) == (512, 768)
    assert fit_settings(_ref(), params) == fit_settings(_ref(), params, card=CardLimits())


def test_a_banner_shape_needs_a_prompt_that_asks_for_it() -> None:
    params = {"sampler": "Euler a", "steps": 25, "cfg_scale": 7.0, "width": 704, "height": 320}
    plain = fit_settings(_ref(), params)
    assert plain["width"] > plain["height"] and plain["width"] <= 2 * plain["height"]
    wide = fit_settings(_ref(), params, orientation="landscape")
    assert (wide["width"], wide["height"]) == (704, 320)
