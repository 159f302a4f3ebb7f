"""Text of a SOW PDF, read in a child process: `python -m insights.sow_extract --max-pages N < file.pdf`.

Runs without Django (pypdf only) so the worker can start it cheaply and kill it: the parent
(`insights.services.sow.read_text_limited`) applies the wall-clock limit, the CPU and memory
limits are set on this process before it starts. Answers one JSON object on stdout:
`{"text": ..., "pages": n}` or `{"error": ..., "code": ..., "pages": n}`.
"""

from __future__ import annotations

import argparse
import io
import json
import sys


def extract(content: bytes, *, max_pages: int) -> dict:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(content))
        pages = len(reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return {"error": f"The PDF could not be read: {exc}", "code": "invalid_document"}
    if pages > max_pages:
        return {
            "error": f"The PDF has {pages} pages; at most {max_pages} are read. Upload the pages with the "
            "commercial terms (or a text file).",
            "code": "too_many_pages",
            "pages": pages,
        }
    try:
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return {"error": f"The PDF could not be read: {exc}", "code": "invalid_document", "pages": pages}
    return {"text": text, "pages": pages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-pages", type=int, required=True)
    args = parser.parse_args(argv)
    result = extract(sys.stdin.buffer.read(), max_pages=args.max_pages)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
