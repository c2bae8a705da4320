import bz2
import gzip
import random

import pytest

from kgscale.kg.lines import iter_lines, plan_ranges


def _all_lines(path, target):
    out = []
    for rng in plan_ranges([str(path)], target):
        out.extend(iter_lines(rng, block=7))
    return out


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_ranges_own_every_line_exactly_once(tmp_path, trailing_newline):
    rnd = random.Random(0)
    lines = [("x" * rnd.randint(0, 30)).encode() for _ in range(300)]
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    expected, pos = [], 0
    for line in lines:
        expected.append((pos, line))
        pos += len(line) + 1
    for target in (1, 2, 3, 5, 17, 64, 1000, 10**6):
        got = _all_lines(path, target)
        assert got == expected, target
        # offsets point at the line in the file
        for off, line in got:
            assert data[off : off + len(line)] == line


def test_crlf_and_range_starting_exactly_at_a_line(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"ab\r\ncd\r\nef\r\n")
    assert _all_lines(path, 4) == [(0, b"ab"), (4, b"cd"), (8, b"ef")]


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (bz2.open, ".bz2")])
def test_compressed_files_are_one_range_with_stream_offsets(tmp_path, opener, suffix):
    path = tmp_path / f"f.txt{suffix}"
    with opener(path, "wb") as f:
        f.write(b"a\nbb\nccc\n")
    ranges = plan_ranges([str(path)], 1)
    assert len(ranges) == 1 and ranges[0].compressed
    assert list(iter_lines(ranges[0])) == [(0, b"a"), (2, b"bb"), (5, b"ccc")]


def test_plan_rejects_nonpositive_target(tmp_path):
    (tmp_path / "f").write_bytes(b"a\n")
    with pytest.raises(ValueError):
        plan_ranges([str(tmp_path / "f")], 0)


def test_chunks_cover_the_same_lines_as_iter_lines(tmp_path):
    from kgscale.kg.lines import iter_chunks

    rnd = random.Random(1)
    lines = [("y" * rnd.randint(0, 40)).encode() for _ in range(500)]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    for target in (1, 3, 50, 333, 10**6):
        for block in (5, 64, 1 << 20):
            got = []
            for rng in plan_ranges([str(path)], target):
                for off, chunk in iter_chunks(rng, block=block):
                    assert data[off : off + len(chunk)] == chunk
                    pos = off
                    for line in chunk.split(b"\n")[:-1] if chunk.endswith(b"\n") else chunk.split(b"\n"):
                        got.append((pos, line))
                        pos += len(line) + 1
            expected = [x for rng in plan_ranges([str(path)], target) for x in iter_lines(rng)]
            assert got == expected, (target, block)


def test_read_tasks_hand_ray_data_few_large_blocks_in_order():
    import pyarrow as pa

    from kgscale.kg.sources.range_read import coalesce

    tables = [pa.table({"x": list(range(i * 10, i * 10 + 10))}) for i in range(7)]
    blocks = list(coalesce(iter(tables), rows=25))
    assert [b.num_rows for b in blocks] == [30, 30, 10]
    assert sum((b["x"].to_pylist() for b in blocks), []) == list(range(70))
    assert list(coalesce(iter([]), rows=25)) == []
