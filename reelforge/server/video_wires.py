"""What the OpenAI and Google video wires share: model names, API keys, submitting, outputs.

A wire module turns its request into a ``VideoRequest`` and calls :func:`submit`, which records
the job through the same ``Runtime.submit`` as Bedrock's wire, with the wire's name and its
request (bytes replaced by their size and digest) kept on the job. Model names of those APIs
(``sora-2``, ``veo-3.1-generate-001``) map to local model ids through one setting,
``REELFORGE_WIRE_MODELS`` (:class:`WireModels`, docs/wires.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from starlette.concurrency import run_in_threadpool

from reelforge import config
from reelforge.errors import ConfigError, EngineError, RequestError, UnknownModelError
from reelforge.jobs.record import JobRecord
from reelforge.request.limits import NOVA_BACKEND_DEFAULT, ModelSpec
from reelforge.engines.catalog import all_models, get_model, serving
from reelforge.jobs import layout
from reelforge.jobs.views import prompt, shape  # noqa: F401 - re-exported for the wires
from reelforge.request.model import VideoRequest
from reelforge.storage import join, storage_for
from reelforge.server.errors import ApiError

WIRE_MODELS_ENV = "REELFORGE_WIRE_MODELS"
# The names these APIs use, served by the default model unless REELFORGE_WIRE_MODELS says otherwise.
WIRE_NAMES = re.compile(r"sora-2(-pro)?(-[0-9]{4}-[0-9]{2}-[0-9]{2})?|veo-[0-9][0-9a-z.\-]*")
_SNAPSHOT = re.compile(r"-[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # a dated snapshot: sora-2-2025-10-06
_ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]*\*?")


@dataclass(frozen=True)
class WireModels:
    """Which local model serves each model name of the OpenAI and Google wires.

    ``REELFORGE_WIRE_MODELS`` is a comma-separated list of ``NAME=MODEL_ID``; ``NAME`` also
    covers its dated snapshots (``sora-2`` covers ``sora-2-2025-10-06``), and ``PREFIX*`` every
    name that starts with PREFIX. A name is looked up exactly, then by the longest prefix; a
    local model id is accepted as itself; the APIs' own names (sora-2, sora-2-pro and their
    snapshots, veo-*) left over go to :attr:`default`: the model REELFORGE_NOVA_BACKEND names,
    or ``reelforge.animatic-v2`` (the previz) when that is a Bedrock id, whose limits take these clients'
    defaults (720x1280, 4 s; 1280x720, 8 s).
    """

    exact: dict[str, str]
    prefixes: tuple[tuple[str, str], ...]  # longest first
    default: str

    @classmethod
    def from_env(cls, environ=os.environ) -> "WireModels":
        """The mapping from the environment; ConfigError naming the entry when one cannot be used."""
        exact, prefixes = {}, []
        text = environ.get(WIRE_MODELS_ENV, "")
        for entry in filter(None, (e.strip() for e in text.split(","))):
            name, sep, model_id = (p.strip() for p in entry.partition("="))
            if not sep or not _ENTRY_NAME.fullmatch(name) or not model_id:
                raise ConfigError(f"{WIRE_MODELS_ENV}: {entry!r} is not NAME=MODEL_ID (e.g. sora-2=reelforge.ltx-2,veo-*=reelforge.ltx-2)")
            try:
                get_model(model_id)
            except UnknownModelError:
                known = ", ".join(m.model_id for m in all_models())
                raise ConfigError(f"{WIRE_MODELS_ENV}: {entry!r} names an unknown model id {model_id!r}; available: {known}") from None
            if name.endswith("*"):
                prefixes.append((name[:-1], model_id))
            else:
                exact[name] = model_id
        backend = environ.get("REELFORGE_NOVA_BACKEND") or NOVA_BACKEND_DEFAULT
        try:
            default = backend if not get_model(backend).bedrock_id else NOVA_BACKEND_DEFAULT
        except UnknownModelError:
            default = NOVA_BACKEND_DEFAULT  # the Bedrock wire reports that setting where it is used
        return cls(exact, tuple(sorted(prefixes, key=lambda p: -len(p[0]))), default)

    def resolve(self, name: str, field: str) -> str:
        """The local model id serving ``name``; RequestError naming ``field`` and the names served."""
        if name in self.exact:
            return self.exact[name]
        base = _SNAPSHOT.sub("", name)
        if base != name and base in self.exact:
            return self.exact[base]
        for prefix, model_id in self.prefixes:
            if name.startswith(prefix):
                return model_id
        try:
            return get_model(name).model_id
        except UnknownModelError:
            pass
        if WIRE_NAMES.fullmatch(name):
            return self.default
        configured = ", ".join([*self.exact, *(p + "*" for p, _ in self.prefixes)])
        extra = f", the names in {WIRE_MODELS_ENV} ({configured})" if configured else ""
        raise RequestError(
            field,
            f"unknown model {name[:100]!r}; this server serves sora-2, sora-2-pro and their dated snapshots, "
            f"veo-* names{extra}, and its own model ids ({', '.join(m.model_id for m in all_models())})",
        )


def default_fps(spec: ModelSpec) -> int:
    """The frame rate of videos whose wire names none: 24 where the model makes it."""
    return 24 if 24 in spec.limits.fps else spec.limits.fps[0]


# --- API keys ---------------------------------------------------------------------------------


def check_key(scope: dict, wire: str, keys: dict[str, str]) -> None:
    """Refuse (401) a request of the OpenAI or Google wire whose API key is not one of the secrets of ``keys``.

    OpenAI's client sends ``Authorization: Bearer KEY``; Google's sends ``x-goog-api-key: KEY``
    (express mode) or a bearer token (project mode).
    """
    headers = dict(scope["headers"])
    given = headers.get(b"x-goog-api-key", b"").decode("latin-1").strip() if wire == "gemini" else ""
    if not given:
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
    how = "genai.Client(api_key=SECRET) or x-goog-api-key: SECRET" if wire == "gemini" else "OpenAI(api_key=SECRET), sent as Authorization: Bearer SECRET"
    if not given:
        raise ApiError(401, "AccessDeniedException", f"The request has no API key; this server checks keys: send a secret of its --auth-keys file as the API key ({how}).")
    # Every secret is compared, in constant time, so the reply's timing tells nothing of which came close.
    matched = [hmac.compare_digest(given.encode(), secret.encode()) for secret in keys.values()]
    if not any(matched):
        raise ApiError(401, "AccessDeniedException", "The API key is not one of this server's keys (the secrets of its --auth-keys file).")


# --- submitting -------------------------------------------------------------------------------


def describe_bytes(data: bytes, mime: str | None = None) -> dict[str, Any]:
    """What a wire request keeps of uploaded bytes: their size and digest, never the bytes."""
    out: dict[str, Any] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if mime:
        out["mimeType"] = mime
    return out


def renamed(exc: RequestError, names: dict[str, str]) -> RequestError:
    """``exc`` naming the wire's field for the runtime's (``names``: runtime field prefix -> wire field)."""
    for prefix, wire_field in names.items():
        if exc.field == prefix or exc.field.startswith((prefix + ".", prefix + "[")):
            return type(exc)(wire_field, exc.message)
    return exc


def output_location(state) -> str:
    """Where a wire job's files go: the server's default output (S3 or --bucket-dir), else its data dir."""
    settings = state.settings
    if settings.advertised_output:
        return settings.advertised_output
    return str(Path(settings.data_dir) / "outputs") if settings.data_dir else str(config.output_dir())


def makes_sound(model_id: str) -> bool:
    """Whether the model that renders ``model_id``'s jobs makes a sound track (a diffusers family with audio out: LTX-2).

    Asked of the model that would serve a job recorded now (REELFORGE_NOVA_BACKEND included);
    a setting that cannot be read counts as silent here, and the submit reports it."""
    from reelforge.engines.diffusers.families import FAMILIES, KNOWN_MODELS

    try:
        served = serving(get_model(model_id))
    except (EngineError, UnknownModelError):
        return False
    if served.engine != "diffusers":
        return False
    known = KNOWN_MODELS.get(cast(str, served.options.get("model")))
    family = FAMILIES.get(served.options.get("family") or (known.family if known else ""))
    return bool(family and family.audio)


async def submit(state, model_id: str, request: VideoRequest, *, wire: str, wire_request: dict[str, Any],
                 fields: dict[str, str], client_token: str | None = None, tags=None, prepare=None,
                 audio: bool = True) -> tuple[JobRecord, bool]:
    """Record a wire's job through the runtime; RequestErrors name the wire's fields (``fields``).

    ``audio=False``: a silent video even from a model that makes sound (the job's audio column)."""
    try:
        return await run_in_threadpool(
            state.runtime.submit, model_id, request, output_location(state),
            client_token=client_token, tags=tags, wire=wire, wire_request=wire_request, prepare=prepare, audio=audio,
        )
    except RequestError as exc:
        raise renamed(exc, fields) from None


# --- reading jobs -----------------------------------------------------------------------------


def output_bytes(record: JobRecord, name: str = layout.VIDEO) -> bytes:
    return storage_for(record.storage_uri).get_bytes(join(record.storage_uri, name))
