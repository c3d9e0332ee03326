"""Signed URLs: a sig= that binds the path and every parameter, under any of the configured keys."""

import base64
import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from thumbproxy.web.signing import UrlSigner, signed_url

OLD_KEY = "old-key-0123456789"
NEW_KEY = "new-key-9876543210"
URL = "/123/?image=true&width=300&label=M%2042"


def _verifies(url: str, *keys: str) -> bool:
    """What the server decides for this URL's request line, with these keys configured."""
    path, _, query = url.partition("?")
    return UrlSigner(keys).verify(path, query)


def _sig(url: str) -> str:
    return url.rpartition("sig=")[2]


def test_a_signed_url_verifies_and_keeps_everything_else() -> None:
    signed = signed_url(URL, NEW_KEY)
    assert signed.startswith(URL + "&sig=") and _verifies(signed, NEW_KEY)
    path, _, query = URL.partition("?")
    assert UrlSigner((NEW_KEY,)).sign(path, query) == _sig(signed)


def test_the_signature_is_the_documented_hmac() -> None:
    # The scheme written down for other implementations: canonical path, "?", sorted canonical query.
    message = b"/123/?image=true&label=M%2042&width=300"
    digest = hmac.new(NEW_KEY.encode(), message, hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert _sig(signed_url("/123/?width=300&label=M+42&image=true", NEW_KEY)) == expected
    assert len(expected) == 43


@pytest.mark.parametrize(
    "tampered",
    [
        lambda url: url.replace("width=300", "width=301"),
        lambda url: url.replace("label=M%2042", "label=M%2043"),
        lambda url: url + "&median=true",
        lambda url: url.replace("image=true&", "image=true&width=300&"),
        lambda url: url.replace("width=300&", ""),
        lambda url: url.replace("label=M%2042&", "label=&"),
        lambda url: url.replace("label=M%2042&", "label&"),
        lambda url: url.replace("/123/", "/124/"),
        lambda url: url.replace("/123/", "/123"),
        lambda url: url.replace("/123/", "/ogg-123/"),
        lambda url: url.replace("label=M%2042", "label=M/42"),
        lambda url: url[:-1],
        lambda url: url[:-10],
        lambda url: url + "A",
        lambda url: url + "&sig=" + _sig(url),
        lambda url: url.replace("&sig=", "&sig=" + _sig(url) + "&sig="),
        lambda url: url.replace("sig=", "other="),
        lambda url: url.rpartition("&sig=")[0],
        lambda url: url.rpartition("&sig=")[0] + "&sig=",
        lambda url: url.rpartition("&sig=")[0] + "&sig=!!!not-base64!!!",
        lambda url: url.rpartition("&sig=")[0] + "&sig=" + _sig(url).upper(),
        lambda url: url.rpartition("&sig=")[0] + "&sig=" + _sig(signed_url(URL, OLD_KEY)),
    ],
    ids=[
        "value",
        "encoded value",
        "added",
        "repeated",
        "removed",
        "blanked",
        "bare",
        "path",
        "slash",
        "basename",
        "decoded slash",
        "truncated sig",
        "short sig",
        "longer sig",
        "sig twice",
        "two sigs",
        "no sig name",
        "no sig",
        "empty sig",
        "not base64",
        "case",
        "other key",
    ],
)
def test_every_tampering_is_refused(tampered: Callable[[str], str]) -> None:
    signed = signed_url(URL, NEW_KEY)
    assert _verifies(signed, NEW_KEY)
    assert not _verifies(tampered(signed), NEW_KEY)


def test_slashes_and_encoded_slashes_are_told_apart() -> None:
    assert not _verifies(signed_url("/a/b/?image=true", NEW_KEY).replace("/a/b/", "/a%2Fb/"), NEW_KEY)
    assert not _verifies(signed_url("/x/?label=a%26b", NEW_KEY).replace("a%26b", "a&b"), NEW_KEY)
    assert not _verifies(signed_url("/x/?label=a%2Bb", NEW_KEY).replace("a%2Bb", "a+b"), NEW_KEY)


@pytest.mark.parametrize(
    "variant",
    [
        "/123/?label=M%2042&width=300&image=true",
        "/123/?width=300&image=true&label=M+42",
        "/123/?image=true&width=300&label=M 42",
        "/123/?%69mage=true&width=%33%30%30&label=M%2042",
        "/123/?image=true&&width=300&label=M%2042&",
        "/%31%323/?image=true&width=300&label=M%2042",
    ],
)
def test_order_and_percent_encoding_variants_verify(variant: str) -> None:
    sig = _sig(signed_url(URL, NEW_KEY))
    assert _verifies(f"{variant}&sig={sig}", NEW_KEY)
    assert _verifies(f"/123/?sig={sig}&{variant.partition('?')[2]}", NEW_KEY)


def test_tilde_and_escapes_sign_alike_and_padding_is_accepted() -> None:
    signed = signed_url("/x/?label=%7Ea%e2%82%ac", NEW_KEY)
    for spelling in ("/x/?label=~a%E2%82%AC", "/x/?label=~a€", "/%78/?%6C%61bel=%7e%61%E2%82%ac"):
        assert _sig(signed_url(spelling, NEW_KEY)) == _sig(signed)
    assert _verifies(signed + "=", NEW_KEY) and _verifies(signed + "%3D", NEW_KEY)
    assert not _verifies(signed + "==", NEW_KEY)


def test_repeated_and_blank_parameters_are_kept_in_the_message() -> None:
    signed = signed_url("/x/?a=2&a=1&b=", NEW_KEY)
    assert _verifies(signed.replace("a=2&a=1", "a=1&a=2"), NEW_KEY)
    assert not _verifies(signed.replace("a=2&a=1", "a=1"), NEW_KEY)
    assert not _verifies(signed.replace("&b=", ""), NEW_KEY)


def test_key_rotation() -> None:
    old = signed_url(URL, OLD_KEY)
    assert _verifies(old, NEW_KEY, OLD_KEY) and _verifies(old, OLD_KEY, NEW_KEY)
    assert not _verifies(old, NEW_KEY)
    # The first key signs, so new URLs survive the old key's removal.
    path, _, query = URL.partition("?")
    new_sig = UrlSigner((NEW_KEY, OLD_KEY)).sign(path, query)
    assert _verifies(f"{URL}&sig={new_sig}", NEW_KEY)


def test_absolute_urls_sign_their_path_and_keep_host_and_fragment() -> None:
    signed = signed_url("https://thumbs.example.org/123/?image=true&width=300&label=M%2042#top", NEW_KEY)
    assert signed == f"https://thumbs.example.org{signed_url(URL, NEW_KEY)}#top"
    assert _sig(signed_url("https://thumbs.example.org", NEW_KEY)) == _sig(signed_url("/", NEW_KEY))
    # Signing again replaces the old sig instead of adding a second one.
    assert signed_url(signed_url(URL, OLD_KEY), NEW_KEY) == signed_url(URL, NEW_KEY)
    with pytest.raises(ValueError):
        signed_url("123/?image=true", NEW_KEY)
    with pytest.raises(ValueError):
        UrlSigner(())


def _thumbproxy_sign(*arguments: str, key_env: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("THUMBPROXY_")}
    env["THUMBPROXY_SIGNING_KEY"] = key_env
    return subprocess.run(
        [sys.executable, "-m", "thumbproxy", "sign", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_cli_signs_with_the_first_configured_key(tmp_path: Path) -> None:
    url = "https://thumbs.example.org/123/?image=true&width=300"
    result = _thumbproxy_sign(url, key_env=f"{NEW_KEY},{OLD_KEY}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed.startswith(url + "&sig=") and _verifies(printed.removeprefix("https://thumbs.example.org"), NEW_KEY)


def test_cli_key_option_wins_over_the_setting(tmp_path: Path) -> None:
    result = _thumbproxy_sign("--key", OLD_KEY, URL, key_env=NEW_KEY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert _verifies(printed, OLD_KEY) and not _verifies(printed, NEW_KEY)


@pytest.mark.parametrize(
    "arguments, key_env, complaint",
    [
        ((URL,), "", "no signing key"),
        (("--key", "short", URL), "", "at least 16"),
        ((URL,), "short", "THUMBPROXY_SIGNING_KEY"),
        (("--key", NEW_KEY, "123/?image=true"), "", "path starting with /"),
    ],
)
def test_cli_refuses_without_a_usable_key_or_url(
    tmp_path: Path, arguments: tuple[str, ...], key_env: str, complaint: str
) -> None:
    result = _thumbproxy_sign(*arguments, key_env=key_env, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert complaint in result.stderr and len(result.stderr.strip().splitlines()) == 1
