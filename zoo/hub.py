"""The Hugging Face Hub: downloading model directories, publishing them, and pinning them in the catalogue.

Downloads go through `huggingface_hub.snapshot_download`, so they share the Hugging Face cache and honour
`HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`, `HF_ENDPOINT` and `HF_TOKEN`, with its progress bars. Only the files
of a model directory are fetched (`PUBLISHED_FILES`). A catalogue entry's sha256 are checked after download; a
mismatching file is deleted from the cache and fetched once more before giving up.

Publishing (`push_model`) writes the model card, creates the repository if needed and uploads exactly the
publishable files with `HfApi.upload_folder`: run state (`checkpoints/`, `run.json`, logs, optimizer state)
stays local. Classifier directories (`"format": "ulmfit-classifier"`) are published the same way.

huggingface_hub's exceptions become one-sentence `UlmfitError`s that say what to do.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its transport errors are what "no network" looks like on upload
from huggingface_hub import HfApi, ModelCard, constants, get_token, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
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
from ulmfit.files import atomic_write_text, file_digest, read_json
from ulmfit.pretrain.modeldir import CONFIG, DIRECTIONS, FORMAT, WEIGHTS, read_config
from ulmfit.card import CLASSIFIER_FORMAT, is_wikipedia, license_of, read_bench_results, render_card
from ulmfit.zoo.catalogue import REPO_ID, SHA1

log = logging.getLogger(__name__)

# What a model or classifier directory publishes, and all that a download fetches.
PUBLISHED_FILES = [CONFIG, "README.md", "spm.model", "vocab.json", "labels.json", "metrics.json",
                   *(f"{d}/{WEIGHTS}" for d in DIRECTIONS)]


def read_model_config(model_dir: Path | str) -> dict:
    """The config of a model directory (`ulmfit pretrain`) or a classifier directory (`ulmfit finetune`)."""
    config = read_json(Path(model_dir) / CONFIG)
    if isinstance(config, dict) and config.get("format") == CLASSIFIER_FORMAT:
        return config
    return read_config(model_dir)  # a language model, or the clear error for anything else


def publishable_files(model_dir: Path | str, config: dict) -> list[str]:
    """The files of a finished model directory that go to the Hub; an error names what a finished one lacks."""
    model_dir = Path(model_dir)
    tokenizer = (config.get("tokenizer") or {}).get("file")
    required = [CONFIG, tokenizer, *(f"{d}/{WEIGHTS}" for d in config.get("directions") or [])]
    missing = [f for f in required if not f or not (model_dir / f).is_file()]
    if not config.get("directions") or missing:
        raise UlmfitError(f"{model_dir} is not a finished model directory: it lacks "
                          f"{', '.join(str(m) for m in missing) or 'trained directions'}; "
                          "let `ulmfit pretrain` (or `ulmfit finetune`) finish, or resume it, before publishing.")
    return [f for f in PUBLISHED_FILES if (model_dir / f).is_file()]


def model_card(model_dir: Path | str, repo_id: str | None = None,
               bench_results: Path | str | None = None) -> ModelCard:
    """The model card of a model or classifier directory, with downstream results from `bench_results`
    (a `results.json`; format in `ulmfit.card`)."""
    model_dir = Path(model_dir)
    config = read_model_config(model_dir)
    bench = read_bench_results(bench_results) if bench_results else []
    name = repo_id.split("/")[-1] if repo_id else model_dir.resolve().name
    return render_card(config, name, repo_id, bench)


# --- download ----------------------------------------------------------------------------------------------------

def _cache(cache_dir: Path | str | None) -> str:
    return str(cache_dir or constants.HF_HUB_CACHE)


def _download_error(e: Exception, repo_id: str, revision: str | None, cache_dir, offline: bool) -> UlmfitError:
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
                   local_files_only: bool = False, sha256: dict[str, str | None] | None = None) -> Path:
    """The local folder of a Hub model directory (in the Hugging Face cache), downloading what is missing.

    `sha256` maps files to the hashes they must have (a catalogue entry's): a file that does not match is deleted
    from the cache and downloaded again once; a second mismatch is an error.
    """
    offline = local_files_only or constants.is_offline_mode()
    try:
        path = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                      local_files_only=local_files_only, allow_patterns=PUBLISHED_FILES,
                                      library_name="ulmfit", library_version=__version__))
    except DOWNLOAD_ERRORS as e:
        raise _download_error(e, repo_id, revision, cache_dir, offline) from e
    config = read_json(path / CONFIG)
    if not isinstance(config, dict) or config.get("format") not in (FORMAT, CLASSIFIER_FORMAT):
        what = "has no config.json" if config is None else f"has a config.json of format {config.get('format')!r}"
        raise UlmfitError(f"{repo_id} is not a ulmfit model: the repository {what}; give a repository that "
                          "`ulmfit push` published.")
    for name, digest in _mismatches(path, sha256 or {}):
        _download_again(path, name, digest, repo_id, cache_dir, offline)
    return path


def _mismatches(path: Path, sha256: dict[str, str | None]) -> list[tuple[str, str]]:
    """(file, expected sha256) of each file that is missing or has other bytes than the hash says."""
    return [(name, digest) for name, digest in sha256.items()
            if digest and (not (path / name).is_file() or file_digest(path / name) != digest)]


def _remove_cached(file: Path) -> None:
    """Delete a cached file: the snapshot's link and the blob it points to."""
    if file.is_symlink():
        file.resolve().unlink(missing_ok=True)
    file.unlink(missing_ok=True)


def _download_again(path: Path, name: str, digest: str, repo_id: str, cache_dir, offline: bool) -> None:
    """Replace a cached file whose sha256 is wrong by a fresh download from the same commit, once."""
    commit = path.name  # snapshots/<commit sha>
    if offline:
        raise UlmfitError(f"the cached {name} of {repo_id} does not match the catalogue's sha256 and downloads are "
                          "off (HF_HUB_OFFLINE=1 or local_files_only): run `ulmfit download` with the network on to "
                          "fetch it again.")
    log.warning("%s of %s does not match its catalogue sha256: downloading it again", name, repo_id)
    _remove_cached(path / name)
    try:
        hf_hub_download(repo_id, name, revision=commit, cache_dir=cache_dir, force_download=True,
                        library_name="ulmfit", library_version=__version__)
    except DOWNLOAD_ERRORS as e:
        raise _download_error(e, repo_id, commit, cache_dir, offline) from e
    if _mismatches(path, {name: digest}):
        _remove_cached(path / name)
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
               bench_results: Path | str | None = None) -> dict:
    """Publish a finished model (or classifier) directory to the Hub repository `repo_id`.

    Writes the model card (README.md) first, creates the repository if needed (private with `private`), and
    uploads the publishable files to `revision` (a branch, created from main when new) or, with `create_pr`, to
    a new pull request against main. Returns the repository URL, the commit, the pull request URL (or None),
    the branch and the files uploaded.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UlmfitError(f"{model_dir} is not a folder; give the directory `ulmfit pretrain` wrote.")
    config = read_model_config(model_dir)
    publishable_files(model_dir, config)  # a clear error before anything is written or sent
    if not REPO_ID.match(repo_id):
        raise UlmfitError(f"{repo_id!r} is not a Hub repository id: give ORG/NAME, e.g. my-org/vi-wiki-sp15k.")
    if create_pr and revision not in (None, constants.DEFAULT_REVISION):
        raise UlmfitError("a pull request is opened against main: leave out --revision with --create-pr "
                          "(or push to the branch without --create-pr).")
    token = token or get_token()
    if not token:
        raise UlmfitError("publishing needs a Hugging Face token with write access: run `hf auth login` or set "
                          "HF_TOKEN.")
    card = model_card(model_dir, repo_id, bench_results)
    atomic_write_text(model_dir / "README.md", str(card))
    files = publishable_files(model_dir, config)
    api = HfApi(token=token, library_name="ulmfit", library_version=__version__)
    kind = "classifier" if config.get("format") == CLASSIFIER_FORMAT else "language model"
    try:
        user = api.whoami()["name"]
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, constants.DEFAULT_REVISION):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        log.info("uploading %d files of %s to %s as %s", len(files), model_dir, repo_id, user)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=model_dir, allow_patterns=files, revision=revision, create_pr=create_pr,
            commit_message=commit_message or f"Upload ulmfit {kind} ({config['lang']}, "
                                              f"{'+'.join(config['directions'])})")
    except (HfHubHTTPError, httpx2.TransportError) as e:
        raise _push_error(e, repo_id, revision) from e
    return {"repo_id": repo_id, "repo_url": str(url), "revision": revision or constants.DEFAULT_REVISION,
            "commit": info.oid, "commit_url": info.commit_url, "pr_url": info.pr_url, "files": files}


# --- the catalogue -----------------------------------------------------------------------------------------------

def _git_blob_sha(path: Path) -> str:
    """git's id of a file's content: what the Hub lists as a regular (non-LFS) file's oid."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def resolve_commit(repo_id: str, revision: str | None = None) -> str:
    """The commit sha a branch, tag or commit of a Hub repository points to now."""
    try:
        sha = HfApi(library_name="ulmfit", library_version=__version__).model_info(repo_id, revision=revision).sha
    except DOWNLOAD_ERRORS as e:
        raise _download_error(e, repo_id, revision, None, constants.is_offline_mode()) from e
    if not sha or not SHA1.match(sha):
        raise UlmfitError(f"the Hub gave no commit for {repo_id}@{revision or 'main'}; give --revision COMMIT.")
    return sha


def _check_published(model_dir: Path, repo_id: str, commit: str, files: list[str]) -> None:
    """Each file must be in the repository at `commit` with the same content as in `model_dir`."""
    try:
        tree = {f.path: f for f in HfApi().list_repo_tree(repo_id, revision=commit, recursive=True)}
    except DOWNLOAD_ERRORS as e:
        raise _download_error(e, repo_id, commit, None, constants.is_offline_mode()) from e
    for name in files:
        remote = tree.get(name)
        if remote is None:
            raise UlmfitError(f"{repo_id}@{commit[:12]} has no {name}: push the run first (`ulmfit push`), or give "
                              "the --revision that holds it.")
        lfs = getattr(remote, "lfs", None)
        local = model_dir / name
        same = lfs.sha256 == file_digest(local) if lfs else remote.blob_id == _git_blob_sha(local)
        if not same:
            raise UlmfitError(f"{name} in {repo_id}@{commit[:12]} differs from the one in {model_dir}: give the "
                              "--revision that was pushed from this directory.")


def _default_name(config: dict) -> str:
    """`{lang}-{source}-{tokenizer}`, e.g. vi-wiki-sp15k or th-wiki-word60k."""
    corpus = config.get("corpus") or {}
    source = (corpus.get("source") or {}).get("type")
    origin = "wiki" if is_wikipedia(corpus) else "hub" if source == "hf-dataset" else source or "model"
    size = config["vocab_size"]
    tok = ("sp" if config["tokenizer"]["type"] == "sentencepiece" else "word") + (
        f"{round(size / 1000)}k" if size >= 1000 else str(size))
    return re.sub(r"[^a-z0-9._-]", "-", f"{config['lang']}-{origin}-{tok}".lower())


def catalogue_entry(model_dir_or_repo: Path | str, repo_id: str, revision: str | None = None,
                    name: str | None = None) -> dict:
    """A catalogue entry pinning `repo_id` at a commit, with the sha256 of each weight file.

    `model_dir_or_repo` is the run directory that was pushed (its files must be the ones in the repository at
    that commit) or `hf-hub:ORG/NAME`, which is downloaded at the commit. `revision` (a branch, tag or commit;
    default main) is resolved to the commit it points to now.
    """
    if not REPO_ID.match(repo_id):
        raise UlmfitError(f"{repo_id!r} is not a Hub repository id: give ORG/NAME.")
    commit = revision if revision and SHA1.match(revision) else resolve_commit(repo_id, revision)
    local = Path(model_dir_or_repo)
    if local.is_dir():
        path = local
    elif str(model_dir_or_repo).startswith("hf-hub:"):
        if str(model_dir_or_repo)[len("hf-hub:"):].partition("@")[0] != repo_id:
            raise UlmfitError(f"{model_dir_or_repo} is not {repo_id}: give hf-hub:{repo_id}, or the run directory.")
        path = download_model(repo_id, revision=commit)
    else:
        raise UlmfitError(f"no model directory at {model_dir_or_repo}; give the run directory that was pushed, "
                          f"or hf-hub:{repo_id}.")
    config = read_model_config(path)
    if config.get("format") == CLASSIFIER_FORMAT:
        raise UlmfitError(f"{path} is a classifier; the catalogue names language models: share a classifier as "
                          f"hf-hub:{repo_id}.")
    weights = [f"{d}/{WEIGHTS}" for d in config["directions"]]
    publishable_files(path, config)
    if path == local:
        _check_published(path, repo_id, commit, weights)
    corpus = config.get("corpus") or {}
    source = corpus.get("source") or {}
    summary = {"source": source.get("type"), "dump": source.get("dbname"), "date": source.get("dump_date"),
               "dataset": source.get("dataset"), "articles": corpus.get("articles"), "tokens": corpus.get("tokens")}
    metrics = {d: {k: round(float(m[k]), 4) for k in ("valid_ppl", "accuracy") if m.get(k) is not None}
               for d, m in (config.get("metrics") or {}).items() if d in DIRECTIONS}
    arch = config["arch"]
    return {
        "name": name or _default_name(config),
        "lang": config["lang"],
        "repo_id": repo_id,
        "revision": commit,
        "tokenizer": {"type": config["tokenizer"]["type"], "vocab_size": config["vocab_size"]},
        "directions": list(config["directions"]),
        "corpus": {k: v for k, v in summary.items() if v not in (None, {}, "")},
        "metrics": {d: m for d, m in metrics.items() if m},
        "license": license_of(config),
        "sha256": {f: file_digest(path / f) for f in weights},
        "description": f"AWD-LSTM {arch['emb_sz']}/{arch['n_hid']}/{arch['n_layers']}, "
                       f"{config['tokenizer']['type']} {config['vocab_size']:,}",
    }
