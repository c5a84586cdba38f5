"""URLs of browser history: the canonical form of a page and why a URL is not imported."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit

TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "yclid", "_ga", "_gl",
    "ref_src", "ref_url", "igshid", "_hsenc", "_hsmi", "mkt_tok", "vero_id", "oly_enc_id", "oly_anon_id",
    "spm", "s_cid", "wt.mc_id",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEB_SCHEMES = frozenset({"http", "https"})


def _is_tracking_param(name: str) -> bool:
    key = unquote(name).strip().lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def normalize_url(url: str) -> str | None:
    """The canonical form of an http(s) URL, or None when it has no usable host.

    Scheme and host are lowercased, user info, default ports, the fragment and
    tracking parameters (``utm_*``, ``fbclid``, ``gclid`` …) are dropped; the
    other query parameters keep their order and exact text. An empty path
    becomes ``/``.

    Parameters
    ----------
    url : str
        An absolute URL.

    Returns
    -------
    str or None
        The normalised URL, or None for a malformed one.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if not scheme or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    query = "&".join(p for p in parts.query.split("&") if p and not _is_tracking_param(p.split("=", 1)[0]))
    return f"{scheme}://{netloc}{parts.path or '/'}" + (f"?{query}" if query else "")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def url_skip_reason(url: str | None) -> tuple[str | None, str | None]:
    """(normalised URL, None) for an importable URL, else (None, skip reason).

    The reasons are ``invalid_url`` (missing, no scheme, no host, bad port) and ``internal`` (not
    http(s), or a loopback host); see :mod:`vane.client.history`.
    """
    if not isinstance(url, str) or not url.strip():
        return None, "invalid_url"
    scheme = urlsplit(url.strip()).scheme.lower()
    if not scheme:
        return None, "invalid_url"
    if scheme not in _WEB_SCHEMES:
        return None, "internal"
    normalized = normalize_url(url)
    if normalized is None:
        return None, "invalid_url"
    if _is_loopback(urlsplit(normalized).hostname or ""):
        return None, "internal"
    return normalized, None
