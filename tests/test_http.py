"""HTTP as browsers, CDNs and dashboards use it: validators, caching headers, HEAD, CORS, formats, limits."""

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import WIDE, Service, ServiceFactory
from fakearchive import FUTURE_DATE, FakeArchive, Fault
from thumbproxy.app import RENDER_POOL
from thumbproxy.web.signing import UrlSigner
from workerjobs import sleep_then_pid

WEEK = "public, max-age=604800"
BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def renders(service: Service) -> float:
    return sum(service.metric("thumbproxy_renders_total", kind="mono", result=result) for result in ("ok", "error"))


# Validators and caching headers ------------------------------------------------------------


async def test_a_public_thumbnail_is_cacheable_by_anyone_for_a_week(service: Service, frame: dict) -> None:
    for _ in range(2):  # the full path, then the repeated-hit path
        response = await service.get(f"/{frame['id']}/?image=true")
        body = await response.read()
        assert response.status == 200
        assert response.headers["Cache-Control"] == WEEK
        assert int(response.headers["Content-Length"]) == len(body)
        assert response.headers["ETag"].startswith('"') and not response.headers["ETag"].startswith("W/")
        assert "Authorization" not in response.headers.get("Vary", "")


async def test_if_none_match_answers_304_without_download_or_render(
    start_service: ServiceFactory, frame: dict, tmp_path: Path
) -> None:
    first = await start_service()
    tag = (await first.get(f"/{frame['id']}/?image=true&width=80")).headers["ETag"]
    for _ in range(2):
        again = await first.get(f"/{frame['id']}/?image=true&width=80", headers={"If-None-Match": tag})
        assert again.status == 304 and await again.read() == b""
        assert again.headers["ETag"] == tag and again.headers["Cache-Control"] == WEEK
    # A replica with empty caches still knows the answer has not changed.
    replica = await start_service(THUMBPROXY_CACHE_DIR=str(tmp_path / "other-cache"))
    downloads = replica.archive.downloads[frame["id"]]
    response = await replica.get(f"/{frame['id']}/?image=true&width=80", headers={"If-None-Match": f'W/{tag}, "x"'})
    assert response.status == 304
    assert replica.archive.downloads[frame["id"]] == downloads and renders(replica) == 0
    # Another size is another ETag.
    other = await replica.get(f"/{frame['id']}/?image=true&width=90", headers={"If-None-Match": tag})
    assert other.status == 200 and other.headers["ETag"] != tag


# Each display parameter's own picture; the display parameters spelled as their defaults ask for the picture
# of the query they are left out of.
DISPLAY_QUERIES = {
    "": ["stretch=zscale", "contrast=0.1", "gamma=2.5", "cmap=gray", "invert=false", "cmap=GREY"],
    "stretch=log": ["stretch=log&gamma=1", "stretch=LOG&min_percent=0.5&max_percent=99.5"],
    "zmin=90": ["zmin=9e1", "zmin=90.000"],
    "zmax=130": [],
    "min_percent=5": [],
    "max_percent=99": [],
    "contrast=0.3": [],
    "gamma=1.5": [],
    "invert=true": ["invert=yes"],
    "cmap=magma": ["cmap=Magma"],
}


async def test_each_display_parameter_is_its_own_etag_and_a_default_spelled_out_is_none(
    service: Service, frame: dict
) -> None:
    tags = {}
    for query, same in DISPLAY_QUERIES.items():
        response = await service.get(f"/{frame['id']}/?image=true&{query}")
        assert response.status == 200, query
        tags[query] = response.headers["ETag"]
        rendered = renders(service)
        for spelled in same:
            again = await service.get(f"/{frame['id']}/?image=true&{spelled}")
            assert again.headers["ETag"] == tags[query], spelled
        assert renders(service) == rendered, same
    assert len(set(tags.values())) == len(DISPLAY_QUERIES)


async def test_head_works_on_every_get_route(service: Service, frame: dict) -> None:
    full = await service.get(f"/{frame['basename']}/?image=true")
    body = await full.read()
    head = await service.client.head(f"/{frame['basename']}/?image=true")
    assert head.status == 200 and await head.read() == b""
    assert head.headers["Content-Length"] == str(len(body)) and head.headers["ETag"] == full.headers["ETag"]
    for path in ("/", "/robots.txt", "/favicon.ico", "/healthz", "/readyz", "/metrics", f"/{frame['id']}/"):
        assert (await service.client.head(path)).status == 200, path


async def test_a_proprietary_thumbnail_is_private_and_varies_by_caller(service: Service, secret: dict) -> None:
    alice = {"Authorization": "Token alice"}
    for path in (f"/{secret['id']}/?image=true", f"/{secret['id']}/"):
        response = await service.get(path, headers=alice)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "private, no-cache"
        assert "Authorization" in response.headers["Vary"]
    refused = await service.get(f"/{secret['id']}/?image=true")
    assert refused.status == 404
    assert refused.headers["Cache-Control"] == "max-age=10" and "Authorization" in refused.headers["Vary"]


async def test_error_answers_are_kept_only_briefly(start_service: ServiceFactory, frame: dict) -> None:
    service = await start_service(THUMBPROXY_ERROR_MAX_AGE="3")
    for path in (f"/{frame['id']}/?width=-1", "/nothing/here/", "/999999/?image=true"):
        response = await service.get(path)
        assert response.status in (400, 404)
        assert response.headers["Cache-Control"] == "max-age=3"


@pytest.mark.parametrize(
    "settings",
    [
        {"THUMBPROXY_PUBLIC_URL": "https://thumbs.example.org"},
        {"THUMBPROXY_ALLOWED_HOSTS": "thumbs.example.org,Other.Example:8443"},
    ],
    ids=["public-url", "allowed-host"],
)
async def test_a_public_json_answer_naming_this_service_is_cacheable(
    start_service: ServiceFactory, frame: dict, settings: dict[str, str]
) -> None:
    service = await start_service(**settings)
    response = await service.get(f"/{frame['id']}/", headers={"Host": "thumbs.example.org"})
    assert response.headers["Cache-Control"] == WEEK
    assert (await response.json())["url"].startswith(
        "https://thumbs.example.org/" if settings.get("THUMBPROXY_PUBLIC_URL") else "http://thumbs.example.org/"
    )


async def send_raw(service: Service, request_head: bytes) -> tuple[bytes, bytes]:
    """The head and body of the answer to one raw HTTP/1.1 request, sent as given."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.client.server.port)
    try:
        writer.write(request_head + b"Connection: close\r\n\r\n")
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /{id}/ HTTP/1.1\r\nHost: evil.example\r\n",
        b"GET http://evil.example/{id}/ HTTP/1.1\r\nHost: thumbs.example.org\r\n",
    ],
    ids=["host-header", "absolute-form"],
)
async def test_a_json_url_built_from_a_host_nobody_allowed_is_never_shared(
    start_service: ServiceFactory, frame: dict, request_head: bytes
) -> None:
    service = await start_service(THUMBPROXY_ALLOWED_HOSTS="thumbs.example.org")
    head, body = await send_raw(service, request_head.replace(b"{id}", str(frame["id"]).encode()))
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nCache-Control: private, no-cache" in head
    assert json.loads(body)["url"].startswith("http://evil.example/")


# CORS --------------------------------------------------------------------------------------


async def test_images_and_errors_may_be_used_by_pages_of_any_origin(service: Service, frame: dict) -> None:
    for path in (f"/{frame['id']}/?image=true", "/999999/", "/healthz"):
        response = await service.get(path, headers={"Origin": "https://grafana.example.org"})
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    preflight = await service.client.options(
        f"/{frame['id']}/",
        headers={
            "Origin": "https://grafana.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status == 204
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(("origin", "expected"), [("https://dash.example.org", "https://dash.example.org"), ("", None)])
async def test_the_allowed_origin_is_a_setting(
    start_service: ServiceFactory, frame: dict, origin: str, expected: str | None
) -> None:
    service = await start_service(THUMBPROXY_CORS_ORIGIN=origin)
    for _ in range(2):  # the full path, then the repeated-hit path
        response = await service.get(f"/{frame['id']}/?image=true")
        assert response.headers.get("Access-Control-Allow-Origin") == expected


# Formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "media_type", "decoded"),
    [
        ("format=png", "image/png", "PNG"),
        ("format=webp", "image/webp", "WEBP"),
        ("format=jpg", "image/jpeg", "JPEG"),
    ],
)
async def test_format_sets_the_encoding_and_content_type(
    service: Service, frame: dict, query: str, media_type: str, decoded: str
) -> None:
    response = await service.get(f"/{frame['id']}/?image=true&{query}")
    assert response.status == 200 and response.content_type == media_type
    image = Image.open(io.BytesIO(await response.read()))
    assert image.format == decoded and image.size == (200, 150)


async def test_a_grey_frame_as_webp_decodes_grey(service: Service, frame: dict) -> None:
    # The first renders from the file, the next ones from its preview; a label is drawn in white.
    for query in ("format=webp", "format=webp&width=120", "format=webp&label=M42"):
        response = await service.get(f"/{frame['id']}/?image=true&{query}")
        assert response.status == 200 and response.content_type == "image/webp"
        decoded = Image.open(io.BytesIO(await response.read())).convert("RGB")
        red, green, blue = np.moveaxis(np.asarray(decoded, dtype=np.int16), -1, 0)
        # Neutral chroma, as libwebp's decoder gives it back: red = blue, green the same or one less.
        assert np.array_equal(red, blue) and set(np.unique(red - green)) <= {0, 1}, query


async def test_format_auto_follows_accept_and_says_so(service: Service, frame: dict) -> None:
    path = f"/{frame['id']}/?image=true&format=auto"
    for _ in range(2):
        browser = await service.get(path, headers={"Accept": BROWSER_ACCEPT})
        old_browser = await service.get(path, headers={"Accept": "image/png,image/*;q=0.8,*/*;q=0.5"})
        assert browser.content_type == "image/webp" and old_browser.content_type == "image/jpeg"
        assert browser.headers["Vary"] == old_browser.headers["Vary"] == "Accept"
        assert browser.headers["ETag"] != old_browser.headers["ETag"]
    json_url = (await (await service.get(f"/{frame['id']}/?format=auto")).json())["url"]
    assert "format=auto" in json_url


async def test_an_unknown_format_is_a_400_naming_it(service: Service, frame: dict) -> None:
    response = await service.get(f"/{frame['id']}/?image=true&format=gif")
    assert response.status == 400
    assert "format" in (await response.json())["message"]


# Admission control and deadlines -----------------------------------------------------------


async def test_a_full_render_queue_refuses_new_renders_but_serves_hits(
    start_service: ServiceFactory, frame: dict
) -> None:
    service = await start_service(THUMBPROXY_MAX_PENDING="0")
    cached = await service.get(f"/{frame['id']}/?image=true")
    assert cached.status == 200
    # The only worker is busy: a render would have to wait, which MAX_PENDING=0 does not allow.
    busy = asyncio.create_task(service.app[RENDER_POOL].run(sleep_then_pid, 1.5))
    await asyncio.sleep(0.2)
    refused = await service.get(f"/{frame['id']}/?image=true&width=77")
    assert refused.status == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "retry" in (await refused.json())["message"]
    assert service.metric("thumbproxy_renders_refused_total") == 1
    for path in (f"/{frame['id']}/?image=true", f"/{frame['basename']}/?image=true"):
        assert (await service.get(path)).status == 200
    await busy
    assert (await service.get(f"/{frame['id']}/?image=true&width=77")).status == 200


async def test_a_request_past_its_deadline_is_a_504(start_service: ServiceFactory, frame: dict) -> None:
    service = await start_service(THUMBPROXY_REQUEST_TIMEOUT="0.5", THUMBPROXY_ARCHIVE_TIMEOUT="5")
    service.archive.api_fault = Fault(delay=3)
    started = asyncio.get_running_loop().time()
    response = await service.get(f"/{frame['id']}/?image=true")
    assert response.status == 504
    assert "0.5 s" in (await response.json())["message"]
    assert asyncio.get_running_loop().time() - started < 2


# Dashboards: /latest/ ----------------------------------------------------------------------

DOME = "site_id=lsc&telescope_id=1m0a&instrument_id=fa15"


@pytest.fixture
def night(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> list[dict]:
    """Three frames of one instrument, oldest first, and one of another instrument taken later."""
    frames = []
    for hour, seed in ((1, 1), (3, 2), (2, 3)):
        path = write_fits(tmp_path / f"lsc-{hour}.fits.fz", shape=WIDE, compressed=True, seed=seed)
        frames.append(
            fake_archive.add_frame(
                path,
                site_id="lsc",
                telescope_id="1m0a",
                instrument_id="fa15",
                observation_date=f"2026-11-20T0{hour}:00:00.000Z",
            )
        )
    other = write_fits(tmp_path / "other.fits.fz", shape=WIDE, compressed=True, seed=4)
    fake_archive.add_frame(other, site_id="coj", observation_date="2026-11-20T05:00:00.000Z")
    return frames


async def test_latest_answers_the_newest_matching_frame(service: Service, night: list[dict]) -> None:
    newest = night[1]
    response = await service.get(f"/latest/?{DOME}&image=true&width=100&_=1732440000")
    assert response.status == 200
    expected = await (await service.get(f"/{newest['id']}/?image=true&width=100")).read()
    assert await response.read() == expected
    assert response.headers["Cache-Control"] == "public, max-age=30"
    assert "Authorization" in response.headers["Vary"]
    body = await (await service.get(f"/latest?{DOME}&width=100")).json()
    assert body["url"].endswith(f"/{newest['id']}/?image=true&width=100")


async def test_latest_asks_the_archive_at_most_once_per_interval(
    start_service: ServiceFactory, night: list[dict], write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_LATEST_TTL="0.5")
    first = await (await service.get(f"/latest/?{DOME}&image=true")).read()
    listings = len(service.archive.received("list"))
    path = write_fits(tmp_path / "lsc-4.fits.fz", shape=WIDE, compressed=True, seed=9)
    service.archive.add_frame(
        path, site_id="lsc", telescope_id="1m0a", instrument_id="fa15", observation_date="2026-11-20T04:00:00.000Z"
    )
    for _ in range(5):
        assert await (await service.get(f"/latest/?{DOME}&image=true&_={_}")).read() == first
    assert len(service.archive.received("list")) == listings
    await asyncio.sleep(0.6)
    assert await (await service.get(f"/latest/?{DOME}&image=true")).read() != first


async def test_latest_shows_each_caller_only_what_it_may_see(
    service: Service, night: list[dict], write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_fits(tmp_path / "lsc-secret.fits.fz", shape=WIDE, compressed=True, seed=5)
    secret = service.archive.add_frame(
        path,
        site_id="lsc",
        telescope_id="1m0a",
        instrument_id="fa15",
        observation_date="2026-11-20T06:00:00.000Z",
        proposal_id="SECRET-1",
        public_date=FUTURE_DATE,
    )
    service.archive.add_token("alice", "SECRET-1")
    alice = await service.get(f"/latest/?{DOME}", headers={"Authorization": "Token alice"})
    anonymous = await service.get(f"/latest/?{DOME}")
    assert (await alice.json())["url"].split("/")[3] == str(secret["id"])
    assert alice.headers["Cache-Control"] == "private, no-cache"
    assert (await anonymous.json())["url"].split("/")[3] == str(night[1]["id"])


async def test_latest_without_a_match_is_a_404(service: Service, night: list[dict]) -> None:
    response = await service.get("/latest/?site_id=tfn&image=true")
    assert response.status == 404
    assert await response.json() == {"message": "No frame matches these filters"}


# Signed URLs -------------------------------------------------------------------------------

NEW_KEY, OLD_KEY = "a-new-key-of-some-length", "an-old-key-of-some-length"


async def test_with_signing_on_only_signed_thumbnail_urls_are_answered(
    start_service: ServiceFactory, frame: dict, night: list[dict]
) -> None:
    service = await start_service(THUMBPROXY_SIGNING_KEY=f"{NEW_KEY},{OLD_KEY}")
    path = f"/{frame['id']}/?image=true&width=120"
    for unsigned in (path, f"/{frame['basename']}/?image=true", f"/latest/?{DOME}&image=true"):
        response = await service.get(unsigned)
        assert response.status == 403
        assert "sig" in (await response.json())["message"]
    for key in (NEW_KEY, OLD_KEY):
        for _ in range(2):  # the full path, then the repeated-hit path: both check
            assert (await service.get(UrlSigner((key,)).sign_url(path))).status == 200
    tampered = UrlSigner((NEW_KEY,)).sign_url(path).replace("width=120", "width=121")
    assert (await service.get(tampered)).status == 403
    assert (await service.get(UrlSigner(("some-other-key-entirely",)).sign_url(path))).status == 403
    assert (await service.get(UrlSigner((NEW_KEY,)).sign_url(f"/latest/?{DOME}&image=true"))).status == 200
    assert (await service.get("/healthz")).status == 200
    assert service.metric("thumbproxy_signature_failures_total") == 5


async def test_with_signing_on_the_json_url_is_signed(start_service: ServiceFactory, frame: dict) -> None:
    service = await start_service(THUMBPROXY_SIGNING_KEY=NEW_KEY)
    body = await (await service.get(UrlSigner((NEW_KEY,)).sign_url(f"/{frame['id']}/?width=90"))).json()
    assert "sig=" in body["url"]
    followed = await service.get(body["url"].split(str(service.client.make_url("")), 1)[1])
    assert followed.status == 200 and followed.content_type == "image/jpeg"
