"""The CLI's side of the node's HTTP API (httpx): each call one request, each refusal one clear error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from isthmus.errors import ConfigError, IsthmusError

DEFAULT_URL = "http://127.0.0.1:8700"
#: The fewest first characters of a job's id that name it (as git takes a short commit id).
MIN_ID_PREFIX = 4


class NodeClient:
    def __init__(self, url: str | None = None, *, token_file: Path | None = None, timeout: float = 30.0):
        self.url = (url or os.environ.get("ISTHMUS_NODE") or DEFAULT_URL).rstrip("/")
        if "://" not in self.url:  # `--node 127.0.0.1:8700`, as node.yaml's api.listen is written
            self.url = f"http://{self.url}"
        headers = {}
        if token_file is not None:
            headers["Authorization"] = f"Bearer {Path(token_file).read_text(encoding='utf-8').strip()}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise IsthmusError(f"cannot reach the node at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:500]
            raise ConfigError(f"node {self.url}: {detail}")
        return response.text if response.headers.get("content-type", "").startswith("text/") else response.json()

    def submit(self, proposal: dict) -> str:
        return self.call("POST", "/v1/jobs", json={"proposal": proposal})["id"]

    def jobs(self) -> list[dict]:
        return self.call("GET", "/v1/jobs")

    def job_id(self, given: str) -> str:
        """The id of this node's job that ``given`` names: its whole id, or its first characters (at least
        :data:`MIN_ID_PREFIX`) when no other job's id starts with them. Anything else is returned as given,
        for the node to say it has no such job."""
        if len(given) < MIN_ID_PREFIX:
            return given
        starting = [job["id"] for job in self.jobs() if job["id"].startswith(given)]
        if len(starting) > 1 and given not in starting:
            raise ConfigError(f"{given!r} begins the ids of {len(starting)} jobs on the node at {self.url} "
                              f"({', '.join(starting[:3])}{', ...' if len(starting) > 3 else ''}): give more of it")
        return starting[0] if len(starting) == 1 else given

    def job(self, job_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}")

    def events(self, job_id: str, after: int = 0) -> list[dict]:
        return self.call("GET", f"/v1/jobs/{job_id}/events", params={"after": after})

    def logs(self, job_id: str) -> str:
        return self.call("GET", f"/v1/jobs/{job_id}/logs")

    def metrics(self, job_id: str) -> dict:
        return self.call("GET", f"/v1/jobs/{job_id}/metrics")

    def approve(self, job_id: str) -> dict:
        return self.call("POST", f"/v1/jobs/{job_id}/approve")

    def refuse(self, job_id: str, reason: str) -> dict:
        return self.call("POST", f"/v1/jobs/{job_id}/refuse", json={"reason": reason})

    def cancel(self, job_id: str) -> dict:
        return self.call("POST", f"/v1/jobs/{job_id}/cancel")

    def clean(self, job_id: str) -> dict:
        return self.call("POST", f"/v1/jobs/{job_id}/clean")

    def publish(self, job_id: str, name: str) -> dict:
        return self.call("POST", "/v1/models", json={"job": job_id, "name": name})

    def models(self) -> list[dict]:
        return self.call("GET", "/v1/models")

    def predict(self, name: str, ids: list[str], version: int | None = None) -> list:
        body = {"ids": ids, **({"version": version} if version is not None else {})}
        return self.call("POST", f"/v1/models/{name}/predict", json=body)["scores"]

    def rollback(self, name: str, version: int | None = None) -> dict:
        return self.call("POST", f"/v1/models/{name}/rollback", json={} if version is None else {"version": version})

    def unpublish(self, name: str, version: int | None = None) -> dict:
        return self.call("POST", f"/v1/models/{name}/unpublish", json={} if version is None else {"version": version})

    def ledger(self) -> dict:
        return self.call("GET", "/v1/ledger")

    def ledger_peers(self) -> dict:
        return self.call("GET", "/v1/ledger/peers")

    def status(self, peers: bool = False) -> dict:
        return self.call("GET", "/v1/status", params={"peers": "true"} if peers else None)
