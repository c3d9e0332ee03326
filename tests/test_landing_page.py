"""The landing page documents the API, and on a local archive shows its frames as working thumbnails."""

from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from chromium import Chromium
from conftest import Demo, ServiceFactory
from thumbproxy.demo import sampledata
from thumbproxy.web.pages import EXAMPLE_SIZE, PARAMETERS
from thumbproxy.web.query import KNOWN_PARAMETERS

SCREENSHOT = Path(__file__).resolve().parent / "artifacts" / "landing_page.png"
# The demo archive: six frames, each plain, labelled and median; the red frame of the R/V/B set in colour too.
DEMO_FRAMES = 6
# Three thumbnails a frame, a colour one, and one example picture a parameter.
DEMO_IMAGES = DEMO_FRAMES * 3 + 1 + len(PARAMETERS)
# Every image loaded or failed, or 30 s gone: then each image's alt, src and decoded width (0: not shown).
WAIT_FOR_IMAGES = """
new Promise(done => {
  const deadline = Date.now() + 30000;
  const check = () => [...document.images].every(image => image.complete) || Date.now() > deadline
    ? done() : setTimeout(check, 100);
  check();
}).then(() => [...document.images].map(image => ({alt: image.alt, src: image.src, width: image.naturalWidth})))
"""


class _Page(HTMLParser):
    """The images of a page and the text of its figure captions."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.captions: list[str] = []
        self._in_caption = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "figcaption":
            self._in_caption = True
            self.captions.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self.captions[-1] += data


async def test_page_documents_every_parameter_and_never_lists_a_remote_archive(start_service: ServiceFactory) -> None:
    service = await start_service()
    response = await service.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    html = await response.text()
    for parameter in KNOWN_PARAMETERS:
        assert f"<code>{parameter}</code>" in html, parameter
    assert '{"url":' in html and '{"message":' in html
    assert _Page(html).images == []
    assert service.archive.api_calls == 0


async def test_local_archive_gallery_shows_working_thumbnails(
    start_service: ServiceFactory, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    rvb = [path.name.removesuffix(".fits.fz") for path in sampledata.rvb_set(archive_dir, size=64)]
    # A file name a browser would read as markup, and a frame without a request, which gets no thumbnail.
    sampledata.raw_frame(archive_dir / "<b>odd&name.fits", size=48)
    write_fits(archive_dir / "no-request.fits", header={"OBSTYPE": "EXPOSE"})
    service = await start_service(ARCHIVE_API_URL=archive_dir.as_uri() + "/")

    html = await (await service.get("/")).text()
    page = _Page(html)

    assert "<b>odd" not in html and "&lt;b&gt;odd&amp;name" in html
    assert sorted(caption.split()[0] for caption in page.captions) == sorted(["<b>odd&name", *rvb])
    colour = [image["alt"] for image in page.images if "color=true" in (image["src"] or "")]
    # The gallery's colour composite, and the colour parameters' example pictures.
    assert colour == [f"{rvb[0]}, colour", f"{rvb[0]}, color", f"{rvb[0]}, weights"]
    examples = [image["alt"] for image in page.images if image["width"] == str(EXAMPLE_SIZE)]
    assert [alt.split(", ")[1] for alt in examples] == [parameter.name for parameter in PARAMETERS]
    assert len(page.images) == 4 * 3 + 1 + len(PARAMETERS)
    for image in page.images:
        assert image["loading"] == "lazy" and image["width"] and image["height"]
        await service.image(image["src"] or "")


async def test_demo_page_shows_every_thumbnail_in_a_browser(demo: Demo) -> None:
    async with Chromium() as browser:
        page = await browser.open(demo.base_url)
        await page.set_viewport(1280, 800)
        # A window as tall as the page brings every lazy image into view, so all of them load.
        await page.set_viewport(1280, await page.evaluate("document.documentElement.scrollHeight"))
        images = await page.evaluate(WAIT_FOR_IMAGES)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(await page.screenshot())
    print(f"screenshot: {SCREENSHOT}")
    assert len(images) == DEMO_IMAGES, images
    assert [image for image in images if image["width"] == 0] == []
    assert any(image["alt"].endswith("colour") for image in images)
