"""Library scan throughput and generation wall time per backend, for docs/benchmarks.md.

Scan: a tree of FILES random model files of MB MiB each, and one of MANY files of 64 KiB (safetensors with
a header, so AutoV3 is hashed too), each scanned cold, then rescanned from the cache. Generation: the tiny
SD 1.x checkpoint of the tests (64x64, 3 steps) on diffusers, and loopback AUTOMATIC1111 / ComfyUI servers
(which make no image, so their rows measure diffagent's own client: checks, request, polling, PNG
writing); diffusers' `generate` against the pipeline call alone, run alternately.

    PYTHONPATH=src python scripts/bench_library.py --files 24 --mb 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def bench_scan(root: Path, files: int, mb: int, label: str = "") -> None:
    from diffagent.catalog import Store
    from diffagent.library import Library

    folder = root / f"models-{files}-{mb}"
    folder.mkdir()
    header = b'{"__metadata__":{}}'
    for n in range(files):
        (folder / f"model-{n}.safetensors").write_bytes(
            len(header).to_bytes(8, "little") + header + os.urandom((mb << 20) or 64 << 10)
        )
    total_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    with Library(root / f"library-{files}.sqlite") as library, Store() as store:
        began = time.perf_counter()
        first = library.scan([folder], store)
        cold = time.perf_counter() - began
        began = time.perf_counter()
        again = library.scan([folder], store)
        warm = time.perf_counter() - began
    assert first.hashed == files and again.hashed == 0
    rate = f"{files / cold:.1f} | {total_mb / cold:.0f}"
    print(f"| first scan{label} | {files} | {total_mb:.1f} | {cold:.2f} | {rate} |")
    print(f"| rescan (cache){label} | {files} | {total_mb:.1f} | {warm:.3f} | {files / warm:.0f} | - |")


def _timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _paired(a, b, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Medians of ``a`` and ``b`` run alternately, so that load from other processes hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            began = time.perf_counter()
            fn()
            out.append(time.perf_counter() - began)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_generate(root: Path, repeats: int) -> None:
    import torch

    torch.set_num_threads(1)
    from _servers import a1111_handler, comfyui_handler, serve
    from _tiny_sd import tiny_sd1, tiny_vocab
    from diffagent.execute import ModelFile, to_diffusers
    from diffagent.execute.generate import diffusers_configs, generate, run_backend
    from diffagent.execute.generate.diffusers import load_pipeline
    from diffagent.schema import APICall

    os.environ["DIFFAGENT_HOME"] = str(root / "home")
    checkpoint = root / "tiny.safetensors"
    diffusers_configs.CONFIGS["SD1"] = tiny_sd1(checkpoint)
    tiny_vocab(root / "home" / "clip-tokenizer")
    api = APICall.model_validate(
        {"checkpoint": {"model_id": 1, "version_id": 10, "name": "tiny", "base_model": "SD 1.5"},
         "prompt": "a castle", "negative_prompt": "blurry", "sampler": "DPM++ 2M Karras", "steps": 3,
         "cfg_scale": 7.0, "width": 64, "height": 64, "clip_skip": 1, "seed": 5}
    )  # fmt: skip
    files = {10: ModelFile(checkpoint.name, checkpoint, "ab" * 32)}
    out = root / "out"
    began = time.perf_counter()
    pipe = load_pipeline(to_diffusers(api, files))
    load = time.perf_counter() - began
    full, generator_only = _paired(
        lambda: generate(api, "diffusers", files, out),
        lambda: pipe(prompt="a castle", negative_prompt="blurry", num_inference_steps=3, guidance_scale=7.0,
                     width=64, height=64, generator=torch.Generator().manual_seed(5)),
        repeats,
    )  # fmt: skip
    overhead = (full - generator_only) * 1000
    print(f"| diffusers (tiny SD1, 64x64, 3 steps, CPU 1 thread) | {full * 1000:.0f} |"
          f" {generator_only * 1000:.0f} | {overhead:.0f} | first load {load:.2f} s |")  # fmt: skip
    state = {"models": {"tiny.safetensors": "ab" * 32}, "loras": []}
    with serve(a1111_handler(state)) as url:
        full = _timed(lambda: generate(api, "a1111", files, out, url), repeats)
        bare = _timed(lambda: run_backend(api, "a1111", files, url), repeats)
    note = f"without PNG writing {bare * 1000:.1f} ms"
    print(f"| a1111 (loopback server) | {full * 1000:.1f} | - | {full * 1000:.1f} | {note} |")
    with serve(comfyui_handler({"checkpoints": ["tiny.safetensors"]})) as url:
        full = _timed(lambda: generate(api, "comfyui", files, out, url), repeats)
    print(f"| comfyui (loopback server, 1 poll of 0.25 s) | {full * 1000:.0f} | - | {full * 1000:.0f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--mb", type=int, default=16)
    parser.add_argument("--many", type=int, default=2000, help="files of the many-small-files tree")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| scan | files | MB | seconds | files/s | MB/s |\n|---|---:|---:|---:|---:|---:|")
        bench_scan(Path(tmp), args.files, args.mb)
        bench_scan(Path(tmp), args.many, 0, ", many small files")
        print("\n| backend | generate ms (median) | generator alone ms | overhead ms | note |")
        print("|---|---:|---:|---:|---|")
        bench_generate(Path(tmp), args.repeats)


if __name__ == "__main__":
    main()
