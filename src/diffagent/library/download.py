"""Verified, resumable downloads of a catalogue version's primary file from Civitai.

The file grows as ``NAME.part`` beside its destination; an interrupted download resumes with an HTTP
``Range`` request, and only a file whose SHA256 matches the catalogue is moved into place (atomically, by
rename), so a half or wrong file never sits where a generator would load it. The name comes from the
catalogue but is made safe first. ``CIVITAI_API_TOKEN`` travels only in the ``Authorization`` header
(httpx drops it when a redirect leaves the API's origin); it is never printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from .. import __version__
from ..catalog import Store, model_file_sql
from ..catalog.crawler import DEFAULT_API_URL
from ..config import home
from ..errors import DiffAgentError, UserInputError
from ..filenames import safe_file_name
from .hashing import FileHashes, hash_file

__all__ = ["DownloadError", "default_folder", "download_url", "download_version"]

_FOLDERS = {"LORA": "Lora", "LoCon": "Lora", "TextualInversion": "embeddings", "VAE": "VAE"}
"""Model type -> AUTOMATIC1111's folder name under ``models/``; checkpoints go to ``Stable-diffusion``."""


class DownloadError(DiffAgentError):
    """A download that stopped: refused, exhausted its retries, or delivered the wrong bytes."""


def download_url(version_id: int) -> str:
    """Civitai's download endpoint for a version, under ``DIFFAGENT_CIVITAI_URL`` when it is set."""
    root = (os.environ.get("DIFFAGENT_CIVITAI_URL") or DEFAULT_API_URL).rstrip("/")
    base = root.removesuffix("/v1")
    return f"{base}/download/models/{version_id}"


def default_folder(model_type: str | None) -> Path:
    """``DIFFAGENT_HOME/models/<A1111 folder>``: where downloads go without ``--dest``."""
    return home() / "models" / _FOLDERS.get(model_type or "", "Stable-diffusion")


def _wait(response: httpx.Response, attempt: int) -> float:
    """Seconds before the next try: the server's ``Retry-After`` when given, else exponential backoff."""
    value = response.headers.get("retry-after", "")
    try:
        return min(float(value), 300.0)
    except ValueError:
        pass
    try:
        return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), 300.0)
    except (TypeError, ValueError):
        return min(2.0**attempt, 60.0)


def download_version(
    store: Store,
    version_id: int,
    dest: Path | None = None,
    *,
    token: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    client: httpx.Client | None = None,
    vae: bool = False,
) -> tuple[Path, FileHashes]:
    """Download version ``version_id``'s primary file (with ``vae``, the VAE file it is published with)
    into ``dest`` and return its path and hashes.

    ``token`` defaults to ``CIVITAI_API_TOKEN``. ``progress(bytes_done, bytes_total)`` follows the body.
    A file already in place with the right hash is kept as is; one with other content is never replaced.
    """
    kind = "f.type = 'VAE'" if vae else model_file_sql("f.type")
    row = store.conn.execute(
        "SELECT f.name, f.sha256, f.size_kb, m.type, f.format FROM files f JOIN versions v ON"
        f" v.id = f.version_id JOIN models m ON m.id = v.model_id WHERE f.version_id = ? AND {kind}"
        " ORDER BY f.is_primary DESC, f.rowid LIMIT 1",
        (version_id,),
    ).fetchone()
    if row is None:
        what = "VAE file" if vae else "model file"
        raise UserInputError(
            f"version {version_id} has no {what} in the catalogue; run `diffagent catalog sync` first"
        )
    name, expected, _size_kb, model_type, file_format = row
    if vae:
        model_type = "VAE"
    if not expected:
        raise UserInputError(
            f"version {version_id} has no SHA256 in the catalogue, so a download cannot be verified"
        )
    folder = Path(dest) if dest is not None else default_folder(model_type)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / safe_file_name(name or f"version-{version_id}.safetensors")
    if final.exists():
        hashes = hash_file(final)
        if hashes.sha256 == expected.lower():
            return final, hashes
        raise DownloadError(f"{final} exists with other content; move it away first (nothing was replaced)")
    part = final.with_name(final.name + ".part")
    token = os.environ.get("CIVITAI_API_TOKEN", "").strip() if token is None else token
    url = download_url(version_id)
    if vae:  # Civitai's endpoint picks a version's other files by type and format
        known = file_format if file_format in ("SafeTensor", "PickleTensor", "Other") else "Other"
        url += "?" + urlencode({"type": "VAE", "format": known})
    own = client is None
    client = client or httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(30.0, read=120.0),
        headers={"User-Agent": f"diffagent/{__version__}"},
    )
    try:
        _fetch(client, url, part, token, progress, retries, sleep)
    finally:
        if own:
            client.close()
    hashes = hash_file(part)
    if hashes.sha256 != expected.lower():
        part.unlink()
        raise DownloadError(
            f"version {version_id}: the downloaded file's SHA256 {hashes.sha256[:12]}... is not"
            f" the catalogue's {expected.lower()[:12]}...; nothing was kept"
        )
    os.replace(part, final)
    return final, hashes


def _fetch(
    client: httpx.Client,
    url: str,
    part: Path,
    token: str,
    progress: Callable[[int, int], None] | None,
    retries: int,
    sleep: Callable[[float], None],
) -> None:
    """Fill ``part`` with the body at ``url``, resuming after dropped connections, waiting out 429 / 5xx."""
    where = urlsplit(url).netloc
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}  # raw bytes on disk, as the hash expects
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 416 and offset:
                    return  # the part file already holds the whole body; the hash check decides
                if status in (401, 403):
                    raise DownloadError(
                        f"HTTP {status} from {where}: the download needs a Civitai API token;"
                        " set CIVITAI_API_TOKEN"
                    )
                if status == 429 or status >= 500:
                    attempt += 1
                    if attempt > retries:
                        raise DownloadError(
                            f"HTTP {status} from {where} after {retries} retries; rerun to resume"
                        )
                    sleep(_wait(response, attempt))
                    continue
                if status not in (200, 206):
                    raise DownloadError(f"HTTP {status} from {where} for {urlsplit(url).path}")
                resumed = status == 206 and response.headers.get("content-range", "").startswith(
                    f"bytes {offset}-"
                )
                done = offset if resumed else 0
                length = response.headers.get("content-length")
                total = done + int(length) if length and length.isdigit() else 0
                with part.open("ab" if resumed else "wb") as out:
                    for chunk in response.iter_raw():
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, max(total, done))
                return
        except httpx.TransportError as exc:
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"download from {where} failed after {retries} retries ({type(exc).__name__});"
                    " rerun to resume"
                ) from None
            sleep(min(2.0**attempt, 60.0))
