"""Bytes of a shared file → text sections. Runs in worker processes (see `pool`): pure, no I/O.

Formats: PDF (pypdfium2, page by page; pages without a text layer are reported for OCR),
DOCX (python-docx, body order, headings start sections, tables as rows), ODT (odfpy, same),
plain text / Markdown / CSV (UTF-8, else Windows-1252), HTML (stdlib parser, scripts dropped).
Every input is hostile: the type is decided by the bytes (not the claimed mimetype), zip
archives are measured before anything is inflated, and every failure is a DocumentError.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser

from bot.documents.errors import DocumentError, DocumentErrorReason

PDF_MAGIC = b"%PDF-"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ODT_MIMETYPE = b"application/vnd.oasis.opendocument.text"
MIN_PAGE_TEXT_CHARS = 16  # a page with less than this has no usable text layer
TEXT_EXTENSIONS = {"txt", "md", "markdown", "csv", "tsv", "text", "log"}
HTML_EXTENSIONS = {"html", "htm", "xhtml"}
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_HEADING_STYLE = re.compile(r"\b(heading|titre|title)")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class Limits:
    max_pages: int = 300
    max_inflated_bytes: int = 100_000_000
    max_chars: int = 5_000_000


@dataclass(frozen=True)
class Section:
    """A piece of the document that a citation can name: a page, or a titled section."""

    label: str
    text: str
    page: int | None = None


@dataclass
class Extracted:
    format: str  # pdf, docx, odt, text, html
    sections: list[Section] = field(default_factory=list)
    pages: int | None = None
    scanned_pages: list[int] = field(default_factory=list)  # 1-based, for OCR


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    text = _CONTROLS.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def detect_format(data: bytes, name: str, mimetype: str | None) -> str:
    """pdf, docx, odt, text, html — from the bytes first; else UNSUPPORTED/PROTECTED."""
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    mimetype = (mimetype or "").lower()
    if data.startswith(PDF_MAGIC) or (data[:1024].find(PDF_MAGIC) >= 0 and extension == "pdf"):
        return "pdf"
    if data.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
                if "word/document.xml" in names:
                    return "docx"
                if "mimetype" in names and archive.read("mimetype").strip() == ODT_MIMETYPE:
                    return "odt"
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as error:
            if extension in ("docx", "odt"):
                raise DocumentError(DocumentErrorReason.CORRUPT, "zip") from error
        raise DocumentError(DocumentErrorReason.UNSUPPORTED, "zip")
    if data.startswith(OLE_MAGIC):
        # Password-protected DOCX/ODT are OLE containers; so are old .doc files (unsupported).
        if extension in ("docx", "odt") or "EncryptedPackage".encode("utf-16-le") in data[:65536]:
            raise DocumentError(DocumentErrorReason.PROTECTED, "ole")
        raise DocumentError(DocumentErrorReason.UNSUPPORTED, "ole")
    if extension in HTML_EXTENSIONS or mimetype in ("text/html", "application/xhtml+xml"):
        return "html"
    if extension in TEXT_EXTENSIONS or mimetype.startswith("text/"):
        return "text"
    if extension in ("pdf", "docx", "odt"):
        raise DocumentError(DocumentErrorReason.CORRUPT, "magic")
    raise DocumentError(DocumentErrorReason.UNSUPPORTED, extension or mimetype or "?")


def extract_document(data: bytes, name: str, mimetype: str | None, limits: Limits) -> Extracted:
    """The document's sections. Raises DocumentError; any other exception means corrupt."""
    kind = detect_format(data, name, mimetype)
    try:
        if kind == "pdf":
            result = _pdf(data, limits)
        elif kind == "docx":
            _check_zip(data, limits)
            result = _docx(data)
        elif kind == "odt":
            _check_zip(data, limits)
            result = _odt(data)
        elif kind == "html":
            result = _html(_decode(data), name)
        else:
            result = _text(_decode(data), name)
    except DocumentError:
        raise
    except MemoryError as error:
        raise DocumentError(DocumentErrorReason.TOO_LARGE, "memory") from error
    except Exception as error:
        raise DocumentError(DocumentErrorReason.CORRUPT, type(error).__name__) from error
    total = 0
    kept: list[Section] = []
    for section in result.sections:
        text = clean(section.text)
        if not text:
            continue
        total += len(text)
        if total > limits.max_chars:
            raise DocumentError(DocumentErrorReason.TOO_LARGE, "characters")
        kept.append(Section(label=section.label, text=text, page=section.page))
    result.sections = kept
    if not kept and not result.scanned_pages:
        raise DocumentError(DocumentErrorReason.EMPTY)
    return result


def _check_zip(data: bytes, limits: Limits) -> None:
    """Zip bombs: refuse before inflating when the members declare too much. (Python's
    zipfile never inflates past a member's declared size, so the declaration binds.)"""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if len(members) > 10_000:
            raise DocumentError(DocumentErrorReason.TOO_LARGE, "members")
        if any(info.flag_bits & 0x1 for info in members):
            raise DocumentError(DocumentErrorReason.PROTECTED, "zip encryption")
        if sum(info.file_size for info in members) > limits.max_inflated_bytes:
            raise DocumentError(DocumentErrorReason.TOO_LARGE, "inflated")


def _pdf(data: bytes, limits: Limits) -> Extracted:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        if "password" in str(error).lower():
            raise DocumentError(DocumentErrorReason.PROTECTED, "pdf") from error
        raise DocumentError(DocumentErrorReason.CORRUPT, "pdf") from error
    try:
        count = len(document)
        if count > limits.max_pages:
            raise DocumentError(DocumentErrorReason.TOO_MANY_PAGES, str(count))
        result = Extracted(format="pdf", pages=count)
        for index in range(count):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_bounded()
                finally:
                    textpage.close()
                has_image = len(text.strip()) < MIN_PAGE_TEXT_CHARS and any(
                    True for _ in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,))
                )
            finally:
                page.close()
            number = index + 1
            if has_image:  # a scan, perhaps with a stray page number: OCR reads it all
                result.scanned_pages.append(number)
                continue
            if not text.strip():
                continue
            result.sections.append(Section(label=f"page {number}", text=text, page=number))
        return result
    finally:
        document.close()


def _docx(data: bytes) -> Extracted:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(data))
    # Style names resolved once: `paragraph.style` looks the style up anew at every call
    # (~2.5 ms a paragraph, most of the extraction time).
    names = {style.style_id: (style.name or "") for style in document.styles}
    builder = _SectionBuilder()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            style_id = block._p.style or ""
            style = f"{style_id} {names.get(style_id, '')}".lower()
            if _HEADING_STYLE.search(style) and block.text.strip():
                builder.heading(block.text)
            else:
                builder.add(block.text)
        elif isinstance(block, Table):
            for row in block.rows:
                cells = [cell.text.strip() for cell in row.cells]
                builder.add(" | ".join(dict.fromkeys(cells)))
    return Extracted(format="docx", sections=builder.sections())


def _odt(data: bytes) -> Extracted:
    from odf import teletype
    from odf.namespaces import TABLENS, TEXTNS
    from odf.opendocument import load

    heading, paragraph, row = (TEXTNS, "h"), (TEXTNS, "p"), (TABLENS, "table-row")
    document = load(io.BytesIO(data))
    builder = _SectionBuilder()

    def walk(element: object) -> None:
        for child in getattr(element, "childNodes", []):
            qname = getattr(child, "qname", None)
            if qname == heading:
                builder.heading(teletype.extractText(child))
            elif qname == paragraph:
                builder.add(teletype.extractText(child))
            elif qname == row:
                cells = [teletype.extractText(cell).strip() for cell in child.childNodes]
                builder.add(" | ".join(cell for cell in cells if cell))
            elif getattr(child, "childNodes", None):
                walk(child)

    walk(document.text)
    return Extracted(format="odt", sections=builder.sections())


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\0" in data[:4096]:
        raise DocumentError(DocumentErrorReason.UNSUPPORTED, "binary")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # French Windows files


_MD_HEADING = re.compile(r"^#{1,3}\s+(.+?)\s*#*\s*$")


def _text(text: str, name: str) -> Extracted:
    extension = name.rpartition(".")[2].lower()
    builder = _SectionBuilder()
    if extension in ("csv", "tsv"):
        delimiter = (
            "\t" if extension == "tsv" else (";" if text.count(";") > text.count(",") else ",")
        )
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            builder.add(" | ".join(cell.strip() for cell in row))
        return Extracted(format="text", sections=builder.sections())
    for line in text.split("\n"):
        heading = _MD_HEADING.match(line)
        if heading:
            builder.heading(heading.group(1))
        else:
            builder.add(line)
    return Extracted(format="text", sections=builder.sections())


class _HtmlText(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "section", "article", "table", "ul", "ol", "blockquote"}
    )
    HEADINGS = frozenset({"h1", "h2", "h3"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _SectionBuilder()
        self._skip = 0
        self._heading: list[str] | None = None
        self._line: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.HEADINGS:
            self._flush()
            self._heading = []
        elif tag in self.BLOCK or tag in ("td", "th"):
            if tag in ("td", "th"):
                self._line.append(" | ")
            else:
                self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.HEADINGS and self._heading is not None:
            self.builder.heading("".join(self._heading))
            self._heading = None
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        (self._heading if self._heading is not None else self._line).append(data)

    def _flush(self) -> None:
        if self._line:
            self.builder.add("".join(self._line).strip(" |"))
            self._line = []

    def close(self) -> None:
        super().close()
        self._flush()


def _html(text: str, name: str) -> Extracted:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return Extracted(format="html", sections=parser.builder.sections())


class _SectionBuilder:
    """Paragraphs grouped under the last heading; text before any heading is "début"."""

    def __init__(self) -> None:
        self._sections: list[Section] = []
        self._label = "début"
        self._lines: list[str] = []

    def heading(self, title: str) -> None:
        self._close()
        title = " ".join(title.split())[:120]
        self._label = f"section « {title} »"
        self._lines = [title]

    def add(self, text: str) -> None:
        self._lines.append(text)

    def _close(self) -> None:
        text = "\n".join(self._lines).strip()
        if text:
            self._sections.append(Section(label=self._label, text=text))
        self._lines = []

    def sections(self) -> list[Section]:
        self._close()
        return self._sections
