"""Test documents, generated with the same libraries the bot reads them with.

PDFs with a text layer (pypdfium2's standard Helvetica font), scanned-like PDFs (pages holding
only an image), DOCX (python-docx), ODT (odfpy), and broken ones: corrupt, password-protected,
zip bombs. Used by the tests, the benchmarks and the sandbox; nothing is downloaded.
"""

from __future__ import annotations

import ctypes
import io
import zipfile
from collections.abc import Sequence

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
LINE_HEIGHT = 14
CHARS_PER_LINE = 90


def _wrap(text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words = paragraph.split()
        current = ""
        for word in words:
            if current and len(current) + 1 + len(word) > CHARS_PER_LINE:
                lines.append(current)
                current = word
            else:
                current = f"{current} {word}".strip()
        lines.append(current)
    return lines


def _add_text_line(pdf: pdfium.PdfDocument, page: pdfium.PdfPage, text: str, y: float) -> None:
    font = pdfium_c.FPDFText_LoadStandardFont(pdf.raw, b"Helvetica")
    obj = pdfium_c.FPDFPageObj_CreateTextObj(pdf.raw, font, 10.0)
    buffer = ctypes.create_string_buffer((text + "\0").encode("utf-16-le"))
    pdfium_c.FPDFText_SetText(obj, ctypes.cast(buffer, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
    pdfium_c.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 40, y)
    pdfium_c.FPDFPage_InsertObject(page.raw, obj)


def _add_image(pdf: pdfium.PdfDocument, page: pdfium.PdfPage) -> None:
    """A grey "scan" filling the page: pixels, no text layer."""
    bitmap = pdfium.PdfBitmap.new_native(200, 280, pdfium_c.FPDFBitmap_BGR)
    bitmap.fill_rect((200, 200, 200, 255), 0, 0, 200, 280)
    bitmap.fill_rect((30, 30, 30, 255), 20, 20, 160, 8)
    image = pdfium.PdfImage.new(pdf)
    image.set_bitmap(bitmap)
    image.set_matrix(pdfium.PdfMatrix().scale(PAGE_WIDTH - 80, PAGE_HEIGHT - 80).translate(40, 40))
    page.insert_obj(image)


def make_pdf(pages: Sequence[str | None]) -> bytes:
    """One page per item: its text as a text layer, or None for an image-only (scanned) page."""
    pdf = pdfium.PdfDocument.new()
    for content in pages:
        page = pdf.new_page(PAGE_WIDTH, PAGE_HEIGHT)
        if content is None:
            _add_image(pdf, page)
        else:
            y = PAGE_HEIGHT - 50
            for line in _wrap(content):
                if y < 40:
                    break
                if line:
                    _add_text_line(pdf, page, line, y)
                y -= LINE_HEIGHT
        pdfium_c.FPDFPage_GenerateContent(page.raw)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def make_docx(sections: Sequence[tuple[str, str]], table: Sequence[Sequence[str]] = ()) -> bytes:
    """Headings with their paragraphs (paragraphs split on blank lines), then a table."""
    import docx

    document = docx.Document()
    for heading, body in sections:
        document.add_heading(heading, level=1)
        for paragraph in body.split("\n\n"):
            document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_odt(sections: Sequence[tuple[str, str]]) -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    for heading, body in sections:
        document.text.addElement(H(outlinelevel=1, text=heading))
        for paragraph in body.split("\n\n"):
            document.text.addElement(P(text=paragraph))
    out = io.BytesIO()
    document.write(out)
    return out.getvalue()


def make_zip_bomb(kind: str = "docx", inflated_mb: int = 200) -> bytes:
    """A DOCX/ODT-shaped zip whose document part inflates to `inflated_mb` MB of zeros."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        if kind == "odt":
            archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")
            member = "content.xml"
        else:
            archive.writestr("[Content_Types].xml", "<Types/>")
            member = "word/document.xml"
        with archive.open(member, "w", force_zip64=True) as handle:
            chunk = b"\0" * 1_000_000
            for _ in range(inflated_mb):
                handle.write(chunk)
    return out.getvalue()


def make_encrypted_pdf(text: str, password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text]))))
    writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# A password-protected Word file is an OLE compound file holding an encrypted package.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def make_protected_docx() -> bytes:
    return OLE_MAGIC + b"\0" * 504 + "EncryptedPackage".encode("utf-16-le") + b"\0" * 2048


def corrupt(data: bytes) -> bytes:
    """Same beginning (so the type is recognised), garbage after."""
    return data[: max(16, len(data) // 10)] + bytes(range(256)) * 8


LOREM_FR = (
    "Le présent rapport expose la situation budgétaire du service et les mesures proposées "
    "pour l'exercice suivant. Les crédits de fonctionnement progressent modérément tandis "
    "que les dépenses d'investissement sont concentrées sur la modernisation des outils "
    "numériques des agents. La direction recommande un suivi trimestriel des engagements."
)


def long_report(pages: int, marker_page: int | None = None, marker: str = "") -> list[str]:
    """`pages` pages of French prose; page `marker_page` (1-based) also holds `marker`."""
    result = []
    for number in range(1, pages + 1):
        text = f"Page {number}. " + " ".join([LOREM_FR] * 5)
        if number == marker_page:
            text += "\n" + marker
        result.append(text)
    return result
