"""The Hugging Face Hub: downloading model directories and publishing them.

Downloads go through `huggingface_hub.snapshot_download`, so they share the Hugging Face cache and honour
`HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`, `HF_ENDPOINT` and `HF_TOKEN`, with its progress bars. Only the files
of a model directory are fetched (`PUBLISHED_FILES`), and every one must lie inside the repository's cache folder.
A catalogue entry's sha256 are checked after download; a mismatching file is deleted from the cache and fetched
once more before giving up. A pinned commit already in the cache is used without the network; an unreachable Hub
is reported after one request, not after huggingface_hub's retries.

Publishing (`push_model`) writes the model card, creates the repository if needed and commits exactly the
publishable files with `HfApi.create_commit`: run state (`checkpoints/`, `run.json`, logs, optimizer state)
stays local. A card already in the repository is kept unless asked to replace it. Classifier directories
(`"format": "ulmfit-classifier"`) are published the same way.

huggingface_hub's exceptions become one-sentence `UlmfitError`s that say what to do.
"""
from __future__ import annotations

import logging
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its transport errors are what "no network" looks like on upload
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    ModelCard,
    constants,
    get_token,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ulmfit import __version__
from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest, is_relative_file, resolves_inside
from ulmfit.pretrain.card import merge_bench_results, read_bench_results, render_card
from ulmfit.pretrain.modeldir import CARD, CONFIG, PUBLISHED_FILES, ModelDir
from ulmfit.spec import SHA1, check_repo_id

log = logging.getLogger(__name__)


def model_card(model: ModelDir | Path | str, repo_id: str | None = None,
               bench_results: Path | str | list[dict] | None = None) -> ModelCard:
    """The model card of a model or classifier directory, with downstream results from `bench_results`
    (a `results.json`, or its rows; format in `ulmfit.pretrain.card`)."""
    model = model if isinstance(model, ModelDir) else ModelDir.open(model)
    bench = read_bench_results(bench_results) if bench_results else []
    name = repo_id.split("/")[-1] if repo_id else model.path.resolve().name
    return render_card(model.config, name, repo_id, bench)


# --- download ----------------------------------------------------------------------------------------------------

def _cache(cache_dir: Path | str | None) -> str:
    return str(cache_dir or constants.HF_HUB_CACHE)


def download_error(e: Exception, repo_id: str, revision: str | None, cache_dir, offline: bool) -> UlmfitError:
    where = f"{repo_id}@{revision}" if revision else repo_id
    if isinstance(e, HFValidationError):
        return UlmfitError(f"{repo_id!r} is not a valid Hub repository id ({str(e).strip().splitlines()[0]}): "
                           "give ORG/NAME.")
    if isinstance(e, GatedRepoError):
        return UlmfitError(f"{repo_id} is gated: accept its conditions on {constants.ENDPOINT}/{repo_id}, then log "
                           "in with `hf auth login` (or set HF_TOKEN) with that account.")
    if isinstance(e, RepositoryNotFoundError):
        if get_token() is None:
            return UlmfitError(f"there is no repository {repo_id} on {constants.ENDPOINT}, or it is private and no "
                               "token is set: check the name, or log in with `hf auth login` (or set HF_TOKEN).")
        return UlmfitError(f"there is no repository {repo_id} on {constants.ENDPOINT} that your token can read: "
                           "check the name, and the token's access if the repository is private.")
    if isinstance(e, RevisionNotFoundError):
        return UlmfitError(f"{repo_id} has no revision {revision!r}: give a branch, tag or commit of the repository.")
    if isinstance(e, IncompleteSnapshotError):
        return UlmfitError(f"the cached copy of {where} in {_cache(cache_dir)} is incomplete and the Hub cannot be "
                           "reached: run `ulmfit download` again with the network on.")
    if isinstance(e, LocalEntryNotFoundError):
        if offline:
            return UlmfitError(f"{where} is not in the cache ({_cache(cache_dir)}) and downloads are off "
                               "(HF_HUB_OFFLINE=1 or local_files_only): download it once with the network on, or "
                               "point HF_HOME at a cache that holds it.")
        return UlmfitError(f"cannot reach the Hub at {constants.ENDPOINT} and {where} is not in the cache "
                           f"({_cache(cache_dir)}): check the network (and HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to "
                           "use only models downloaded before.")
    if isinstance(e, (httpx2.TransportError, OfflineModeIsEnabled)):
        return UlmfitError(f"cannot reach the Hub at {constants.ENDPOINT}"
                           + (" because HF_HUB_OFFLINE=1 is set: unset it" if offline else
                              f" ({type(e).__name__}): check the network and HF_ENDPOINT") + ", then try again.")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code
        if status in (401, 403):
            return UlmfitError(f"the Hub refused access to {repo_id} (HTTP {status}): log in with a token that can "
                               "read it (`hf auth login` or HF_TOKEN).")
        return UlmfitError(f"the Hub at {constants.ENDPOINT} answered HTTP {status} for {where}: try again later.")
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return UlmfitError(f"downloading {where} failed part-way ({first_line}): run the command again; "
                       "complete files stay in the cache.")


# huggingface_hub's HTTP and cache errors are OSErrors (so are a size mismatch and a full disk).
DOWNLOAD_ERRORS = (OSError, HFValidationError, httpx2.TransportError)


def download_model(repo_id: str, revision: str | None = None, cache_dir: Path | str | None = None,
                   local_files_only: bool = False, sha256: dict[str, str | None] | None = None,
                   token: str | bool | None = None, force_download: bool = False) -> Path:
    """The local folder of a Hub model directory (in the Hugging Face cache), downloading what is missing.

    `sha256` maps files to the hashes they must have (a catalogue entry's): a file that does not match is deleted
    from the cache and downloaded again once; a second mismatch is an error. `token` reads private repositories
    (default: the logged-in token), `force_download` fetches every file again.

    A commit that is completely in the cache is used without asking the Hub (a commit never changes). When the
    Hub cannot be reached, this says so at once, with the cache folder, rather than after huggingface_hub's
    retries of every file.
    """
    offline = local_files_only or constants.is_offline_mode()
    options = dict(cache_dir=cache_dir, allow_patterns=PUBLISHED_FILES, token=token, library_name="ulmfit",
                   library_version=__version__)
    try:
        path = None
        if not offline and not force_download and revision and SHA1.match(revision):
            path = _cached_snapshot(repo_id, revision, options)
            if path is None:
                _check_reachable(repo_id, revision, cache_dir)
        if path is None:
            path = Path(snapshot_download(repo_id, revision=revision, local_files_only=local_files_only,
                                          force_download=force_download, **options))
    except DOWNLOAD_ERRORS as e:
        raise download_error(e, repo_id, revision, cache_dir, offline) from e
    _check_inside_cache(path, repo_id)
    if not (path / CONFIG).is_file():
        raise UlmfitError(f"{repo_id} is not a ulmfit model: the repository has no config.json; give a repository "
                          "that `ulmfit push` published.")
    ModelDir.open(path, spec=f"hf-hub:{repo_id}")  # its errors name the repository and the field
    for name, digest in _mismatches(path, sha256 or {}, repo_id):
        _download_again(path, name, digest, repo_id, cache_dir, offline, token)
    return path


def _cached_snapshot(repo_id: str, commit: str, options: dict) -> Path | None:
    """The complete cached snapshot of a commit, or None."""
    try:
        return Path(snapshot_download(repo_id, revision=commit, local_files_only=True, **options))
    except DOWNLOAD_ERRORS:
        return None


def _check_reachable(repo_id: str, revision: str, cache_dir) -> None:
    """One quick request to the Hub, without retries: huggingface_hub skips its repository call for a commit and
    retries each file for half a minute when the network is down."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=min(constants.HF_HUB_ETAG_TIMEOUT, 10))
    except httpx2.TransportError as e:
        raise UlmfitError(f"cannot reach the Hub at {constants.ENDPOINT} ({type(e).__name__}) and "
                          f"{repo_id}@{revision[:12]} is not complete in the cache ({_cache(cache_dir)}): check the "
                          "network (and HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use only models downloaded before."
                          ) from None


def _repo_cache(path: Path) -> Path:
    """The cache folder of a repository (`models--ORG--NAME`) from its snapshot folder (`snapshots/COMMIT`)."""
    return path.parent.parent


def _check_inside_cache(path: Path, repo_id: str) -> None:
    """Every file of the snapshot must lie in the repository's cache folder, its links followed: a server that
    names blobs with `../` must not make us read a file elsewhere."""
    for name in PUBLISHED_FILES:
        file = path / name
        if (file.exists() or file.is_symlink()) and not resolves_inside(file, _repo_cache(path)):
            raise UlmfitError(f"the cached {name} of {repo_id} points outside the Hugging Face cache "
                              f"({file.resolve()}): the server named its file with a path that leaves the cache, so "
                              "it is not used; delete that file and do not download from this endpoint.")


def _mismatches(path: Path, sha256: dict[str, str | None], repo_id: str) -> list[tuple[str, str]]:
    """(file, expected sha256) of each file that is missing or has other bytes than the hash says."""
    bad = [name for name in sha256 if not is_relative_file(name)]
    if bad:  # the catalogue refuses such keys; this guards callers that pass hashes of their own
        raise UlmfitError(f"the sha256 of {repo_id} names {bad[0]!r}, which is not a file inside the model's folder.")
    return [(name, digest) for name, digest in sha256.items()
            if digest and (not (path / name).is_file() or file_digest(path / name) != digest)]


def _remove_cached(path: Path, name: str) -> None:
    """Delete a cached file: the snapshot's link and the blob it points to, both inside the repository's cache."""
    file = path / name
    if file.is_symlink():
        blob = file.resolve()
        if resolves_inside(blob, _repo_cache(path)):
            blob.unlink(missing_ok=True)
    file.unlink(missing_ok=True)


def _download_again(path: Path, name: str, digest: str, repo_id: str, cache_dir, offline: bool,
                    token: str | bool | None = None) -> None:
    """Replace a cached file whose sha256 is wrong by a fresh download from the same commit, once."""
    commit = path.name  # snapshots/<commit sha>
    if offline:
        raise UlmfitError(f"the cached {name} of {repo_id} does not match the catalogue's sha256 and downloads are "
                          "off (HF_HUB_OFFLINE=1 or local_files_only): run `ulmfit download` with the network on to "
                          "fetch it again.")
    log.warning("%s of %s does not match its catalogue sha256: downloading it again", name, repo_id)
    _remove_cached(path, name)
    try:
        hf_hub_download(repo_id, name, revision=commit, cache_dir=cache_dir, force_download=True, token=token,
                        library_name="ulmfit", library_version=__version__)
    except DOWNLOAD_ERRORS as e:
        raise download_error(e, repo_id, commit, cache_dir, offline) from e
    _check_inside_cache(path, repo_id)
    if _mismatches(path, {name: digest}, repo_id):
        _remove_cached(path, name)
        raise UlmfitError(f"{name} of {repo_id}@{commit[:12]} does not match the sha256 the catalogue pins, even "
                          "when downloaded again: the Hub (or a proxy) serves other bytes than were published, so "
                          "the file was deleted; report it to the model's publisher.")


# --- publishing --------------------------------------------------------------------------------------------------

def _push_error(e: Exception, repo_id: str, revision: str | None) -> UlmfitError:
    if isinstance(e, httpx2.TransportError):
        return UlmfitError(f"cannot reach the Hub at {constants.ENDPOINT} ({type(e).__name__}): check the network "
                           "(and HF_ENDPOINT), then push again.")
    if isinstance(e, RevisionNotFoundError):
        return UlmfitError(f"{repo_id} has no branch {revision!r}: push without --revision, or create the branch.")
    status = e.response.status_code if isinstance(e, HfHubHTTPError) else None
    if status == 401:
        return UlmfitError("the Hub did not accept the token (HTTP 401): log in again with `hf auth login`, or set "
                           "HF_TOKEN to a token with write access.")
    if status == 403:
        return UlmfitError(f"the token may not write to {repo_id} (HTTP 403): use a token with write access to "
                           f"{repo_id.split('/')[0]}.")
    detail = getattr(e, "server_message", None) or str(e).strip().splitlines()[0]
    return UlmfitError(f"the Hub at {constants.ENDPOINT} refused the upload to {repo_id} ({detail}); "
                       "fix that, then push again.")


def push_model(model_dir: Path | str, repo_id: str, private: bool = False, revision: str | None = None,
               create_pr: bool = False, token: str | None = None, commit_message: str | None = None,
               bench_results: Path | str | list[dict] | None = None, replace_card: bool = False) -> dict:
    """Publish a finished model (or classifier) directory to the Hub repository `repo_id`.

    Writes the model card (README.md) into the directory first, creates the repository if needed (private with
    `private`), and commits the publishable files to `revision` (a branch, created from main when new) or, with
    `create_pr`, to a new pull request against main.

    A card already in the repository is kept (it may have been edited there) unless `replace_card`; benchmark
    results (`bench_results`) are then merged into its metadata (model-index) and its text is left alone.
    Returns the repository URL, the commit, the pull request URL (or None), the branch, the files uploaded and
    what happened to the card (`written`, `kept` or `merged`).
    """
    if not Path(model_dir).is_dir():
        raise UlmfitError(f"{model_dir} is not a folder; give the directory `ulmfit pretrain` wrote.")
    model = ModelDir.open(model_dir)
    model.publishable_files()  # a clear error before anything is written or sent
    check_repo_id(repo_id)
    if create_pr and revision not in (None, constants.DEFAULT_REVISION):
        raise UlmfitError("a pull request is opened against main: leave out --revision with --create-pr "
                          "(or push to the branch without --create-pr).")
    token = token or get_token()
    if not token:
        raise UlmfitError("publishing needs a Hugging Face token with write access: run `hf auth login` or set "
                          "HF_TOKEN.")
    bench = read_bench_results(bench_results) if bench_results else []
    card = model_card(model, repo_id, bench)
    model.write_card(card)
    files = model.publishable_files()
    api = HfApi(token=token, library_name="ulmfit", library_version=__version__)
    kind = "classifier" if model.is_classifier else "language model"
    config = model.config
    try:
        user = api.whoami()["name"]
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, constants.DEFAULT_REVISION):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        existing = None if replace_card else _hub_card(api, repo_id, revision)
        if existing is None:
            card_text, card_action = str(card), "written"
        elif bench:
            card_text, card_action = merge_bench_results(existing, bench, repo_id.split("/")[-1]), "merged"
        else:
            card_text, card_action = None, "kept"
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(model.path / f)) for f in files
                      if f != CARD]
        if card_text is not None:
            operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card_text.encode("utf-8")))
        log.info("uploading %d files of %s to %s as %s", len(operations), model.path, repo_id, user)
        info = api.create_commit(
            repo_id, operations, revision=revision, create_pr=create_pr,
            commit_message=commit_message or f"Upload ulmfit {kind} ({config['lang']}, "
                                              f"{'+'.join(config['directions'])})")
    except (HfHubHTTPError, httpx2.TransportError) as e:
        raise _push_error(e, repo_id, revision) from e
    if card_action != "written":
        log.info("kept the model card already in %s%s; pass replace_card (--replace-card) to rewrite it", repo_id,
                 " and added the benchmark results to its metadata" if card_action == "merged" else "")
    return {"repo_id": repo_id, "repo_url": str(url), "revision": revision or constants.DEFAULT_REVISION,
            "commit": info.oid, "commit_url": info.commit_url, "pr_url": info.pr_url,
            "files": [op.path_in_repo for op in operations], "card": card_action}


def _hub_card(api: HfApi, repo_id: str, revision: str | None) -> str | None:
    """The model card in the repository at `revision` (default main), or None when it has none."""
    try:
        path = api.hf_hub_download(repo_id, CARD, revision=revision)
    except EntryNotFoundError:
        return None
    return Path(path).read_text(encoding="utf-8")
