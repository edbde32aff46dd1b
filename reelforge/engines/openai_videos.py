"""The openai-videos remote engine: a job forwarded with httpx to any server with OpenAI's Videos wire."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from reelforge.storage import layout
from reelforge.errors import EngineError
from reelforge.engines.remote import RemoteEngine
from reelforge.engines.upstream import Busy, UpstreamFailed, fetch_file, loop_client

log = logging.getLogger("reelforge.engines.remote")


class OpenAIVideosEngine(RemoteEngine):
    engine_id: ClassVar[str] = "openai-videos"
    summary: ClassVar[str] = "forwards to any OpenAI Videos server (vLLM-Omni, SGLang Diffusion, FastVideo, reelforge) with httpx"
    upstream_differs: ClassVar[tuple[str, ...]] = ("fps",)  # the wire has size and seconds, no frame rate

    def http(self, forward):
        import httpx

        def make():
            headers = {}
            if forward.key_env:
                secret = os.environ.get(forward.key_env)
                if not secret:
                    raise EngineError(f"forward {forward.model_id}: key-env={forward.key_env} names a variable that is not set")
                headers["Authorization"] = f"Bearer {secret}"
            limits = httpx.Limits(max_connections=forward.concurrency + 4)
            base = forward.url if forward.url.endswith("/v1") else forward.url + "/v1"  # the server's root or its /v1
            return httpx.AsyncClient(base_url=base, headers=headers, timeout=httpx.Timeout(60, connect=10), limits=limits)

        return loop_client(forward.upstream_key() + (forward.key_env or ""), make)

    @staticmethod
    def fields(forward, job) -> dict[str, str]:
        cfg = job.model_input.get("videoGenerationConfig", {})
        text = job.model_input.get("textToVideoParams", {}).get("text", "")
        return {"prompt": text, "model": forward.upstream_model, "seconds": str(cfg.get("durationSeconds", 4)), "size": str(cfg.get("dimension", "1280x720"))}

    async def create(self, forward, job, token: str) -> str:
        import base64

        # multipart, as the openai client sends it (what every Videos server reads); text fields have no file name
        parts: list[tuple[str, tuple]] = [(k, (None, v)) for k, v in self.fields(forward, job).items()]
        images = job.model_input.get("textToVideoParams", {}).get("images")
        if images and "bytes" in images[0].get("source", {}):
            fmt = images[0]["format"]
            parts.append(("input_reference", (f"reference.{'jpg' if fmt == 'jpeg' else 'png'}", base64.b64decode(images[0]["source"]["bytes"]), f"image/{fmt}")))
        r = await self.http(forward).post("/videos", files=parts, headers={"Idempotency-Key": token})
        if r.status_code == 429 or r.status_code >= 500:
            raise Busy(f"HTTP {r.status_code}: {_message(r)}")
        if r.status_code >= 400:
            raise UpstreamFailed(f"upstream {forward.url} refused the job: HTTP {r.status_code}: {_message(r)}")
        return r.json()["id"]

    async def find_made(self, forward, job, since: float) -> str | None:
        want = self.fields(forward, job)
        r = await self.http(forward).get("/videos", params={"limit": 100, "order": "desc"})
        if r.status_code != 200:
            return None
        for v in r.json().get("data", []):
            if v.get("created_at", 0) >= int(since) and v.get("prompt") == want["prompt"] and v.get("size") == want["size"] \
                    and str(v.get("seconds")) == want["seconds"] and v.get("model") in (want["model"], None):
                log.info("job %s: adopting upstream job %s found in the upstream's list (created after the recorded intent)", job.id, v["id"])
                return v["id"]
        return None

    async def fetch(self, forward, upstream_id: str) -> dict[str, Any]:
        r = await self.http(forward).get(f"/videos/{upstream_id}")
        if r.status_code == 404:
            return {"status": "failed", "message": f"the upstream has no video {upstream_id} (deleted, expired, or it forgot it)"}
        r.raise_for_status()
        v = r.json()
        status = {"queued": "queued", "in_progress": "running", "completed": "completed", "failed": "failed"}.get(v.get("status"), "running")
        error = v.get("error") or {}
        return {"status": status, "progress": float(v.get("progress") or 0) / 100, "message": error.get("message") if error else None}

    async def download(self, forward, job, upstream_id: str, state: dict[str, Any], folder: Path, shots: int = 1) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        await fetch_file(self.http(forward), f"/videos/{upstream_id}/content", folder / layout.VIDEO, params={"variant": "video"})
        return {}

    async def cancel(self, forward, upstream_id: str) -> bool:
        r = await self.http(forward).delete(f"/videos/{upstream_id}")
        return r.status_code in (200, 204)


def _message(r) -> str:
    try:
        doc = r.json()
        return str((doc.get("error") or {}).get("message") or doc.get("message") or doc)[:500]
    except (ValueError, AttributeError):
        return r.text[:500]
