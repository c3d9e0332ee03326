"""Signed thumbnail URLs (THUMBPROXY_SIGNING_KEY): sig= is an HMAC-SHA256 of the path and the sorted query.

The message signed is `<canonical path>?<canonical query>`, ASCII, so that every spelling of one
request signs alike and no two requests the server tells apart do:

- canonical path: the percent-encoded path of the request line, split on `/`; each segment is
  percent-decoded to bytes and re-encoded with `urllib.parse.quote(segment, safe="")`, and the
  segments are joined with `/` again (`%7E` and `~` are the same, `%2F` and `/` are not);
- canonical query: every parameter except `sig`, read as the server reads it (split on `&`, empty
  pieces skipped, no `=` means an empty value, `+` is a space), name and value percent-decoded to
  bytes and re-encoded like a path segment, sorted by (name, value) as ASCII strings, repeats and
  blank values kept, joined as `name=value` with `&`.

sig is the URL-safe base64 of the 32-byte digest without `=` padding (43 characters); the padded
form (one trailing `=`) is accepted too. A query must carry exactly one sig.
"""

import base64
import hashlib
import hmac
import string
from urllib.parse import quote, unquote_to_bytes, urlsplit

# What urllib.parse.quote never encodes: text made of these alone is already canonical.
ALWAYS_SAFE = string.ascii_letters + string.digits + "_.-~"


def _canonical(text: str, plus_is_space: bool) -> str:
    """Percent-decoded to bytes and re-encoded with quote(safe=""); `+` is a space in a query, as parse_qsl reads it."""
    if not text.strip(ALWAYS_SAFE):
        # The common case (image=true, width=300) needs no decoding.
        return text
    return quote(unquote_to_bytes(text.replace("+", " ") if plus_is_space else text), safe="")


def _read_query(path: str, raw_query: str) -> tuple[list[str], bytes]:
    """The canonical sig values of the query, and the message signed (see the module docstring)."""
    sigs: list[str] = []
    pairs: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            name, value = _canonical(name, True), _canonical(value, True)
            if name == "sig":
                sigs.append(value)
            else:
                pairs.append((name, value))
    pairs.sort()
    canonical_path = "/".join(_canonical(segment, False) for segment in path.split("/"))
    return sigs, f"{canonical_path}?{'&'.join(f'{name}={value}' for name, value in pairs)}".encode("ascii")


def _signature(key: bytes, message: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.digest(key, message, hashlib.sha256)).rstrip(b"=").decode("ascii")


class UrlSigner:
    """Signs with the first of its keys and accepts a signature made with any of them (key rotation)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("a URL signer needs at least one key")
        self._keys = tuple(key.encode("utf-8") for key in keys)
        self._signing_key = keys[0]

    def sign(self, path: str, raw_query: str) -> str:
        """The sig value for this percent-encoded path and raw query (any sig in it is left out)."""
        return _signature(self._keys[0], _read_query(path, raw_query)[1])

    def sign_url(self, url: str) -> str:
        """The URL with sig= made with the first key (see signed_url)."""
        return signed_url(url, self._signing_key)

    def verify(self, path: str, raw_query: str) -> bool:
        """True when the query carries exactly one sig and it is the signature under one of the keys."""
        sigs, message = _read_query(path, raw_query)
        if len(sigs) != 1:
            return False
        # The padded form of the digest ends in one `=`, canonically %3D.
        given = sigs[0].removesuffix("%3D")
        # Compared as text, so only the one canonical encoding of a digest (and its padded form) is accepted.
        return any(hmac.compare_digest(given, _signature(key, message)) for key in self._keys)


def signed_url(url: str, key: str) -> str:
    """The URL with sig= made with this key at the end of its query; any sig it had is dropped.

    The URL is absolute (`https://host/123/?image=true`) or a path (`/123/?image=true`); the rest of
    it is kept as written.
    """
    head, hash_mark, fragment = url.partition("#")
    location, _, raw_query = head.partition("?")
    # The request line of an absolute URL without a path asks for `/`.
    parts = urlsplit(location)
    path = parts.path or ("/" if parts.netloc else "")
    if not path.startswith("/"):
        raise ValueError(f"{url!r} is neither an absolute URL nor a path starting with /")
    kept = [piece for piece in raw_query.split("&") if piece and _canonical(piece.partition("=")[0], True) != "sig"]
    sig = UrlSigner((key,)).sign(path, "&".join(kept))
    return f"{location}?{'&'.join([*kept, f'sig={sig}'])}{hash_mark}{fragment}"
