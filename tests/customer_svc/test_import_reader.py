"""Reading an uploaded file back as records, whatever its chunking: encodings, Excel's line ends and quoting,
Chinese headers, JSON Lines; no database needed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from customer_svc.imports.reader import FileError, FileReader, Raw

TEXT = ('\ufeff客户编号,姓名,手机,备注\r\n'
        'E1,"张,三",13800138000,x\r\n'
        'E2,"李\n""四""",13900139000\r\n'
        '\r\n'
        'E3,王五,13700137000\r\n')


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def read(reader: FileReader, data: bytes, size: int) -> list[Raw]:
    return [r async for batch in reader.records(chunks(data, size)) for r in batch]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("encoding, data", [("utf-8", TEXT.encode("utf-8")),
                                            ("gbk", TEXT.replace("\ufeff", "").encode("gbk"))])
async def test_records_and_their_lines_whatever_the_chunks(size: int, encoding: str, data: bytes) -> None:
    reader = FileReader("customers", "csv")
    got = await read(reader, data, size)
    assert [(r.row, r.values) for r in got] == [
        (2, {"external_id": "E1", "name": "张,三", "phone": "13800138000"}),
        (3, {"external_id": "E2", "name": '李\n"四"', "phone": "13900139000"}),  # a quoted line break: one record
        (6, {"external_id": "E3", "name": "王五", "phone": "13700137000"}),
    ]
    assert reader.found_encoding == encoding
    assert reader.warnings == ["column '备注' is not used for customers"]
    assert reader.bytes_read == len(data)


@pytest.mark.parametrize("size", [4096, 1 << 20])
async def test_a_long_file_is_read_in_slices_without_splitting_a_record(size: int) -> None:
    """Thousands of records, every seventh with a quoted line break (two lines): slices end between records, so
    every record and its line number come out whole."""
    lines, expected, line = ["客户编号,姓名,手机"], [], 2
    for i in range(3_000):
        name = f'"客户\n{i}"' if i % 7 == 0 else f"客户{i}"
        lines.append(f"E{i},{name},1380013{i:04d}")
        expected.append((line, f"E{i}", name.strip('"')))
        line += 2 if i % 7 == 0 else 1
    reader = FileReader("customers", "csv")
    batches = [batch async for batch in reader.records(chunks("\r\n".join(lines).encode(), size))]
    assert max(len(b) for b in batches) <= 1_000
    assert [(r.row, r.values["external_id"], r.values["name"]) for b in batches for r in b] == expected


async def test_a_file_not_in_the_encoding_it_claims_fails_as_a_whole() -> None:
    data = ("客户编号,姓名,手机\n" + "E1,张三,13800138000\n" * 10).encode("gbk")
    with pytest.raises(FileError, match="not valid utf-8"):
        await read(FileReader("customers", "csv", encoding="utf-8"), data, 16)


async def test_a_header_without_the_required_columns_names_them() -> None:
    with pytest.raises(FileError, match="missing column.*phone"):
        await read(FileReader("customers", "csv"), "客户编号,姓名\nE1,张三\n".encode(), 1 << 20)
    with pytest.raises(FileError, match="empty"):
        await read(FileReader("customers", "csv"), b"", 1 << 20)


async def test_more_cells_than_columns_is_the_rows_error() -> None:
    got = await read(FileReader("customers", "csv"), "客户编号,姓名,手机\nE1,张三,13800138000,extra\n".encode(), 99)
    assert [(r.row, r.values, r.error) for r in got] == [(2, None, "4 cells for 3 columns")]


async def test_json_lines_with_chinese_keys_bad_lines_and_repair_orders_keyed_by_number() -> None:
    data = ('{"车架号": "LSVAU218XN2183294", "工单号": "RO-1", "维修类型": "首保", "结算时间": "2026-03-01 10:00"}\n'
            'not json\n'
            '\n'
            '[1, 2]\n').encode()
    got = await read(FileReader("visits", "jsonl"), data, 5)
    assert got[0].row == 1 and got[0].values == {"vin": "LSVAU218XN2183294", "ro_number": "RO-1",
                                                 "external_id": "RO-1", "visit_type": "首保",
                                                 "completed_at": "2026-03-01 10:00"}
    assert [(r.row, r.error) for r in got[1:]] == [(2, "not valid JSON"), (4, "each line must be one JSON object")]


async def test_a_quote_inside_an_unquoted_cell_is_a_plain_character() -> None:
    """`5" rim` (an unquoted cell with a quote in it) must not make the reader hold the rest of the file as one
    record: every row still comes back as its own record, in its own chunk's batch."""
    rim = '5" 轮毂'
    lines = ["客户编号,姓名,手机"] + [f"E{i},{rim if i == 1 else '张三'},138000000{i:02d}" for i in range(50)]
    reader = FileReader("customers", "csv")
    batches = [b async for b in reader.records(chunks("\n".join(lines).encode(), 200))]
    assert len(batches) > 5
    got = [r for b in batches for r in b]
    assert len(got) == 50 and got[1].values is not None and got[1].values["name"] == '5" 轮毂'


async def test_a_quoted_cell_never_closed_fails_the_file_instead_of_filling_memory() -> None:
    data = ("客户编号,姓名,手机\nE1,\"张三,13800138000\n" + "E2,李四,13900139000\n" * 1500).encode()
    for size in (64, 4096, 1 << 20):
        with pytest.raises(FileError, match="line 2 is never closed"):
            await read(FileReader("customers", "csv"), data, size)


async def test_a_record_too_long_for_the_parser_fails_the_file_with_its_line_never_the_parser() -> None:
    """A quote left open a few hundred long lines before the end, or one cell past the CSV parser's limit: the
    job fails naming the line (a parser error escaping would leave it to be taken over and crash again)."""
    long_rows = "".join(f"E{i},{'李' * 200},13900139000\n" for i in range(700))
    open_quote = ("客户编号,姓名,手机\nE1,\"张三,13800138000\n" + long_rows).encode()
    one_cell = ("客户编号,姓名,手机\nE1,张三,13800138000\n" + f"E2,\"{'x' * 140_000}\",13800138000\n").encode()
    for size in (4096, 1 << 20):
        with pytest.raises(FileError, match="line 2 is never closed"):
            await read(FileReader("customers", "csv"), open_quote, size)
        with pytest.raises(FileError, match="line 3 is longer than"):
            await read(FileReader("customers", "csv"), one_cell, size)


async def test_a_json_array_uploaded_as_json_lines_fails_at_once_instead_of_filling_memory() -> None:
    one_line = ("[" + ",".join('{"vin": "LSVAU218XN2183294", "delivery_date": "2025-12-03"}'
                               for _ in range(20_000)) + "]").encode()
    reader = FileReader("deliveries", "jsonl")
    with pytest.raises(FileError, match="line 1 is longer than .*JSON array is not JSON Lines"):
        await read(reader, one_line, 64 * 1024)
    assert reader.bytes_read < 512 * 1024  # it stopped within the first few chunks


@pytest.mark.parametrize("size", [256, 1 << 20])
async def test_an_ascii_start_leaves_the_encoding_open_until_the_first_other_bytes(size: int) -> None:
    """English headers and codes can fill the first chunks of a GBK file: they decide nothing."""
    lines = ["external_id,name,phone"] + [f"E{i},Zhang San,1380013{i:04d}" for i in range(30)] + \
            ["E30,王五,13700137000"]
    reader = FileReader("customers", "csv")
    got = await read(reader, "\r\n".join(lines).encode("gbk"), size)
    assert len(got) == 31 and got[-1].values is not None and got[-1].values["name"] == "王五"
    assert reader.found_encoding == "gbk"
    ascii_only = FileReader("customers", "csv")
    assert len(await read(ascii_only, "\n".join(lines[:-1]).encode(), size)) == 30
    assert ascii_only.found_encoding == "utf-8"


async def test_headers_as_templates_and_input_methods_write_them() -> None:
    """Full-width letters and brackets, a bracketed note after the name, the "*" of a required column; Excel's
    empty trailing columns are no warning."""
    data = "客户编号*,姓名,手机号码（必填）,车架号(VIN),ＣＯＬＯＲ,,\nE1,张三,13800138000,LSVAU218XN2183294,白,,\n"
    reader = FileReader("customers", "csv")
    [raw] = await read(reader, data.encode(), 1 << 20)
    assert raw.values == {"external_id": "E1", "name": "张三", "phone": "13800138000", "vin": "LSVAU218XN2183294",
                          "colour": "白"}
    assert reader.warnings == []


async def test_a_second_numbers_column_named_after_the_first_is_the_second_number() -> None:
    """手机(备用) is not 手机 with a note: a file with only the backup column does not make it the main number."""
    data = "客户编号,姓名,手机号码,手机（备用）,联系电话2\nE1,张三,13800138000,13900139000,\n"
    reader = FileReader("customers", "csv")
    [raw] = await read(reader, data.encode(), 1 << 20)
    assert raw.values == {"external_id": "E1", "name": "张三", "phone": "13800138000", "phone2": "13900139000"}
    assert reader.warnings == ["column '联系电话2' repeats phone2; the first one is used"]


async def test_a_record_spanning_several_lines_is_reported_among_the_warnings() -> None:
    """A DMS that does not escape quotes makes several rows one record, silently; the job's warnings say where."""
    data = ('客户编号,姓名,手机,地址\nE1,张三,13800138000,"XX路1号\n'
            + "".join(f"E{i},李四,1390013900{i},某地\n" for i in range(2, 6)) + 'E6,王五,13700137000,5"轮毂"\n'
            + "E7,赵六,13600136000,某地\n").encode()
    reader = FileReader("customers", "csv")
    got = await read(reader, data, 1 << 20)
    assert [r.row for r in got] == [2, 8]
    assert reader.warnings == ["lines 2-7 are one record (a quoted cell with line breaks): if they should be several, "
                               "a quote is not closed on its first line"], reader.warnings
