"""Does an image tag exist? One `HEAD` on the OCI Distribution API, never a pull.

`image_exists("registry.example.com/apps/web", "1.4.2", settings)` asks
`HEAD /v2/apps/web/manifests/1.4.2` with every manifest media type in `Accept` (a
registry answers 404 for an OCI image when the OCI types are missing). It answers the
registry's challenges: `WWW-Authenticate: Bearer realm=...,service=...,scope=...` by
fetching a pull token from the realm, `Basic` by sending the credentials directly.

Credentials, first found wins: explicit ones passed by the caller; the environment
variables the fleet file names (`registry.username_env` / `password_env`); the Docker
config file (`registry.auth_file`, else `$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`; its `auths` entries, `auth` being base64 of `user:password`).

TLS: `registry.ca_file` is the CA that verifies the registry; `registry.insecure` skips
verification and allows plain HTTP after HTTPS fails, as Docker does for an insecure
registry (and, without a CA file, for a loopback one) - for a loopback registry, or for
the one host the fleet file names (`insecure: HOST[:PORT]`). Credentials never go over
plain HTTP to another machine: a Basic challenge over HTTP from a non-loopback host, or
a token service there, is answered with a refusal, not the password. Every request has
the configured timeout. Results and errors never contain a credential.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from console.config import RegistryConfig, image_registry_host, is_loopback_host

# Every manifest type a tag may point at: OCI index and manifest, Docker list and v2.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
DEFAULT_TIMEOUT = 10.0
DOCKER_HUB = "registry-1.docker.io"
# The names Docker uses for Hub in config.json `auths`.
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", DOCKER_HUB)
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class ImageCheck:
    """The answer for one image: `ok` when the tag exists; `detail` says what was seen."""

    ok: bool
    detail: str
    digest: str | None = None  # the manifest digest, when the registry sent it
    status: int | None = None  # the final HTTP status, None when no answer came


@dataclass(frozen=True)
class Reference:
    """An image repository split into registry host (with port) and repository name."""

    host: str
    name: str

    @classmethod
    def parse(cls, image: str) -> Reference:
        """`registry.example.com/apps/web` -> (`registry.example.com`, `apps/web`); Docker Hub rules."""
        host = image_registry_host(image)
        if host is not None:
            return cls(host, image.partition("/")[2])
        name = image if "/" in image else f"library/{image}"
        return cls(DOCKER_HUB, name)

    def display(self, tag: str) -> str:
        """`host/name:tag`, as a user would write it."""
        return f"{self.host}/{self.name}:{tag}"


def image_exists(image_ref: str, tag: str, settings: RegistryConfig | None = None, *,
                 credentials: tuple[str, str] | None = None) -> ImageCheck:
    """Whether `image_ref:tag` exists in its registry (HEAD on the manifest).

    `settings` is the fleet's `RegistryConfig` (ca_file, insecure, username_env,
    password_env, auth_file, timeout), None for the defaults; `credentials` an explicit
    (username, password) that wins over every other source.
    """
    from console.errors import ValidationError
    from console.names import validate_tag

    settings = settings or RegistryConfig()
    ref = Reference.parse(image_ref)
    shown = ref.display(tag)
    try:
        validate_tag(tag)
    except ValidationError as exc:
        # The tag goes into the URL path: never send one the registry grammar forbids.
        return ImageCheck(False, str(exc))
    timeout = settings.timeout or DEFAULT_TIMEOUT
    auth = credentials or find_credentials(ref.host, settings)
    loopback = is_loopback_host(ref.host)
    skip_verify = settings.insecure and (loopback or ref.host == settings.insecure_host)
    if settings.insecure and not skip_verify:
        return ImageCheck(False, f"{shown}: registry.insecure does not apply to {ref.host} "
                          "(only to a loopback registry or the host it names)")
    # Docker's rule: a loopback registry may answer over plain HTTP or unverified TLS -
    # unless a CA file is configured, which is then used to verify it.
    plain_ok = skip_verify or loopback
    verify: ssl.SSLContext | bool = False if skip_verify else _verify(settings.ca_file, plain_ok)
    last_error = ""
    for scheme in ("https", "http") if plain_ok else ("https",):
        try:
            with httpx.Client(timeout=timeout, verify=verify, follow_redirects=True) as client:
                return _probe(client, f"{scheme}://{ref.host}", ref, tag, auth, shown)
        except httpx.TimeoutException:
            last_error = f"no answer within {timeout:g} s"
        except httpx.TransportError as exc:
            last_error = _transport_problem(exc)
    return ImageCheck(False, f"{shown}: registry {ref.host} unreachable ({last_error})")


def _verify(ca_file: Path | None, loopback: bool) -> ssl.SSLContext | bool:
    if ca_file:
        return ssl.create_default_context(cafile=str(ca_file))
    return not loopback


def _private_channel(url: str) -> bool:
    """Whether credentials may be sent to `url`: over HTTPS, or to this machine."""
    parts = urlsplit(url)
    return parts.scheme == "https" or is_loopback_host(parts.netloc)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The `ssl.SSLError` under `exc` (httpx wraps httpcore's, which wraps the ssl
    module's), if any - decided by type, never by the message's words."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _transport_problem(exc: httpx.TransportError) -> str:
    cause = _ssl_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return "TLS verification failed; set registry.ca_file"
    if cause is not None:
        # Not the certificate: the handshake itself (a plain-HTTP port, an old protocol).
        return f"TLS handshake failed ({cause.reason or type(cause).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unknown"
    return type(exc).__name__


def _probe(client: httpx.Client, base: str, ref: Reference, tag: str,
           auth: tuple[str, str] | None, shown: str) -> ImageCheck:
    url = f"{base}/v2/{ref.name}/manifests/{tag}"
    headers = {"Accept": ACCEPT}
    response = client.head(url, headers=headers)
    if response.status_code == 401:
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        scheme = challenge.get("scheme", "")
        if scheme == "bearer" and challenge.get("realm"):
            token, problem = _bearer_token(client, challenge, ref, auth)
            if token is None:
                return ImageCheck(False, f"{shown}: {problem}", status=401)
            response = client.head(url, headers={**headers, "Authorization": f"Bearer {token}"})
        elif scheme == "basic" and auth:
            if not _private_channel(base):
                return ImageCheck(False, f"{shown}: not sending credentials over plain HTTP to "
                                  f"{ref.host} (serve the registry over HTTPS)", status=401)
            response = client.head(url, headers=headers, auth=httpx.BasicAuth(*auth))
    return _verdict(response, shown, auth)


def _verdict(response: httpx.Response, shown: str, auth: tuple[str, str] | None) -> ImageCheck:
    status = response.status_code
    if status == 200:
        digest = response.headers.get("docker-content-digest")
        # The short digest is enough to tell images apart in a table; `digest` has it all.
        short = f" ({digest[:19]}...)" if digest and len(digest) > 19 else \
            (f" ({digest})" if digest else "")
        return ImageCheck(True, f"{shown} exists{short}",
                          digest=digest, status=status)
    if status == 404:
        return ImageCheck(False, f"{shown} not found in the registry", status=status)
    if status in (401, 403):
        why = "the registry refused the credentials" if auth else \
            "the registry needs credentials (set registry.username_env/password_env or docker login)"
        return ImageCheck(False, f"{shown}: {why} ({status})", status=status)
    return ImageCheck(False, f"{shown}: the registry answered {status}", status=status)


def parse_challenge(header: str) -> dict[str, str]:
    """`Bearer realm="...",service="..."` -> {"scheme": "bearer", "realm": ..., "service": ...}."""
    scheme, _, params = header.strip().partition(" ")
    result = {"scheme": scheme.lower()}
    for match in _CHALLENGE_PARAM.finditer(params):
        result[match.group(1).lower()] = match.group(2) if match.group(2) is not None \
            else match.group(3)
    return result


def _bearer_token(client: httpx.Client, challenge: dict[str, str], ref: Reference,
                  auth: tuple[str, str] | None) -> tuple[str | None, str]:
    """A pull token from the challenge's realm (anonymous when there are no credentials)."""
    realm = challenge["realm"]
    params = {"scope": challenge.get("scope") or f"repository:{ref.name}:pull"}
    if challenge.get("service"):
        params["service"] = challenge["service"]
    realm_parts = urlsplit(realm)
    # Credentials go to the realm only over HTTPS or to this machine: a challenge must
    # not be able to send them in clear text to another one.
    send_auth = auth is not None and _private_channel(realm)
    if auth is not None and not send_auth:
        return None, (f"not sending credentials to the token service {realm_parts.netloc} "
                      "over plain HTTP")
    try:
        answer = client.get(realm, params=params,
                            auth=httpx.BasicAuth(*auth) if send_auth and auth else None)
    except httpx.TimeoutException:
        return None, f"the token service {realm_parts.netloc} did not answer in time"
    except httpx.TransportError as exc:
        return None, f"the token service {realm_parts.netloc} is unreachable ({_transport_problem(exc)})"
    if answer.status_code in (401, 403):
        return None, (f"the token service {realm_parts.netloc} refused "
                      f"{'the credentials' if send_auth else 'an anonymous pull'} ({answer.status_code})")
    if answer.status_code != 200:
        return None, f"the token service {realm_parts.netloc} answered {answer.status_code}"
    try:
        body = answer.json()
    except ValueError:
        return None, f"the token service {realm_parts.netloc} answered no JSON"
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        return None, f"the token service {realm_parts.netloc} sent no token"
    return token, ""


def find_credentials(host: str, settings: RegistryConfig) -> tuple[str, str] | None:
    """(username, password) for `host` from the configured env vars or the Docker config file."""
    user_env, pass_env = settings.username_env, settings.password_env
    if user_env and pass_env and os.environ.get(user_env) and os.environ.get(pass_env):
        return os.environ[user_env], os.environ[pass_env]
    return _docker_config_auth(_docker_config_path(settings), host)


def _docker_config_path(settings: RegistryConfig) -> Path:
    if settings.auth_file:
        return Path(settings.auth_file).expanduser()
    docker_dir = os.environ.get("DOCKER_CONFIG")
    if docker_dir:
        return Path(docker_dir).expanduser() / "config.json"
    return Path("~/.docker/config.json").expanduser()


def _docker_config_auth(path: Path, host: str) -> tuple[str, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = _DOCKER_HUB_KEYS if host == DOCKER_HUB else (host,)
    for key, entry in auths.items():
        if _auth_key_host(key) not in wanted and key not in wanted or not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        try:
            user, sep, password = base64.b64decode(str(entry.get("auth", ""))).decode().partition(":")
        except (binascii.Error, ValueError):
            continue
        if sep and user:
            return user, password
    return None


def _auth_key_host(key: str) -> str:
    """`https://registry.example.com/v1/` -> `registry.example.com` (config.json keys vary)."""
    return urlsplit(key if "://" in key else f"//{key}").netloc
