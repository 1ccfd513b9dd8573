"""The user's library: hashing, cached rescans, matching renamed files by hash; verified downloads that
resume, refuse wrong bytes, and stop on 401 and after too many 429s."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from _servers import download_handler, serve
from diffagent.catalog import Store
from diffagent.library import DownloadError, Library, download_version, hash_file


def _safetensors(payload: bytes, metadata: str = "{}") -> bytes:
    header = json.dumps({"__metadata__": json.loads(metadata)}).encode()
    return len(header).to_bytes(8, "little") + header + payload


def _store(files: dict[int, tuple[str, bytes, str]]) -> Store:
    """A catalogue with one model per version id: (file name, content, model type)."""
    store = Store()
    for version_id, (name, content, kind) in files.items():
        digest = hashlib.sha256(content).hexdigest()
        store.upsert_model(
            {
                "id": version_id * 10,
                "name": f"model {version_id}",
                "type": kind,
                "modelVersions": [
                    {
                        "id": version_id,
                        "baseModel": "SD 1.5",
                        "files": [
                            {
                                "name": name,
                                "primary": True,
                                "sizeKB": len(content) / 1024,
                                "hashes": {"SHA256": digest.upper(), "AutoV2": digest[:10].upper()},
                                "downloadUrl": f"https://civitai.com/api/download/models/{version_id}",
                            }
                        ],
                    }
                ],
            }
        )
    return store


def test_hashes_match_their_definitions(tmp_path: Path) -> None:
    content = _safetensors(b"tensor-bytes" * 100_000, '{"ss_note": "edited"}')
    path = tmp_path / "a.safetensors"
    path.write_bytes(content)
    hashes = hash_file(path)
    assert hashes.sha256 == hashlib.sha256(content).hexdigest()
    assert hashes.autov2 == hashes.sha256[:10]
    assert hashes.autov3 == hashlib.sha256(b"tensor-bytes" * 100_000).hexdigest()
    edited = tmp_path / "b.safetensors"
    edited.write_bytes(_safetensors(b"tensor-bytes" * 100_000, '{"ss_note": "other"}'))
    assert hash_file(edited).autov3 == hashes.autov3 and hash_file(edited).sha256 != hashes.sha256
    ckpt = tmp_path / "c.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 pickled")
    assert hash_file(ckpt).autov3 is None


def test_scan_matches_renamed_files_and_rescans_from_the_cache(tmp_path: Path) -> None:
    ckpt, lora = _safetensors(b"checkpoint" * 5000), _safetensors(b"lora" * 3000)
    store = _store(
        {1: ("realVision_v5.safetensors", ckpt, "Checkpoint"), 2: ("styleA.safetensors", lora, "LORA")}
    )
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "Lora" / "sub").mkdir(parents=True)
    (models / "Stable-diffusion" / "my favourite (renamed).safetensors").write_bytes(ckpt)
    (models / "Lora" / "sub" / "whatever.safetensors").write_bytes(lora)
    (models / "Lora" / "unknown.pt").write_bytes(b"not in the catalogue")
    (models / "Lora" / "notes.txt").write_text("ignored")
    with Library(tmp_path / "lib.sqlite") as library:
        first = library.scan([models], store)
        report = first.to_json()
        assert report["files"] == 3 and first.hashed == 3
        assert sorted(m["version_id"] for m in report["matched"]) == [1, 2]
        assert [Path(u["path"]).name for u in report["unknown"]] == ["unknown.pt"]
        again = library.scan([models], store)
        assert again.hashed == 0 and again.to_json() == report
        (models / "Lora" / "sub" / "whatever.safetensors").rename(models / "Lora" / "moved.safetensors")
        (models / "Lora" / "unknown.pt").unlink()
        moved = library.scan([models], store)
        assert moved.hashed == 1 and len(moved.files) == 2
        assert {f.version.version_id for f in moved.files if f.version} == {1, 2}
        assert set(library.by_version(store)) == {1, 2}
    with Library(tmp_path / "lib.sqlite") as library:  # the cache persists
        assert library.scan([models], store).hashed == 0


def test_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    store = _store({1: ("a.safetensors", b"one", "Checkpoint")})
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"two")
    with Library(tmp_path / "lib.sqlite") as library:
        assert library.scan([tmp_path], store).unknown
        path.write_bytes(b"one")
        os.utime(path, ns=(1, 1))
        report = library.scan([tmp_path], store)
        assert report.hashed == 1 and [f.version.version_id for f in report.matched] == [1]


def test_scan_refuses_a_missing_folder(tmp_path: Path) -> None:
    from diffagent.errors import DiffAgentError

    with Library(tmp_path / "lib.sqlite") as library, pytest.raises(DiffAgentError, match="not a folder"):
        library.scan([tmp_path / "nope"], Store())


BODY = _safetensors(os.urandom(300_000))


def _download(
    tmp_path: Path, faults: list[str], monkeypatch: pytest.MonkeyPatch, name: str = "styleA.safetensors"
):
    seen: list[dict] = []
    store = _store({7: (name, BODY, "LORA")})
    with serve(download_handler(BODY, faults, seen)) as url:
        monkeypatch.setenv("DIFFAGENT_CIVITAI_URL", f"{url}/api/v1")
        monkeypatch.setenv("CIVITAI_API_TOKEN", "secret-token")
        try:
            result = download_version(store, 7, tmp_path / "dest", retries=3, sleep=lambda _s: None)
        except DownloadError as exc:
            return exc, seen
    return result, seen


def test_download_verifies_and_moves_into_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (path, hashes), seen = _download(tmp_path, [], monkeypatch)
    assert path == tmp_path / "dest" / "styleA.safetensors" and path.read_bytes() == BODY
    assert hashes.sha256 == hashlib.sha256(BODY).hexdigest()
    assert seen[0]["path"] == "/api/download/models/7"
    assert seen[0]["headers"]["Authorization"] == "Bearer secret-token"
    assert list((tmp_path / "dest").iterdir()) == [path]


def test_download_resumes_after_a_dropped_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (path, _), seen = _download(tmp_path, ["drop"], monkeypatch)
    assert path.read_bytes() == BODY
    assert "Range" not in seen[0]["headers"]
    assert seen[1]["headers"]["Range"].startswith("bytes=") and seen[1]["headers"]["Range"] != "bytes=0-"


def test_download_restarts_when_the_server_ignores_the_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path, _), _ = _download(tmp_path, ["drop", "norange"], monkeypatch)
    assert path.read_bytes() == BODY


def test_wrong_bytes_are_refused_and_nothing_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error, _ = _download(tmp_path, ["wrong"], monkeypatch)
    assert isinstance(error, DownloadError) and "nothing was kept" in str(error)
    assert list((tmp_path / "dest").iterdir()) == []


def test_401_says_to_set_the_token_and_never_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error, seen = _download(tmp_path, ["401"], monkeypatch)
    assert isinstance(error, DownloadError) and "CIVITAI_API_TOKEN" in str(error)
    assert "secret-token" not in str(error) and len(seen) == 1


def test_429_is_waited_out_then_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (path, _), seen = _download(tmp_path, ["429", "429"], monkeypatch)
    assert path.read_bytes() == BODY and len(seen) == 3
    error, seen = _download(tmp_path / "again", ["429"] * 10, monkeypatch)
    assert isinstance(error, DownloadError) and "429" in str(error) and len(seen) == 4


def test_hostile_catalogue_file_names_stay_in_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path, _), _ = _download(tmp_path, [], monkeypatch, name="../../outside\x1b[2J.safetensors")
    assert path.parent == tmp_path / "dest" and ".." not in path.name and "\x1b" not in path.name
    assert not (tmp_path / "outside.safetensors").exists()


def test_an_existing_file_with_other_content_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "styleA.safetensors").write_bytes(b"mine")
    error, seen = _download(tmp_path, [], monkeypatch)
    assert (
        isinstance(error, DownloadError)
        and (dest / "styleA.safetensors").read_bytes() == b"mine"
        and not seen
    )


def test_unknown_hashes_are_looked_up_online(monkeypatch: pytest.MonkeyPatch) -> None:
    from _servers import by_hash_handler
    from diffagent.library import lookup_hashes

    known = {
        "a" * 64: {
            "id": 5,
            "modelId": 50,
            "name": "v1",
            "baseModel": "SDXL 1.0",
            "model": {"name": "M", "type": "LORA"},
        }
    }
    seen: list[dict] = []
    with serve(by_hash_handler(known, seen)) as url:
        monkeypatch.setenv("DIFFAGENT_CIVITAI_URL", f"{url}/api/v1")
        monkeypatch.setenv("CIVITAI_API_TOKEN", "tok")
        found = lookup_hashes(["a" * 64, "b" * 64, "a" * 64])
    assert found == {
        "a" * 64: {
            "model_id": 50,
            "version_id": 5,
            "name": "M",
            "version": "v1",
            "type": "LORA",
            "base_model": "SDXL 1.0",
        }
    }
    assert len(seen) == 2 and seen[0]["headers"]["Authorization"] == "Bearer tok"
    monkeypatch.setenv("DIFFAGENT_CIVITAI_URL", "http://127.0.0.1:9/api/v1")
    with pytest.raises(DownloadError, match="look-up failed"):
        lookup_hashes(["c" * 64])


def test_the_token_does_not_follow_a_redirect_to_another_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Civitai answers a download with a redirect to a storage host; the Bearer token stays behind."""
    from http.server import BaseHTTPRequestHandler

    cdn_seen: list[dict] = []
    store = _store({7: ("styleA.safetensors", BODY, "LORA")})
    with serve(download_handler(BODY, [], cdn_seen)) as cdn:

        class Redirect(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(307)
                self.send_header("Location", f"{cdn}{self.path}?signed=1")
                self.send_header("Content-Length", "0")
                self.end_headers()

        with serve(Redirect) as api:
            monkeypatch.setenv("DIFFAGENT_CIVITAI_URL", f"{api}/api/v1")
            path, _ = download_version(store, 7, tmp_path, token="secret-token", sleep=lambda _s: None)
    assert path.read_bytes() == BODY
    assert cdn_seen and all("Authorization" not in request["headers"] for request in cdn_seen)
