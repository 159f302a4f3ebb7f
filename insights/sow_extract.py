"""Text of a SOW PDF, read in a child process: `python -m insights.sow_extract --max-pages N < file.pdf`.

Runs without Django (pypdfium2 only) so the worker can start it cheaply and kill it: the parent
(`insights.services.sow.read_text_limited`) applies the wall-clock limit, the CPU and memory
limits are set on this process before it starts. Answers one JSON object on stdout:
`{"text": ..., "pages": n}` or `{"error": ..., "code": ..., "pages": n}`.
"""

from __future__ import annotations

import argparse
import json
import sys


def _loose_box(pdfium_c, textpage, index: int) -> tuple[float, float, float, float]:
    """The character's box by its advance width (not its ink), so letters of a word touch."""
    import ctypes

    rect = pdfium_c.FS_RECTF()
    if not pdfium_c.FPDFText_GetLooseCharBox(textpage.raw, index, ctypes.byref(rect)):
        return textpage.get_charbox(index)
    return rect.left, rect.bottom, rect.right, rect.top


def _lines(textpage) -> list[list[list]]:
    """The page as lines of words: [text, left, gap before it, font size, typed space before it]."""
    import pypdfium2.raw as pdfium_c

    lines: list[list[list]] = [[]]
    previous_right = None
    space = False
    for i in range(textpage.count_chars()):
        char = textpage.get_text_range(i, 1)
        if char in ("\r", "\n"):
            if lines[-1]:
                lines.append([])
            previous_right, space = None, False
            continue
        left, _, right, _ = _loose_box(pdfium_c, textpage, i)
        if char.isspace():
            if right - left >= 0.01:  # a typed space: a monospaced layout keeps its runs of spaces
                if lines[-1]:
                    lines[-1][-1][0] += " "
                previous_right = right
            space = True
            continue
        size = pdfium_c.FPDFText_GetFontSize(textpage.raw, i) or 10.0
        gap = left - previous_right if previous_right is not None else 0.0
        words = lines[-1]
        if not words or space or gap > size * 0.1:
            words.append([char, left, gap if words else 0.0, size, space])
        else:
            words[-1][0] += char
        previous_right, space = right, False
    return [line for line in lines if line]


def page_text(textpage) -> str:
    """A page's text in reading order, lines kept, and a table's cells kept apart by three spaces.

    A column gap is a gap wider than a word space (over half the font size), or a word that starts where a
    column starts on a nearby row of the same table (a cell that fills its column leaves only a word space).
    """
    lines = _lines(textpage)
    wide = [{round(w[1]) for w in line if w[2] > w[3] * 0.6} for line in lines]
    out = []
    for n, line in enumerate(lines):
        nearby = set().union(*wide[max(0, n - 6) : n + 7]) if len(line) <= 14 else wide[n]
        text = ""
        for k, (word, left, gap, size, _typed) in enumerate(line):
            if k == 0:
                text = word
                continue
            column = gap > size * 0.6 or (any(abs(left - x) <= 1 for x in nearby) and gap > 0)
            if column:
                text = text.rstrip(" ") + "   " + word
            elif _typed or gap > size * 0.25:
                text = (text if text.endswith(" ") else text + " ") + word
            else:
                text += word
        out.append(text.rstrip())
    return "\n".join(out).replace("\u00ad", "")


def extract(content: bytes, *, max_pages: int) -> dict:
    """Text of the PDF through PDFium (pypdfium2): layout-aware, tables keep their rows (ADR 0105)."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(content)
    except (pypdfium2.PdfiumError, ValueError, TypeError, OSError) as exc:
        return {"error": f"The PDF could not be read: {exc}", "code": "invalid_document"}
    try:
        pages = len(document)
        if pages > max_pages:
            return {
                "error": f"The PDF has {pages} pages; at most {max_pages} are read. Upload the pages with the "
                "commercial terms (or a text file).",
                "code": "too_many_pages",
                "pages": pages,
            }
        texts = []
        for index in range(pages):
            page = document[index]
            textpage = page.get_textpage()
            texts.append(page_text(textpage))
            textpage.close()
            page.close()
    except (pypdfium2.PdfiumError, ValueError, TypeError, OSError) as exc:
        return {"error": f"The PDF could not be read: {exc}", "code": "invalid_document", "pages": pages}
    finally:
        document.close()
    return {"text": "\n".join(texts), "pages": pages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-pages", type=int, required=True)
    args = parser.parse_args(argv)
    result = extract(sys.stdin.buffer.read(), max_pages=args.max_pages)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
