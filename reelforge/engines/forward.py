"""Which model ids run somewhere else: ``--forward`` / ``REELFORGE_FORWARD``, the one place forwarding is configured.

An entry is ``MODEL_ID=KIND:URL`` with optional parts::

    MODEL_ID=bedrock:URL[;option=value...]
    MODEL_ID=openai-videos:URL[#UPSTREAM_MODEL][;option=value...]

``URL`` is ``aws`` (Amazon's own endpoint for the configured region; bedrock only) or an
``http(s)://`` base URL (another reelforge, vLLM-Omni, SGLang Diffusion, FastVideo...). Options:
``concurrency=N`` (jobs followed upstream at once, default 4), ``key-env=VAR`` (the environment
variable holding the upstream's API key; openai-videos), ``region=R`` and ``output=s3://bucket/prefix``
(bedrock: the region and the S3 location the upstream writes to), ``usd-per-s=PRICE@DATE`` (the
upstream's price per generated second as of DATE, for ``--dry-run``). ``--forward`` is repeatable; in
``REELFORGE_FORWARD`` entries are separated by spaces; a flag's entry replaces the variable's for the
same id.

Where a job goes is fixed when it is recorded (:meth:`Forward.route`, kept with the job); a worker's
own entries for the same id may only add credentials and limits (:meth:`Forward.overlay`).
Secrets never appear in an entry: ``key-env`` names a variable, AWS credentials come from boto3's chain.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

from reelforge.errors import ConfigError
from reelforge.storage.uri import S3_URI

ENV = "REELFORGE_FORWARD"
KINDS = ("bedrock", "openai-videos")
AWS = "aws"
DEFAULT_CONCURRENCY = 4
FORMS = (
    "MODEL_ID=bedrock:URL or MODEL_ID=openai-videos:URL#UPSTREAM_MODEL, URL being aws (bedrock only) or http(s)://host[:port][/path], "
    "options after ';': concurrency=N, key-env=VAR, region=R, output=s3://bucket/prefix, usd-per-s=PRICE@YYYY-MM-DD"
)
OPTIONS = {"concurrency", "key-env", "region", "output", "usd-per-s"}
_MODEL_ID = re.compile(r"[a-zA-Z0-9_.\-/:]{1,256}")
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REGION = re.compile(r"[a-z0-9-]{1,20}")


@dataclass(frozen=True)
class Forward:
    model_id: str
    kind: str  # bedrock | openai-videos
    url: str  # "aws" or an http(s) base URL without a trailing '/'
    upstream_model: str  # the id or name sent upstream
    concurrency: int = DEFAULT_CONCURRENCY
    key_env: str | None = None
    region: str | None = None
    output: str | None = None
    usd_per_s: tuple[float, str] | None = None  # (price per generated second, as of YYYY-MM-DD), configured

    @property
    def entry(self) -> str:
        """The entry as it would be written (no secrets are ever in it)."""
        text = f"{self.model_id}={self.kind}:{self.url}"
        if self.kind == "openai-videos" and self.upstream_model != self.model_id:
            text += f"#{self.upstream_model}"
        opts = [f"concurrency={self.concurrency}"] if self.concurrency != DEFAULT_CONCURRENCY else []
        opts += [f"{k}={v}" for k, v in (("key-env", self.key_env), ("region", self.region), ("output", self.output)) if v]
        opts += [f"usd-per-s={self.usd_per_s[0]:g}@{self.usd_per_s[1]}"] if self.usd_per_s else []
        return ";".join([text, *opts])

    def route(self) -> dict[str, Any]:
        """What is recorded with a job at submit: where it goes (never credentials)."""
        out = {"kind": self.kind, "url": self.url, "upstreamModel": self.upstream_model}
        if self.region:
            out["region"] = self.region
        if self.output:
            out["output"] = self.output
        return out

    @classmethod
    def from_route(cls, model_id: str, route: dict[str, Any]) -> "Forward":
        return cls(model_id, route["kind"], route["url"], route["upstreamModel"], region=route.get("region"), output=route.get("output"))

    def overlay(self, own: "Forward | None") -> "Forward":
        """This (recorded) forward with a worker's own entry's credentials and limits; its destination stays."""
        if own is None:
            return self
        return replace(self, concurrency=own.concurrency, key_env=own.key_env or self.key_env, usd_per_s=own.usd_per_s or self.usd_per_s)

    def same_place(self, other: "Forward") -> bool:
        return (self.kind, self.url, self.upstream_model) == (other.kind, other.url, other.upstream_model)

    def upstream_key(self) -> str:
        """The upstream this forward's jobs share a concurrency limit and a poller with."""
        return f"{self.kind}:{self.url}#{self.region or ''}"


def parse_entry(text: str, where: str = "--forward") -> Forward:
    """One entry; ConfigError naming ``where`` (the flag or variable) and the allowed forms."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{where}: {text[:200]!r} {why}; allowed forms: {FORMS}")

    model_id, sep, rest = text.strip().partition("=")
    if not sep or not model_id:
        raise bad("is not MODEL_ID=KIND:URL")
    if not _MODEL_ID.fullmatch(model_id):
        raise bad("has a model id with characters other than letters, digits and _.-/:")
    head, *opts = rest.split(";")
    kind, sep, url = head.partition(":")
    if not sep or kind not in KINDS:
        raise bad(f"names kind {kind[:40]!r}; allowed kinds: {', '.join(KINDS)}")
    url, _, upstream = url.partition("#")
    if kind == "bedrock" and upstream:
        raise bad("gives #UPSTREAM_MODEL, which only openai-videos takes (bedrock forwards the model id itself)")
    if url == AWS:
        if kind != "bedrock":
            raise bad("uses URL aws, which only bedrock takes (an openai-videos upstream needs its http(s):// base URL)")
    else:
        u = urlparse(url)
        if u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment:
            raise bad(f"has URL {url[:100]!r}; write aws or http(s)://host[:port][/path]")
        url = url.rstrip("/")
    values, concurrency, price = _options(opts, bad)
    return Forward(model_id, kind, url, upstream or model_id, concurrency, values.get("key-env"), values.get("region"),
                   values.get("output", "").rstrip("/") or None, price)


def _options(opts: list[str], bad: Callable[[str], ConfigError]) -> tuple[dict[str, str], int, tuple[float, str] | None]:
    """The ``;name=value`` options of an entry, checked: (every value by name, concurrency, price and its date)."""
    values: dict[str, str] = {}
    for opt in opts:
        name, sep, value = opt.partition("=")
        if not sep or name not in OPTIONS or not value:
            raise bad(f"has option {opt[:60]!r}; allowed options: {', '.join(sorted(OPTIONS))}, each as name=value")
        values[name] = value
    concurrency = DEFAULT_CONCURRENCY
    if "concurrency" in values:
        if not values["concurrency"].isdigit() or not 1 <= int(values["concurrency"]) <= 1000:
            raise bad("has concurrency that is not a whole number from 1 to 1000")
        concurrency = int(values["concurrency"])
    if "key-env" in values and not _VAR.fullmatch(values["key-env"]):
        raise bad("has key-env that is not an environment variable name")
    if "region" in values and not _REGION.fullmatch(values["region"]):
        raise bad("has a region other than lowercase letters, digits and '-'")
    if "output" in values and not S3_URI.fullmatch(values["output"]):
        raise bad("has output that is not s3://bucket/prefix")
    price = None
    if "usd-per-s" in values:
        m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)@([0-9]{4}-[0-9]{2}-[0-9]{2})", values["usd-per-s"])
        if not m:
            raise bad("has usd-per-s that is not PRICE@YYYY-MM-DD (USD per generated second, and the date it was checked)")
        price = (float(m.group(1)), m.group(2))
    return values, concurrency, price


@dataclass(frozen=True)
class Forwards:
    """Every forward entry of a process, by model id."""

    entries: dict[str, Forward]

    @classmethod
    def parse(cls, texts: Iterable[str], where: str = "--forward") -> "Forwards":
        entries: dict[str, Forward] = {}
        for text in texts:
            if text.strip():
                f = parse_entry(text, where)
                entries[f.model_id] = f
        return cls(entries)

    @classmethod
    def from_env(cls, flags: Iterable[str] = (), environ=os.environ) -> "Forwards":
        """REELFORGE_FORWARD's entries, then the ``--forward`` flags' (which win for the same id)."""
        env = cls.parse(environ.get(ENV, "").split(), ENV)
        return cls({**env.entries, **cls.parse(flags).entries})

    def get(self, model_id: str) -> Forward | None:
        return self.entries.get(model_id)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def describe(self, with_urls: bool) -> list[dict[str, Any]]:
        """For `reelforge models` and /reelforge/health: model ids and engine kinds; URLs only when asked."""
        out = []
        for f in self.entries.values():
            d: dict[str, Any] = {"modelId": f.model_id, "engine": f.kind}
            if with_urls:
                d.update(url=f.url, upstreamModel=f.upstream_model, concurrency=f.concurrency)
            out.append(d)
        return out
