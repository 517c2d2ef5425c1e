"""An uploaded file back as records, streamed: decoded chunk by chunk (UTF-8 or GBK), split into CSV records or
JSON lines, headers mapped to fields. Memory holds one chunk and one batch of records, whatever the file's size."""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import re

import orjson

from customer_svc.imports.columns import fields_of, keyed, map_headers


#: Lines with their ends; only CR, LF and CRLF end a line (``str.splitlines`` also splits on form feeds and
#: Unicode separators, which a CSV cell may contain).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+")


#: A record may span this many lines (line breaks inside quoted cells); past it, a quote was left open.
MAX_RECORD_LINES = 1000
#: A record spanning more lines than this is reported among the job's warnings: a DMS that does not escape quotes
#: turns several rows into one (the first row then holds the others as text, and they get no report row).
SPAN_WARNING_LINES = 3
#: Nor hold more characters than this (no field takes more than 5,000): ``csv``'s own limit for one cell, so that
#: a longer record (a quote left open, or a JSON array uploaded as JSON Lines) fails the file with a reason instead
#: of being held whole in memory or failing inside the parser.
MAX_RECORD_CHARS = csv.field_size_limit()
_QUOTE_OR_COMMA = re.compile(r'[",]')


def _quote_open_after(line: str, open_: bool) -> bool:
    """Whether a quoted field is still open at the end of ``line``, as Excel and ``csv`` read it: a quote opens a
    field only at its start (a quote inside an unquoted field is a plain character), and ``""`` inside a quoted
    field is an escaped quote. ``open_``: whether the line starts inside a quoted field."""
    field_start = not open_
    skip = -1
    for m in _QUOTE_OR_COMMA.finditer(line):
        i = m.start()
        if i == skip:
            continue
        if open_:
            if m.group() == '"':
                if line.startswith('"', i + 1):
                    skip = i + 1  # an escaped quote
                else:
                    open_, field_start = False, False
        elif m.group() == ",":
            field_start = True
        else:
            open_ = field_start and (i == 0 or line[i - 1] == ",")
            field_start = False
    return open_


class FileError(ValueError):
    """The file as a whole cannot be read (encoding, header): the job fails with this message."""


def _parsed(reader: Any, start: int) -> Any:
    """``reader``'s rows; its errors (the records given to it are bounded, so none is expected) as the file's."""
    try:
        yield from reader
    except csv.Error as exc:
        raise FileError(f"line {start + reader.line_num}: {exc}") from None


@dataclass
class Raw:
    """One record of the file: its line (header = 1), its fields by name, or why it could not be parsed."""

    row: int
    values: dict[str, Any] | None
    error: str | None = None


@dataclass
class FileReader:
    kind: str
    fmt: str
    encoding: str = "auto"
    #: Lines parsed at a time (a 1 MiB chunk holds thousands of records: parsed whole, it holds up the event loop).
    slice_lines: int = 1000
    found_encoding: str | None = None
    warnings: list[str] = field(default_factory=list)
    bytes_read: int = 0
    _fields: list[str | None] | None = None
    _line: int = 0

    def _decoder(self, first: bytes) -> Any:
        """UTF-8 (a BOM is dropped) unless told otherwise or the first chunk that is not all ASCII is not UTF-8:
        then GB18030, which reads GBK and GB2312 too (what Excel on Chinese Windows saves as "CSV")."""
        choice = self.encoding
        if choice == "auto":
            try:
                codecs.getincrementaldecoder("utf-8-sig")().decode(first, final=False)
                choice = "utf-8"
            except UnicodeDecodeError:
                choice = "gbk"
        self.found_encoding = choice
        return codecs.getincrementaldecoder("utf-8-sig" if choice == "utf-8" else "gb18030")()

    async def _lines(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
        """Complete lines (line ends kept), a chunk's worth at a time. While the file is all ASCII (English headers
        and codes can fill the first chunks), its encoding is left open; the first other chunk decides it."""
        decoder, tail, lines_read = None, "", 0
        async for chunk in chunks:
            if decoder is None and (self.encoding != "auto" or not chunk.isascii()):
                decoder = self._decoder(chunk)
            try:
                text = tail + (decoder.decode(chunk) if decoder is not None else chunk.decode("ascii"))
            except UnicodeDecodeError as exc:
                raise FileError(f"the file is not valid {self.found_encoding} near byte "
                                f"{self.bytes_read + exc.start}; upload it again with the right encoding") from None
            self.bytes_read += len(chunk)
            lines = _LINE.findall(text)
            # An unfinished last line waits for the next chunk; so does a last "\r", whose "\n" may follow.
            tail = lines.pop() if lines and not lines[-1].endswith("\n") else ""
            if len(tail) > MAX_RECORD_CHARS or max(map(len, lines), default=0) > MAX_RECORD_CHARS:
                self._too_long([*lines, tail], lines_read)
            lines_read += len(lines)
            if lines:
                yield lines
        if decoder is None and self.bytes_read:
            self.found_encoding = "utf-8"  # all ASCII: it reads the same either way
        if decoder is not None:
            try:
                tail += decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise FileError(f"the file ends inside a {self.found_encoding} character") from None
        if tail:
            yield [tail + "\n"]

    def _too_long(self, lines: list[str], before: int) -> None:
        n, line = next((n, line) for n, line in enumerate(lines, before + 1) if len(line) > MAX_RECORD_CHARS)
        raise FileError(f"line {n} is longer than {MAX_RECORD_CHARS:,} characters"
                        + (": a JSON array is not JSON Lines (one object per line)"
                           if self.fmt == "jsonl" and line.lstrip().startswith("[") else ""))

    async def records(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Raw]]:
        """Batches of records in file order (a batch per ``slice_lines`` lines or so)."""
        parse = self._csv if self.fmt == "csv" else self._jsonl
        pending: list[str] = []
        pending_chars = 0
        open_quote = False
        async for lines in self._lines(chunks):
            complete: list[str] = []
            for line in lines:
                # A CSV record ends at a line end outside a quoted field.
                if self.fmt == "csv" and (open_quote or '"' in line):
                    open_quote = _quote_open_after(line, open_quote)
                pending.append(line)
                if not open_quote:
                    if len(pending) > SPAN_WARNING_LINES and len(self.warnings) < 50:
                        start = self._line + len(complete) + 1
                        self.warnings.append(f"lines {start}-{start + len(pending) - 1} are one record (a quoted "
                                             "cell with line breaks): if they should be several, a quote is not "
                                             "closed on its first line")
                    complete.extend(pending)
                    pending, pending_chars = [], 0
                    if len(complete) >= self.slice_lines:
                        batch = parse(complete)
                        complete = []
                        if batch:
                            yield batch
                    continue
                pending_chars += len(line)
                if len(pending) > MAX_RECORD_LINES or pending_chars > MAX_RECORD_CHARS:
                    start = self._line + len(complete) + 1  # lines before it: parsed, or waiting in ``complete``
                    raise FileError(f"a quoted field opened on line {start} is never closed")
            if complete:
                batch = parse(complete)
                if batch:
                    yield batch
        if open_quote:  # the file ends inside a quoted field: the records after its opening would vanish into it
            raise FileError(f"a quoted field opened on line {self._line + 1} is never closed")
        if pending:
            batch = parse(pending)
            if batch:
                yield batch
        if self._fields is None and self.fmt == "csv":
            raise FileError("the file is empty: a CSV file starts with a header row")

    def _csv(self, lines: list[str]) -> list[Raw]:
        out: list[Raw] = []
        reader = csv.reader(lines)
        start = self._line
        consumed = 0
        for cells in _parsed(reader, start):
            row = start + consumed + 1
            consumed = reader.line_num
            if not cells or not any(c.strip() for c in cells):
                continue
            if self._fields is None:
                try:
                    self._fields, warnings = map_headers(self.kind, cells)
                except ValueError as exc:
                    raise FileError(str(exc)) from None
                self.warnings.extend(warnings)
                continue
            # Empty cells are absent values: left out here, they take their defaults without any validator.
            values = {f: v for f, v in zip(self._fields, cells) if f is not None and v and not v.isspace()}
            extra = len(cells) - len(self._fields)
            out.append(Raw(row, keyed(self.kind, values)) if extra <= 0 or not any(c.strip() for c in cells[-extra:])
                       else Raw(row, None, f"{len(cells)} cells for {len(self._fields)} columns"))
        self._line = start + consumed
        return out

    def _jsonl(self, lines: list[str]) -> list[Raw]:
        out: list[Raw] = []
        for line in lines:
            self._line += 1
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                out.append(Raw(self._line, None, "not valid JSON"))
                continue
            if not isinstance(obj, dict):
                out.append(Raw(self._line, None, "each line must be one JSON object"))
                continue
            values, unknown = fields_of(self.kind, obj)
            if unknown and len(self.warnings) < 20:
                keys = ", ".join(unknown[:10]).replace("\x00", "\\x00")  # Postgres text holds no NUL
                self.warnings.append(f"line {self._line}: keys not used for {self.kind}: {keys}")
            out.append(Raw(self._line, keyed(self.kind, values)))
        return out
