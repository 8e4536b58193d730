"""A local stand-in for the Hugging Face Hub, so publishing and downloading are tested without the network.

Standard library only. It answers the HTTP endpoints that `huggingface_hub` 2.4 calls for this project's
`snapshot_download`, `hf_hub_download`, `HfApi.whoami`, `create_repo`, `create_branch`, `model_info`,
`list_repo_tree`, `list_repo_refs`, `upload_folder` (preupload, YAML validation, NDJSON commit, pull requests):

    GET  /api/whoami-v2                               GET  /api/agent-harnesses
    POST /api/repos/create                            POST /api/validate-yaml
    GET  /api/models/{repo}[/revision/{rev}]          GET  /api/models/{repo}/tree/{rev}[/{path}]
    GET  /api/models/{repo}/refs                      POST /api/models/{repo}/preupload/{rev}
    POST /api/models/{repo}/commit/{rev}[?create_pr=1]
    POST /api/models/{repo}/branch/{branch}           POST /api/models/{repo}/discussions
    GET  /api/models/{repo}/discussions/{num}         HEAD|GET /{repo}/resolve/{rev}/{path}

Preupload answers `"uploadMode": "regular"` for every file, so the client sends file contents inside the commit
(base64) and never needs LFS or Xet storage. Commits get random 40-hex shas; a revision is a branch name, a pull
request ref (`refs/pr/N`) or a commit sha. Errors carry the `X-Error-Code` headers (`RepoNotFound`,
`RevisionNotFound`, `EntryNotFound`, `GatedRepo`) from which the client raises its typed exceptions. File ETags are
git blob shas, as the Hub gives for regular files.

Repositories live under a root folder (`repos/ORG/NAME.json` plus content-addressed `blobs/`), so a server
started again on the same root serves what was pushed before. Run it by hand with

    python -m tests.hub_server --port 8765 --root /tmp/hub
    HF_ENDPOINT=http://127.0.0.1:8765 HF_TOKEN=hf_local ulmfit push runs/vi --repo-id me/vi-test

Tests start it in a thread with `serve(root)`. Its state's `corrupt` and `truncated` (paths it serves with flipped
bytes, or cut short), `etags` (an ETag to serve for a path instead of its blob id, as a hostile server might) and
`requests` (what it was asked) let them check what the client does.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO = r"(?P<repo>[^/]+/[^/]+)"
SHA = re.compile(r"^[0-9a-f]{40}$")
ROUTES = [  # (method, path pattern, handler name)
    ("GET", r"/api/whoami-v2", "whoami"),
    ("GET", r"/api/agent-harnesses", "agent_harnesses"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", "model_info"),
    ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
    ("GET", rf"/api/models/{REPO}/refs", "refs"),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/models/{REPO}/branch/(?P<branch>[^/]+)", "create_branch"),
    ("POST", rf"/api/models/{REPO}/discussions", "create_discussion"),
    ("GET", rf"/api/models/{REPO}/discussions/(?P<num>\d+)", "discussion"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]
USER = "local-user"


def git_blob_sha(data: bytes) -> str:
    """The id git gives a file's content (`git hash-object`): what the Hub uses as a regular file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubError(Exception):
    """An HTTP error answer: status, the client-facing message and the Hub's error code header."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.body = body or {}


class HubState:
    """Repositories on disk, and the knobs tests use. One lock guards every read-modify-write of a repository."""

    def __init__(self, root: Path, tokens: set[str] | None = None):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.tokens = tokens  # None: any non-empty token is valid
        self.lock = threading.RLock()
        self.corrupt: set[str] = set()  # file paths served with every byte flipped
        self.truncated: set[str] = set()  # file paths served cut in half (a download that breaks off)
        self.etags: dict[str, str] = {}  # file path -> the ETag served instead of its blob id (a hostile server)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request

    # -- storage ------------------------------------------------------------------------------------------------

    def _path(self, repo_id: str) -> Path:
        return self.root / "repos" / f"{repo_id}.json"

    def load(self, repo_id: str) -> dict:
        path = self._path(repo_id)
        if not path.is_file():
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return json.loads(path.read_text())

    def save(self, repo: dict) -> None:
        path = self._path(repo["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        tmp.replace(path)

    def put_blob(self, data: bytes) -> str:
        oid = git_blob_sha(data)
        path = self.root / "blobs" / oid
        if not path.exists():
            tmp = path.with_name(f"{oid}.{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return oid

    def blob(self, oid: str) -> bytes:
        return (self.root / "blobs" / oid).read_bytes()

    # -- repositories -------------------------------------------------------------------------------------------

    def set_flags(self, repo_id: str, **flags) -> None:
        """Change a repository's `private` or `gated` flag (tests use it for access errors)."""
        with self.lock:
            repo = self.load(repo_id)
            repo.update(flags)
            self.save(repo)

    def create(self, repo_id: str, private: bool) -> dict:
        with self.lock:
            if self._path(repo_id).is_file():
                raise HubError(409, "You already created this model repo")
            repo = {"id": repo_id, "private": private, "gated": False, "created": _now(), "refs": {},
                    "commits": {}, "discussions": {}}
            attributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
            files = {".gitattributes": {"oid": self.put_blob(attributes), "size": len(attributes)}}
            sha = self._new_commit(repo, None, files, "initial commit")
            repo["refs"]["refs/heads/main"] = sha
            self.save(repo)
            return repo

    @staticmethod
    def _new_commit(repo: dict, parent: str | None, files: dict, title: str) -> str:
        sha = secrets.token_hex(20)
        repo["commits"][sha] = {"parent": parent, "files": files, "title": title, "date": _now()}
        return sha

    @staticmethod
    def ref_name(rev: str) -> str:
        return rev if rev.startswith("refs/") else f"refs/heads/{rev}"

    def resolve(self, repo: dict, rev: str | None) -> str:
        rev = rev or "main"
        sha = repo["refs"].get(self.ref_name(rev))
        if sha is None and SHA.match(rev) and rev in repo["commits"]:
            sha = rev
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha

    def commit(self, repo_id: str, rev: str, lines: list[dict], create_pr: bool) -> tuple[str, int | None]:
        """Apply an NDJSON commit to a branch (or a new pull request); the new commit's sha and PR number."""
        with self.lock:
            repo = self.load(repo_id)
            head = self.resolve(repo, rev)
            ref = self.ref_name(rev)
            if ref not in repo["refs"]:
                raise HubError(400, f"Cannot commit to {rev}: it is not a branch or a pull request ref")
            header = next((line["value"] for line in lines if line.get("key") == "header"), {})
            if header.get("parentCommit") not in (None, head):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo["commits"][head]["files"])
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, "file contents must be base64")
                    data = base64.b64decode(value["content"])
                    files[value["path"]] = {"oid": self.put_blob(data), "size": len(data)}
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(prefix)}
                elif key in ("lfsFile", "copyFile"):
                    raise HubError(400, f"{key} is not supported by the local Hub (it answers regular uploads)")
                elif key != "header":
                    raise HubError(400, f"unknown commit operation {key!r}")
            num = None
            if create_pr:
                num = self.open_discussion(repo, header.get("summary", "Upload"), head)
                ref = f"refs/pr/{num}"
            sha = self._new_commit(repo, head, files, header.get("summary", ""))
            repo["refs"][ref] = sha
            self.save(repo)
            return sha, num

    @staticmethod
    def open_discussion(repo: dict, title: str, base: str, pull_request: bool = True) -> int:
        num = len(repo["discussions"]) + 1
        repo["discussions"][str(num)] = {"title": title, "isPullRequest": pull_request, "created": _now(),
                                         "status": "draft" if pull_request else "open"}
        if pull_request:
            repo["refs"][f"refs/pr/{num}"] = base
        return num


class Handler(BaseHTTPRequestHandler):
    """One request: route it, answer JSON or file bytes, or an error with the Hub's headers."""

    server: "HubServer"

    def log_message(self, format, *args):  # quiet: tests read `state.requests` instead
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base(self) -> str:
        return self.server.url

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.state.requests.append((method, unquote(split.path)))
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        try:
            for verb, pattern, name in ROUTES:
                match = re.fullmatch(pattern, split.path)
                if verb == method and match:
                    args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    return getattr(self, f"api_{name}")(**args)
            raise HubError(404, f"no route for {method} {split.path}")
        except HubError as e:
            headers = {"X-Error-Message": e.message, **e.headers}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._json({"error": e.message, **e.body}, e.status, headers)

    # -- answers ------------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _payload(self):
        try:
            return json.loads(self.body or b"{}")
        except ValueError as e:
            raise HubError(400, f"invalid JSON body: {e}") from e

    # -- auth ---------------------------------------------------------------------------------------------------

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else ""
        if token and (self.state.tokens is None or token in self.state.tokens):
            return token
        return None

    def _need_token(self) -> None:
        if self._token() is None:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _readable(self, repo_id: str) -> dict:
        repo = self.state.load(repo_id)
        if repo["private"] and self._token() is None:
            raise HubError(401, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _writable(self, repo_id: str) -> dict:
        self._need_token()
        return self.state.load(repo_id)

    # -- endpoints ----------------------------------------------------------------------------------------------

    def api_whoami(self) -> None:
        self._need_token()
        self._json({"type": "user", "id": "0" * 24, "name": USER, "fullname": "Local Hub user", "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})

    def api_agent_harnesses(self) -> None:  # the client asks which AI agents to name in its user agent
        self._json({"standardEnvVars": [], "harnesses": {}})

    def api_create_repo(self) -> None:
        self._need_token()
        payload = self._payload()
        if payload.get("type", "model") != "model":
            raise HubError(400, "the local Hub holds model repositories only")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        try:
            self.state.create(repo_id, private)
        except HubError as e:
            raise HubError(e.status, e.message, body={"url": f"{self.base}/{repo_id}"}) from e
        self._json({"url": f"{self.base}/{repo_id}", "name": repo_id, "id": repo_id})

    def api_validate_yaml(self) -> None:
        content = self._payload().get("content", "")
        errors = [] if not content.startswith("---") or "\n---" in content[3:] else [
            {"message": "the YAML front matter is not closed by a '---' line"}]
        self._json({"errors": errors, "warnings": []}, 400 if errors else 200)

    def api_model_info(self, repo: str, rev: str | None = None) -> None:
        data = self._readable(repo)
        sha = self.state.resolve(data, rev)
        commit = data["commits"][sha]
        siblings = [{"rfilename": p, "size": f["size"], "blobId": f["oid"]} for p, f in sorted(commit["files"].items())]
        self._json({"_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "modelId": repo,
                    "author": repo.split("/")[0], "sha": sha, "lastModified": commit["date"],
                    "createdAt": data["created"], "private": data["private"],
                    "gated": "manual" if data["gated"] else False, "disabled": False, "tags": [],
                    "siblings": siblings})

    def api_tree(self, repo: str, rev: str, path: str = "") -> None:
        data = self._readable(repo)
        files = data["commits"][self.state.resolve(data, rev)]["files"]
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        entries: dict[str, dict] = {}
        for name, info in sorted(files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                if recursive or depth == 1:
                    folder = prefix + "/".join(parts[:depth])
                    entries.setdefault(folder, {"type": "directory", "path": folder, "size": 0,
                                                "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                entries[name] = {"type": "file", "path": name, "size": info["size"], "oid": info["oid"]}
        if prefix and not entries:
            raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound")
        self._json(list(entries.values()))

    def api_refs(self, repo: str) -> None:
        data = self._readable(repo)

        def refs(kind: str) -> list[dict]:
            return [{"name": ref.split("/", 2)[2], "ref": ref, "targetCommit": sha}
                    for ref, sha in sorted(data["refs"].items()) if ref.startswith(f"refs/{kind}/")]

        answer = {"branches": refs("heads"), "tags": refs("tags"), "converts": []}
        if self.query.get("include_prs"):
            answer["pullRequests"] = refs("pr")
        self._json(answer)

    def api_preupload(self, repo: str, rev: str) -> None:
        data = self._writable(repo)
        files = data["commits"][self.state.resolve(data, rev)]["files"]
        answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                   "oid": files.get(f["path"], {}).get("oid")} for f in self._payload().get("files", [])]
        self._json({"files": answer, "commitOid": self.state.resolve(data, rev)})

    def api_commit(self, repo: str, rev: str) -> None:
        self._writable(repo)
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except ValueError as e:
            raise HubError(400, f"the commit body is not NDJSON: {e}") from e
        create_pr = self.query.get("create_pr") in ("1", "true")
        sha, num = self.state.commit(repo, rev, lines, create_pr)
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{self.base}/{repo}/commit/{sha}",
                    "hookOutput": "", "pullRequestUrl": f"{self.base}/{repo}/discussions/{num}" if num else None})

    def api_create_branch(self, repo: str, branch: str) -> None:
        self._writable(repo)
        with self.state.lock:
            data = self.state.load(repo)
            ref = self.state.ref_name(branch)
            if ref in data["refs"]:
                raise HubError(409, "Reference already exists")
            data["refs"][ref] = self.state.resolve(data, self._payload().get("startingPoint"))
            self.state.save(data)
        self._json({})

    def api_create_discussion(self, repo: str) -> None:
        self._writable(repo)
        payload = self._payload()
        pull_request = bool(payload.get("pullRequest"))
        with self.state.lock:
            data = self.state.load(repo)
            num = self.state.open_discussion(data, payload.get("title", ""), self.state.resolve(data, "main"),
                                             pull_request)
            self.state.save(data)
        self._json({"num": num, "url": f"{self.base}/{repo}/discussions/{num}", "pullRequest": pull_request})

    def api_discussion(self, repo: str, num: str) -> None:
        data = self._readable(repo)
        item = data["discussions"].get(num)
        if item is None:
            raise HubError(404, f"Discussion {num} not found")
        self._json({"num": int(num), "title": item["title"], "status": item["status"], "author": {"name": USER},
                    "createdAt": item["created"], "repo": {"name": repo, "type": "model"},
                    "isPullRequest": item["isPullRequest"], "events": [], "filesWithConflicts": [], "diff": "",
                    "changes": {"base": "refs/heads/main"}})

    def api_resolve(self, repo: str, rev: str, path: str) -> None:
        data = self._readable(repo)
        if data["gated"]:
            raise HubError(403, f"Access to model {repo} is restricted. You must have access to it.", "GatedRepo")
        sha = self.state.resolve(data, rev)
        info = data["commits"][sha]["files"].get(path)
        if info is None:
            raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{self.state.etags.get(path, info["oid"])}"',
                   "Accept-Ranges": "none"}
        if self.command == "HEAD":
            return self._send(200, b"", "application/octet-stream", headers, length=info["size"])
        body = self.state.blob(info["oid"])
        if path in self.state.corrupt:
            body = bytes(b ^ 0xFF for b in body)
        if path in self.state.truncated:
            body = body[: len(body) // 2]
        self._send(200, body, "application/octet-stream", headers)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, tokens: set[str] | None = None):
        super().__init__((host, port), Handler)
        self.state = HubState(root, tokens)
        self.url = f"http://{host}:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: later connections are refused, as with no network. Stopping twice does nothing."""
        if self._thread is None:
            return
        self.shutdown()
        self.server_close()
        self._thread.join()
        self._thread = None


def serve(root: Path, port: int = 0, tokens: set[str] | None = None) -> HubServer:
    """A local Hub on 127.0.0.1, answering in a background thread; `.url` is the HF_ENDPOINT to use."""
    return HubServer(root, port=port, tokens=tokens).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local Hugging Face Hub for tests and offline demos.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--root", type=Path, required=True, help="Folder that holds the repositories.")
    parser.add_argument("--token", action="append", help="Accept only this token (repeatable; default: any).")
    args = parser.parse_args(argv)
    server = HubServer(args.root, args.host, args.port, set(args.token) if args.token else None)
    print(f"local Hub at {server.url} (root {args.root}); set HF_ENDPOINT={server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
