"""The catalogue's third-party entries: older checkpoints downloaded from their publishers' locations and
converted once into the cache."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import CONFIG, ModelDir
from ulmfit.zoo.catalogue import ModelEntry
from ulmfit.zoo.convert import convert_checkpoint

log = logging.getLogger(__name__)


def fetch_third_party(entry: ModelEntry, cache_dir: Path | str | None = None, local_files_only: bool = False) -> Path:
    """The model directory of a third-party catalogue entry: downloaded from its original location and converted
    once into `cache_dir/NAME` (default `~/.cache/ulmfit/third_party/NAME`); later calls only return the folder."""
    from ulmfit.pretrain.download import default_cache_dir, download

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir("third_party")
    target = root / entry.name
    if (target / CONFIG).is_file():
        return target
    urls = entry.third_party["urls"]
    if local_files_only:
        raise UlmfitError(f"{entry.name} is not in the cache ({target} does not exist); run once online to download "
                          f"and convert it from {', '.join(urls.values())}.")
    downloads = root / ".downloads" / entry.name
    hint = "check the connection, or download the files yourself and run `ulmfit convert PATH --to DIR`"
    for file, url in urls.items():  # `validate_entry` checked that each file is a plain name
        download(url, downloads / file, sha256=entry.sha256.get(file), hint=hint)
    try:
        convert_checkpoint(downloads, target, entry.third_party["format"], entry.lang, allow_pickle=False,
                 origin={"catalogue_name": entry.name, "urls": dict(urls)})
    except UlmfitError as e:
        shutil.rmtree(downloads, ignore_errors=True)
        raise UlmfitError(f"{str(e).rstrip('.')}; the downloaded files of {entry.name} were deleted, so running "
                          "again downloads them anew.") from None
    shutil.rmtree(downloads, ignore_errors=True)
    got = ModelDir.open(target).directions
    if set(entry.directions) - set(got):
        log.warning("the catalogue lists %s for %s, but the download held %s", "+".join(entry.directions),
                    entry.name, "+".join(got))
    return target
