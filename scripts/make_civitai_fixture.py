"""Write the fixture of today's Civitai API that the end-to-end tests serve: ``tests/fixtures/civitai-2026/``.

    .venv/bin/python scripts/make_civitai_fixture.py

Written by hand from the documented shapes of ``GET /api/v1/models`` and ``GET /api/v1/images`` (Civitai's
developer reference and public source, 2026): models and versions with integer ``nsfwLevel`` bit flags,
``thumbsUpCount`` stats, ``baseModelType``, files with the six hash kinds (AutoV1, AutoV2, AutoV3, SHA256,
CRC32, BLAKE3); version images that carry no meta (as today's model pages mostly send them), served with
meta by ``/images`` with string ``nsfwLevel`` and integer ``browsingLevel``. Generation meta comes in the
three shapes seen today: AUTOMATIC1111 infotext (``Model hash``, ``hashes`` with AutoV3 LoRA hashes,
``Clip skip``), Civitai's generator (``civitaiResources`` with ``modelVersionId``, no negative prompt for
Flux) and ComfyUI (``comfy`` workflow string, ``additionalResources`` AIR URNs, no ``Size``); one legacy
look-up nests it as ``{"id", "meta"}``. Also: an archived version (no files, no images), an explicit
model, PG-13 images that a PG crawl must not receive, an SDXL image made with an SD 1.5 LoRA.

Every value is made up and deterministic (hashes are digests of names), so the output is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "civitai-2026"
CREATED = "2026-03-{:02d}T10:00:00.000Z"


def _hex(text: str, kind: str) -> str:
    return hashlib.sha256(f"{kind}:{text}".encode()).hexdigest().upper()


def hashes(file_name: str) -> dict[str, str]:
    """The six hash kinds of a made-up file: AutoV2 is the SHA256 prefix, AutoV3 is not (it hashes the
    tensors without the safetensors header), the others are their own digests."""
    sha = _hex(file_name, "sha256")
    return {
        "AutoV1": _hex(file_name, "autov1")[:8],
        "AutoV2": sha[:10],
        "SHA256": sha,
        "CRC32": f"{zlib.crc32(file_name.encode()):08X}",
        "BLAKE3": _hex(file_name, "blake3"),
        "AutoV3": _hex(file_name, "autov3")[:12],
    }


# family -> (base model string, checkpoints, LoRAs, prompt subjects, generation settings, meta style)
FAMILIES = {
    "sd15": {
        "base": "SD 1.5",
        "checkpoints": ["Realistic Vision V6", "DreamShaper 8", "Anything V5"],
        "loras": [("Detail Tweaker", "add_detail"), ("Ghibli Style", "ghibli style"),
                  ("Pixel Art", "pixelart")],
        "subjects": ["portrait of an old fisherman", "a cozy cabin in the woods", "a knight in shining armor",
                     "a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen"],
        "style": "photo, 35mm, film grain",
        "settings": {"sampler": "DPM++ 2M Karras", "steps": 25, "cfgScale": 7, "Size": "512x768",
                     "Clip skip": 2},
        "negative": "lowres, bad anatomy, blurry",
        "meta": "a1111",
        "model_page_meta": True,
    },
    "sdxl": {
        "base": "SDXL 1.0",
        "checkpoints": ["Juggernaut XL", "RealVisXL V5", "DreamShaper XL Lightning"],
        "loras": [("Film Photography XL", "film photo"), ("Cinematic Light XL", "cinematic lighting"),
                  ("Watercolor XL", "watercolor painting")],
        "subjects": ["a mountain lake at sunrise", "a vintage car on a desert road",
                     "an astronaut in a garden", "a busy tokyo street at night",
                     "a golden retriever on a beach", "a gothic cathedral"],
        "style": "ultra detailed photograph, sharp focus",
        "settings": {"sampler": "DPM++ 2M Karras", "steps": 30, "cfgScale": 6, "Size": "896x1152"},
        "negative": "cartoon, painting, lowres",
        "meta": "a1111",
        "model_page_meta": False,
    },
    "pony": {
        "base": "Pony",
        "checkpoints": ["Pony Diffusion V6 XL", "AutismMix SDXL", "Pony Realism"],
        "loras": [("Expressive H", "expressiveh"), ("Pony Lineart", "lineart style"),
                  ("Cyberpunk Pony", "cyberpunk outfit")],
        "subjects": ["1girl, fox ears, forest, smiling", "1boy, samurai, cherry blossoms",
                     "1girl, witch hat, night sky", "2girls, cafe, sitting", "1girl, knight armor, castle",
                     "1boy, pirate, ship deck"],
        "style": "score_9, score_8_up, score_7_up, source_anime",
        "settings": {"sampler": "Euler a", "steps": 25, "cfgScale": 7, "Size": "832x1216", "Clip skip": 2},
        "negative": "score_4, score_5, lowres",
        "meta": "a1111",
        "model_page_meta": False,
    },
    "illustrious": {
        "base": "Illustrious",
        "checkpoints": ["WAI Illustrious SDXL", "Nova Anime XL", "Illustrious XL 2.0"],
        "loras": [("Illustrious Flat Color", "flat color"), ("Chibi Illu", "chibi"),
                  ("Ink Wash Illu", "ink wash")],
        "subjects": ["1girl, silver hair, school uniform, classroom", "1girl, maid, tea party",
                     "1boy, mage, glowing runes", "1girl, idol, stage lights", "1girl, kimono, festival",
                     "1boy, detective, rainy street"],
        "style": "masterpiece, best quality, amazing quality",
        "settings": {"sampler": "euler_ancestral", "steps": 28, "cfgScale": 5.5},
        "size": (1024, 1536),
        "negative": "bad quality, worst quality, sketch",
        "meta": "comfy",
        "model_page_meta": False,
    },
    "flux": {
        "base": "Flux.1 D",
        "checkpoints": ["FLUX.1 dev fp8", "Flux Unchained", "Jib Mix Flux"],
        "loras": [("Flux Realism LoRA", "realism"), ("Midjourney Style Flux", "mjstyle"),
                  ("Flux Anime Art", "anime art style")],
        "subjects": ["a neon sign that says OPEN in a rainy alley",
                     "a glass teapot with a tiny galaxy inside", "an old library with floating books",
                     "a robot barista pouring latte art",
                     "a paper boat on a puddle", "a cat astronaut floating in space"],
        "style": "highly detailed, natural light",
        "settings": {"sampler": "Euler", "steps": 28, "cfgScale": 3.5, "Size": "832x1216"},
        "negative": None,
        "meta": "civitai",
        "model_page_meta": False,
    },
}  # fmt: skip

IMAGES_PER_CHECKPOINT = 10
IMAGES_PER_LORA = 4


class Ids:
    """Distinct ids per kind, so that a model, version, file and image never share one by accident."""

    def __init__(self) -> None:
        self.next = {"model": 1000, "version": 50000, "file": 90000, "image": 700000, "post": 30000}

    def __call__(self, kind: str) -> int:
        self.next[kind] += 1
        return self.next[kind]


def _file(ids: Ids, stem: str, kind: str, version_id: int, fp: str = "fp16") -> dict:
    name = f"{stem}.safetensors"
    size = 6_775_430.0 if kind == "Checkpoint" else 223_104.0
    return {
        "id": ids("file"), "sizeKB": size, "name": name, "type": "Model",
        "pickleScanResult": "Success", "pickleScanMessage": "No Pickle imports", "virusScanResult": "Success",
        "virusScanMessage": None, "scannedAt": CREATED.format(2),
        "metadata": {"format": "SafeTensor", "size": "pruned", "fp": fp},
        "hashes": hashes(name), "primary": True,
        "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
    }  # fmt: skip


def _version(ids: Ids, base: str, name: str, stem: str, kind: str, words: list[str], day: int) -> dict:
    version_id = ids("version")
    fp = "fp8" if base.startswith("Flux") and kind == "Checkpoint" else "fp16"
    return {
        "id": version_id, "index": 0, "name": name, "baseModel": base, "baseModelType": "Standard",
        "createdAt": CREATED.format(day), "publishedAt": CREATED.format(day), "status": "Published",
        "availability": "Public", "nsfwLevel": 1, "description": None, "trainedWords": words,
        "covered": True, "stats": {"downloadCount": 1000 * day, "ratingCount": 0, "rating": 0,
                                   "thumbsUpCount": 40 * day},
        "files": [_file(ids, stem, kind, version_id, fp)], "images": [],
        "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
    }  # fmt: skip


def _model(ids: Ids, name: str, kind: str, versions: list[dict], tags: list[str], creator: str) -> dict:
    downloads = sum(v["stats"]["downloadCount"] for v in versions)
    return {
        "id": ids("model"), "name": name, "description": f"<p>{name}: a {kind.lower()} for {tags[0]}.</p>",
        "allowNoCredit": True, "allowCommercialUse": ["Image"], "allowDerivatives": True,
        "allowDifferentLicense": True, "type": kind, "minor": False, "sfwOnly": False, "poi": False,
        "nsfw": False, "nsfwLevel": 1, "availability": "Public", "cosmetic": None, "supportsGeneration": True,
        "mode": None,
        "stats": {"downloadCount": downloads, "favoriteCount": 0, "thumbsUpCount": downloads // 25,
                  "thumbsDownCount": 0, "commentCount": 3, "ratingCount": 0, "rating": 0,
                  "tippedAmountCount": 0},
        "creator": {"username": creator, "image": None}, "tags": tags, "modelVersions": versions,
    }  # fmt: skip


def _stem(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", " ").replace(".", " ").split())


def _meta(fam: dict, prompt: str, seed: int, ckpt: dict, lora: tuple[dict, str, float] | None) -> dict:
    """Generation meta in the family's style (see the module docstring)."""
    ckpt_version = ckpt["modelVersions"][0]
    ckpt_file = ckpt_version["files"][0]
    settings = dict(fam["settings"])
    if fam["meta"] == "a1111":
        meta = {"prompt": prompt, "negativePrompt": fam["negative"], "seed": seed, **settings,
                "Model": ckpt_file["name"].removesuffix(".safetensors"),
                "Model hash": ckpt_file["hashes"]["AutoV2"],
                "hashes": {"model": ckpt_file["hashes"]["AutoV2"]},
                "resources": [{"name": ckpt_file["name"].removesuffix(".safetensors"), "type": "model",
                               "hash": ckpt_file["hashes"]["AutoV2"]}]}  # fmt: skip
        if lora is not None:
            model, stem, weight = lora
            autov3 = model["modelVersions"][0]["files"][0]["hashes"]["AutoV3"]
            meta["prompt"] = f"{prompt} <lora:{stem}:{weight}>"
            meta["hashes"][f"lora:{stem}"] = autov3  # A1111 writes LoRA hashes as AutoV3
            meta["Lora hashes"] = f"{stem}: {autov3}"
        return meta
    if fam["meta"] == "comfy":
        meta = {"prompt": prompt, "negativePrompt": fam["negative"], "seed": seed, **settings,
                "clipSkip": 2, "comfy": json.dumps({"prompt": {"3": {"class_type": "KSampler"}}}),
                "civitaiResources": [{"type": "checkpoint", "modelVersionId": ckpt_version["id"],
                                      "modelVersionName": ckpt_version["name"]}]}  # fmt: skip
        if lora is not None:
            model, _, weight = lora
            version = model["modelVersions"][0]["id"]
            meta["additionalResources"] = [
                {"name": f"urn:air:sdxl:lora:civitai:{model['id']}@{version}", "type": "lora",
                 "strength": weight, "strengthClip": weight}
            ]  # fmt: skip
        return meta
    # Civitai's generator: resources by version id, no negative prompt for Flux
    meta = {"prompt": prompt, "seed": seed, **settings, "workflow": "txt2img", "baseModel": "Flux1",
            "civitaiResources": [{"type": "checkpoint", "modelVersionId": ckpt_version["id"],
                                  "modelVersionName": ckpt_version["name"]}]}  # fmt: skip
    if lora is not None:
        model, _, weight = lora
        meta["civitaiResources"].append(
            {"type": "lora", "weight": weight, "modelVersionId": model["modelVersions"][0]["id"]}
        )
    return meta


def _image(ids: Ids, fam: dict, meta: dict, version_id: int, level: int = 1) -> dict:
    """An ``/images`` item (string nsfwLevel, integer browsingLevel, boolean nsfw)."""
    width, height = fam.get("size") or (int(s) for s in fam["settings"]["Size"].split("x"))
    image_id = ids("image")
    names = {1: "None", 2: "Soft", 4: "Mature", 8: "X"}
    return {
        "id": image_id, "url": f"https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/{image_id}/width={width}",
        "hash": "U8Fr?e4n00~q", "width": width, "height": height, "nsfwLevel": names[level],
        "type": "image", "nsfw": level > 2, "browsingLevel": level, "createdAt": CREATED.format(9),
        "postId": ids("post"), "stats": {"cryCount": 0, "laughCount": 0, "likeCount": 12, "dislikeCount": 0,
                                          "heartCount": 5, "commentCount": 0},
        "meta": meta, "username": "fixture", "baseModel": fam["base"], "modelVersionId": version_id,
        "modelVersionIds": [version_id],
    }  # fmt: skip


def _page_image(image: dict, with_meta: bool) -> dict:
    """The same image as a model page lists it: integer nsfwLevel, meta only where the page sends it."""
    return {
        "id": image["id"], "url": image["url"], "nsfwLevel": image["browsingLevel"], "width": image["width"],
        "height": image["height"], "hash": image["hash"], "type": "image", "hasMeta": True, "onSite": False,
        "meta": image["meta"] if with_meta else None,
    }  # fmt: skip


def build() -> tuple[list[dict], dict[str, list[dict]]]:
    ids = Ids()
    models: list[dict] = []
    images: dict[str, list[dict]] = {}
    day = 1
    for key, fam in FAMILIES.items():
        checkpoints, loras = [], []
        for name in fam["checkpoints"]:
            day += 1
            version = _version(ids, fam["base"], "v1.0", _stem(name), "Checkpoint", [], day)
            checkpoints.append(
                _model(ids, name, "Checkpoint", [version], [key, "base model"], f"maker_{key}")
            )
        for name, word in fam["loras"]:
            day += 1
            version = _version(ids, fam["base"], "v1.0", _stem(name), "LORA", [word], day)
            loras.append(_model(ids, name, "LORA", [version], [key, "style"], f"artist_{key}"))
        seed = 1000
        for c, ckpt in enumerate(checkpoints):
            version = ckpt["modelVersions"][0]
            served = []
            for i in range(IMAGES_PER_CHECKPOINT):
                seed += 7
                subject = fam["subjects"][(i + c) % len(fam["subjects"])]
                prompt = (
                    f"{fam['style']}, {subject}"
                    if key in ("pony", "illustrious")
                    else f"{subject}, {fam['style']}"
                )
                served.append(_image(ids, fam, _meta(fam, prompt, seed, ckpt, None), version["id"]))
            served.append(
                _image(
                    ids,
                    fam,
                    _meta(fam, f"{fam['style']}, beach outfit", seed + 1, ckpt, None),
                    version["id"],
                    level=2,
                )
            )  # PG-13: a PG crawl never receives it
            version["images"] = [_page_image(image, fam["model_page_meta"]) for image in served]
            images[str(version["id"])] = served
        for n, lora in enumerate(loras):
            version = lora["modelVersions"][0]
            stem, word = _stem(fam["loras"][n][0]), fam["loras"][n][1]
            served = []
            for i in range(IMAGES_PER_LORA):
                seed += 11
                ckpt = checkpoints[i % len(checkpoints)]
                subject = fam["subjects"][(i + n) % len(fam["subjects"])]
                prompt = f"{fam['style']}, {word}, {subject}"
                served.append(
                    _image(ids, fam, _meta(fam, prompt, seed, ckpt, (lora, stem, 0.8)), version["id"])
                )
            version["images"] = [_page_image(image, fam["model_page_meta"]) for image in served]
            images[str(version["id"])] = served
        models += checkpoints + loras

    by_name = {m["name"]: m for m in models}
    # An archived older version: Civitai drops its files and images, the model page still lists it.
    juggernaut = by_name["Juggernaut XL"]
    archived = _version(ids, "SDXL 1.0", "v0.9 (archived)", "JuggernautXLv09", "Checkpoint", [], 1)
    archived.update(files=[], images=[], mode="Archived", index=1)
    juggernaut["modelVersions"].append(archived)
    # A legacy look-up nests the meta as {"id", "meta"}.
    first = images[str(by_name["RealVisXL V5"]["modelVersions"][0]["id"])][0]
    first["meta"] = {"id": first["id"], "meta": first["meta"]}
    # An explicit checkpoint (XXX content): out of every default answer.
    explicit_version = _version(ids, "Pony", "v3", "ExplicitPonyMix", "Checkpoint", [], 20)
    explicit_version["nsfwLevel"] = 16
    explicit = _model(ids, "Explicit Pony Mix", "Checkpoint", [explicit_version], ["pony", "nsfw"], "maker_x")
    explicit.update(nsfwLevel=1 | 4 | 16)
    ckpt_meta = _meta(FAMILIES["pony"], "score_9, 1girl, beach", 5, explicit, None)
    served = [_image(ids, FAMILIES["pony"], ckpt_meta, explicit_version["id"], level=8)]
    explicit_version["images"] = [_page_image(served[0], False)]
    images[str(explicit_version["id"])] = served
    models.append(explicit)
    # An SDXL image that used an SD 1.5 LoRA: DABench must drop it (incompatible), never learn from it.
    sdxl, pixel = by_name["Juggernaut XL"], by_name["Pixel Art"]
    mixed = _meta(FAMILIES["sdxl"], "pixelart, a castle, ultra detailed photograph", 77, sdxl, None)
    mixed["prompt"] += " <lora:PixelArt:0.7>"
    mixed["hashes"]["lora:PixelArt"] = pixel["modelVersions"][0]["files"][0]["hashes"]["AutoV3"]
    images[str(sdxl["modelVersions"][0]["id"])].append(
        _image(ids, FAMILIES["sdxl"], mixed, sdxl["modelVersions"][0]["id"])
    )
    return models, images


def main() -> None:
    models, images = build()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "models.json").write_text(json.dumps(models, indent=1, ensure_ascii=False) + "\n")
    (OUT / "images.json").write_text(json.dumps(images, indent=1, ensure_ascii=False) + "\n")
    count = sum(len(v) for v in images.values())
    print(f"{OUT}: {len(models)} models, {count} images over {len(images)} versions")


if __name__ == "__main__":
    main()
