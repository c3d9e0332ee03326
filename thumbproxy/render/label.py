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


def font(size: int) -> Font:
    """The font of this size in pixels."""
    # Pillow's built-in scalable font: no font file has to exist on the machine.
    return ImageFont.load_default(size=size)


def text_width(draw: ImageDraw.ImageDraw, text: str, face: Font) -> float:
    left, _, right, _ = draw.textbbox((0, 0), text, font=face)
    return right - left


def fitted_font(draw: ImageDraw.ImageDraw, text: str, room: float, size: int = MAX_FONT_SIZE) -> Font:
    """The font of `size` px, shrunk until text fits in `room` px of width (or is 1 px)."""
    fitted = font(size)
    width = text_width(draw, text, fitted)
    while width > room and size > 1:
        # Text width grows in proportion to the font size: jump close to the fit, then step.
        size = max(1, min(size - 1, int(size * room / width)))
        fitted = font(size)
        width = text_width(draw, text, fitted)
    return fitted


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
    fitted = fitted_font(draw, text, labelled.width - OFFSET)
    # Placed from the bottom of the text box, so descenders stay inside the frame.
    _, _, _, bottom = draw.textbbox((0, 0), text, font=fitted)
    draw.text((OFFSET, labelled.height - OFFSET - bottom), text, font=fitted, fill=WHITE)
    return labelled
