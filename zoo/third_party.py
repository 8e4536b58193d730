"""The catalogue's third-party entries: older checkpoints downloaded from their publishers' locations and
converted once into the cache.

The cache is `$ULMFIT_CACHE/third_party` when that is set, else `HF_HOME/ulmfit/third_party` (huggingface_hub's
`HF_HOME`: `~/.cache/huggingface`, or under `XDG_CACHE_HOME`), so one setting moves every download. With
`HF_HUB_OFFLINE=1` (or `local_files_only`) nothing is fetched: a model that is not converted yet is an error that
names the files it needs.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from huggingface_hub import constants

from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import CONFIG, ModelDir
from ulmfit.zoo.catalogue import ModelEntry
from ulmfit.zoo.convert import convert_checkpoint

log = logging.getLogger(__name__)


def third_party_cache(cache_dir: Path | str | None = None) -> Path:
    """Where third-party models are kept: `cache_dir`, else `$ULMFIT_CACHE/third_party`, else
    `HF_HOME/ulmfit/third_party`."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("ULMFIT_CACHE"):
        return Path(os.environ["ULMFIT_CACHE"]).expanduser() / "third_party"
    return Path(constants.HF_HOME) / "ulmfit" / "third_party"


def fetch_third_party(entry: ModelEntry, cache_dir: Path | str | None = None, local_files_only: bool = False,
                      force_download: bool = False) -> Path:
    """The model directory of a third-party catalogue entry: downloaded from its original location and converted
    once into `third_party_cache(cache_dir)/NAME`; later calls only return the folder (`force_download` fetches
    and converts it again)."""
    from ulmfit.pretrain.download import download

    root = third_party_cache(cache_dir)
    target = root / entry.name
    if (target / CONFIG).is_file() and not force_download:
        return target
    urls = entry.third_party["urls"]  # `validate_entry` checked that each file is a plain name
    downloads = root / ".downloads" / entry.name
    if local_files_only or constants.is_offline_mode():
        missing = [f"{file} ({url})" for file, url in urls.items() if not (downloads / file).is_file()]
        raise UlmfitError(f"{entry.name} is not in the cache ({target}) and downloads are off (HF_HUB_OFFLINE=1 or "
                          f"local_files_only); it needs {', '.join(missing) or 'converting its downloaded files'}: "
                          "run once with the network on, or point HF_HOME (or ULMFIT_CACHE) at a cache that holds it.")
    hint = "check the connection, or download the files yourself and run `ulmfit convert PATH --to DIR`"
    if force_download:
        shutil.rmtree(downloads, ignore_errors=True)
    for file, url in urls.items():
        download(url, downloads / file, sha256=entry.sha256.get(file), hint=hint)
    staging = root / f".{entry.name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    origin = {"catalogue_name": entry.name, "urls": dict(urls), "metrics": entry.metrics, "license": entry.license}
    try:
        convert_checkpoint(downloads, staging, entry.third_party["format"], entry.lang, allow_pickle=False,
                           origin=origin)
    except UlmfitError as e:
        shutil.rmtree(downloads, ignore_errors=True)
        raise UlmfitError(f"{str(e).rstrip('.')}; the downloaded files of {entry.name} were deleted, so running "
                          "again downloads them anew.") from None
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    shutil.rmtree(downloads, ignore_errors=True)
    got = ModelDir.open(target).directions
    if set(entry.directions) - set(got):
        log.warning("the catalogue lists %s for %s, but the download held %s", "+".join(entry.directions),
                    entry.name, "+".join(got))
    return target
