"""Pinning a published model in the catalogue: the commit a branch points to, a check that the run directory's
files are the ones at that commit, and the catalogue entry (`ulmfit catalogue add`); mirroring a third-party entry
onto the Hub and pinning the mirror (`ulmfit catalogue mirror`)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from huggingface_hub import HfApi, constants

from ulmfit import __version__
from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest
from ulmfit.pretrain.card import license_of
from ulmfit.pretrain.modeldir import DIRECTIONS, WEIGHTS, ModelDir
from ulmfit.spec import HUB, SHA1, ModelSpec, check_repo_id, model_name, source_label
from ulmfit.zoo.catalogue import add_entry, get_entry
from ulmfit.zoo.hub import DOWNLOAD_ERRORS, download_error, download_model, push_model


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
        raise download_error(e, repo_id, revision, None, constants.is_offline_mode()) from e
    if not sha or not SHA1.match(sha):
        raise UlmfitError(f"the Hub gave no commit for {repo_id}@{revision or 'main'}; give --revision COMMIT.")
    return sha


def _check_published(model_dir: Path, repo_id: str, commit: str, files: list[str]) -> None:
    """Each file must be in the repository at `commit` with the same content as in `model_dir`."""
    try:
        tree = {f.path: f for f in HfApi().list_repo_tree(repo_id, revision=commit, recursive=True)}
    except DOWNLOAD_ERRORS as e:
        raise download_error(e, repo_id, commit, None, constants.is_offline_mode()) from e
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


def catalogue_entry(model_dir_or_repo: Path | str, repo_id: str, revision: str | None = None,
                    name: str | None = None) -> dict:
    """A catalogue entry pinning `repo_id` at a commit, with the sha256 of each weight file.

    `model_dir_or_repo` is the run directory that was pushed (its files must be the ones in the repository at
    that commit) or `hf-hub:ORG/NAME`, which is downloaded at the commit. `revision` (a branch, tag or commit;
    default main) is resolved to the commit it points to now.
    """
    check_repo_id(repo_id)
    commit = revision if revision and SHA1.match(revision) else resolve_commit(repo_id, revision)
    spec = ModelSpec.parse(model_dir_or_repo)
    if spec.is_local:
        path = Path(spec.name)
    elif spec.kind == HUB and not spec.bare:
        if spec.name != repo_id:
            raise UlmfitError(f"{model_dir_or_repo} is not {repo_id}: give hf-hub:{repo_id}, or the run directory.")
        path = download_model(repo_id, revision=commit)
    else:
        raise UlmfitError(f"no model directory at {model_dir_or_repo}; give the run directory that was pushed, "
                          f"or hf-hub:{repo_id}.")
    model = ModelDir.open(path)
    if model.is_classifier:
        raise UlmfitError(f"{path} is a classifier; the catalogue names language models: share a classifier as "
                          f"hf-hub:{repo_id}.")
    config = model.config
    weights = [f"{d}/{WEIGHTS}" for d in model.directions]
    model.publishable_files()
    if spec.is_local:
        _check_published(path, repo_id, commit, weights)
    corpus = config.get("corpus") or {}
    source = corpus.get("source") or {}
    summary = {"source": source.get("type"), "dump": source.get("dbname"), "date": source.get("dump_date"),
               "dataset": source.get("dataset"), "articles": corpus.get("articles"), "tokens": corpus.get("tokens")}
    metrics = {d: {k: round(float(m[k]), 4) for k in ("valid_ppl", "accuracy") if m.get(k) is not None}
               for d, m in (config.get("metrics") or {}).items() if d in DIRECTIONS}
    arch = config["arch"]
    return {
        "name": name or model_name(config["lang"], source_label(source), config["tokenizer"]["type"],
                                   config["vocab_size"]),
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


def mirror_entry(name: str, to: str, *, repo_name: str | None = None, private: bool = False,
                 token: str | None = None, cache_dir: Path | str | None = None,
                 catalogue: Path | str | None = None) -> dict:
    """Publish a third-party catalogue entry on the Hub and pin it, the whole step in one call.

    Downloads the entry from its publisher and converts it (`fetch_third_party`: the converter checks that the
    new model gives the old one's logits), pushes it to `TO/NAME` (`repo_name` to choose NAME) with a card that
    names the source, the original URLs, the licence and the published figures, checks that the repository holds
    the files pushed, and writes a catalogue entry pinning the commit and the sha256 of each weight file into the
    user catalogue (or `catalogue`): from then on `NAME` downloads from the mirror. Returns the push result and the
    entry.
    """
    from ulmfit.zoo.third_party import fetch_third_party  # the converter imports torch: only when mirroring

    entry = get_entry(name)
    if entry.third_party is None:
        raise UlmfitError(f"{name} is already on the Hub (hf-hub:{entry.repo_id}); mirror names a third-party entry "
                          "(`ulmfit list` shows them as third-party).")
    if "/" in to or not to:
        raise UlmfitError(f"--to takes the Hub user or organisation to publish under (e.g. my-org), not {to!r}.")
    repo_id = check_repo_id(f"{to}/{repo_name or name}")
    path = fetch_third_party(entry, cache_dir=cache_dir)
    urls = ", ".join(entry.third_party["urls"].values())
    pushed = push_model(path, repo_id, private=private, token=token,
                        commit_message=f"Mirror {name} ({entry.third_party['format']}) from {urls}")
    pinned = catalogue_entry(path, repo_id, revision=pushed["commit"], name=name)
    pinned |= {k: v for k, v in (("description", entry.description), ("corpus", entry.corpus),
                                  ("metrics", entry.metrics), ("license", entry.license)) if v}
    written = add_entry(pinned, catalogue)
    return pushed | {"entry": pinned, "catalogue": str(written)}
