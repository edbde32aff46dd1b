"""SigV4 verification of the signatures boto3 already sends, computed with botocore's own signer.

The request is rebuilt from the raw path and raw query string (not the decoded ones, or the
canonical URI differs), the body bytes and only the headers the client signed; botocore's
``SigV4Auth`` then gives the signature it would have made, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from reelforge.server.errors import access_denied

SERVICE = "bedrock"
MAX_SKEW_S = 15 * 60  # what AWS allows
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/aws4_request\s*,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9\-;]+)\s*,\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)


def load_keys(path: str | os.PathLike | None = None, env: str | None = None) -> dict[str, str]:
    """Access keys from a file and/or an env value: ``AKID:SECRET`` pairs, one a line or comma-separated."""
    text = ""
    if path:
        text += Path(path).read_text() + "\n"
    if env:
        text += env.replace(",", "\n")
    keys = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        akid, sep, secret = line.partition(":")
        if not sep or not akid.strip() or not secret.strip():
            raise ValueError(f"auth keys line {n}: write ACCESS_KEY_ID:SECRET_ACCESS_KEY")
        keys[akid.strip()] = secret.strip()
    return keys


def credential_region(authorization: str | None) -> str | None:
    """The region in a SigV4 credential scope (boto3's ``region_name``), used to build ARNs."""
    m = _AUTH.match(authorization or "")
    return m.group("region") if m else None


def verify(scope: dict, body: bytes, keys: dict[str, str], now: datetime | None = None) -> str:
    """Check the request's SigV4 signature against ``keys``; return the access key id or raise 403."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    auth = headers.get("authorization")
    if not auth:
        raise access_denied("Missing Authentication Token: this server verifies AWS Signature Version 4; sign the request.")
    m = _AUTH.match(auth)
    if not m:
        raise access_denied("The Authorization header is not an AWS4-HMAC-SHA256 signature.")
    if m.group("service") != SERVICE:
        raise access_denied(f"Credential should be scoped to correct service: '{SERVICE}'.")
    secret = keys.get(m.group("akid"))
    if secret is None:
        raise access_denied("The security token included in the request is invalid.")
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise access_denied("The request needs an X-Amz-Date header (YYYYMMDDTHHMMSSZ).") from None
    skew = abs(((now or datetime.now(timezone.utc)) - when).total_seconds())
    if skew > MAX_SKEW_S or stamp[:8] != m.group("date"):
        raise access_denied("Signature expired or not yet valid: the request time is more than 15 minutes from the server's time.")
    signed = m.group("signed").split(";")
    if "host" not in signed:
        raise access_denied("The signature must cover the host header.")
    missing = [h for h in signed if h not in headers]
    if missing:
        raise access_denied(f"Signed header {missing[0]!r} is missing from the request.")
    if "x-amz-content-sha256" in signed:
        # botocore's signer takes this header as the payload hash when present; trusting it would
        # let a signature cover a body other than the one sent. It must be the real body's hash.
        claimed = headers["x-amz-content-sha256"].strip().lower()
        if claimed != hashlib.sha256(body).hexdigest():  # both are public: no constant-time compare needed
            raise access_denied(
                "The x-amz-content-sha256 header does not match the SHA-256 of the request body "
                "(this server needs the body's hex digest; UNSIGNED-PAYLOAD and streaming payloads are not accepted)."
            )
    query = scope.get("query_string", b"").decode("latin-1")
    url = f"http://{headers['host']}{scope.get('raw_path', scope['path'].encode()).decode('latin-1')}" + (f"?{query}" if query else "")
    req = AWSRequest(method=scope["method"], url=url, data=body, headers={h: headers[h] for h in signed})
    req.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(m.group("akid"), secret), SERVICE, m.group("region"))
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(expected, m.group("sig")):
        raise access_denied(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return m.group("akid")
