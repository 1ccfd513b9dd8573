"""The files a call's resources are, for a generator: the user's installed copies where the model library
has them, else the catalogue's names (a generator server may hold a file of that name)."""

from __future__ import annotations

from ...catalog import Store
from ...library import Library
from ...schema import APICall
from .._common import VAE_FILE, ModelFile

__all__ = ["resolve_files"]


def resolve_files(store: Store, api: APICall) -> dict[int | str, ModelFile]:
    """Each version the call names -> its file: the installed one (path and hashes) when the library has
    it, else the catalogue's primary file name and SHA256; and the library's copy of the call's VAE,
    found by its content, under ``VAE_FILE``."""
    wanted = [
        api.checkpoint.version_id,
        *(lora.version_id for lora in api.loras),
        *(item.version_id for item in api.embeddings or ()),
    ]
    with Library() as library:
        installed = library.by_version(store)
        by_content = library.by_sha256() if api.vae is not None else {}
    names, hashes = store.primary_files(wanted), store.primary_sha256(wanted)
    files: dict[int | str, ModelFile] = {}
    for version_id in wanted:
        if version_id in installed:
            item = installed[version_id]
            files[version_id] = ModelFile(item.path.name, item.path, item.hashes.sha256, item.hashes.autov3)
        elif version_id in names:
            files[version_id] = ModelFile(names[version_id], None, hashes.get(version_id))
    if api.vae is not None:
        listed = [f for f in store.files_of(api.vae.version_id) if f.name == api.vae.name and f.sha256]
        digest = listed[0].sha256.lower() if listed and listed[0].sha256 else None
        copy = by_content.get(digest) if digest else None
        if copy is not None:  # by the user's own file name, as the generator lists it
            files[VAE_FILE] = ModelFile(copy.name, copy, digest)
    return files
