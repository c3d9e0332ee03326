"""Write a caption into the lower-left corner of a thumbnail."""

from PIL import Image, ImageDraw, ImageFont

MAX_FONT_SIZE = 20
# Margin from the left and bottom edges, as fits2image leaves.
OFFSET = 4
WHITE = "white"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def single_line(text: str) -> str:
    """text with line breaks, tabs and other control characters turned into single spaces."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _font(size: int) -> Font:
    # Pillow's built-in scalable font: no font file has to exist on the machine.
    return ImageFont.load_default(size=size)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Font) -> float:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def add_label(image: Image.Image, text: str) -> Image.Image:
    """A copy of the greyscale or RGB image with text in white in its lower-left corner.

    The font starts at 20 px and shrinks until the text fits the width. Line breaks are
    drawn as spaces: a caption is one line. Characters the font lacks do not raise.
    """
    labelled = image.copy()
    text = single_line(text)
    if not text:
        return labelled
    draw = ImageDraw.Draw(labelled)
    room = labelled.width - OFFSET
    size = MAX_FONT_SIZE
    font = _font(size)
    width = _text_width(draw, text, font)
    while width > room and size > 1:
        # Text width grows in proportion to the font size: jump close to the fit, then step.
        size = max(1, min(size - 1, int(size * room / width)))
        font = _font(size)
        width = _text_width(draw, text, font)
    # Placed from the bottom of the text box, so descenders stay inside the frame.
    _, _, _, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((OFFSET, labelled.height - OFFSET - bottom), text, font=font, fill=WHITE)
    return labelled
