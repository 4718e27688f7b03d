"""Bad input at the command line (issue 2 item 2): `assoc scan BUNDLE --out OUT` exits 2 naming file and line.

Every bad-input case of the issue goes through the CLI once, in one of these places: here, or
tests/test_bundle.py's CLI section (a signal for an unknown store; more than twenty problems of one kind;
--skip-invalid for one unknown-store row and for undecodable rows; a missing stores.csv column under
--skip-invalid). This file adds the other cases, each with and without --skip-invalid.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from assoc.cli import main

STORES = "store_id,name\nS1,One\nS2,Two\n"
SIGNALS = "store_id,kind,value\nS1,ip,81.2.69.160\nS2,ip,81.2.69.160\n"
GOOD = {"stores.csv": STORES, "signals.csv": SIGNALS}


def _scan(root: Path, out: Path, *flags: str):
    args = ["scan", str(root), "--out", str(out), "--no-cache", "--no-images", "--quiet", *flags]
    return CliRunner().invoke(main, args)


def _rejected(out: Path) -> list[dict[str, str]]:
    with open(out / "rejected.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# (case, files over the good bundle, file, line, reason, the rejected row's content)
ROW_CASES = [
    ("empty store_id", {"stores.csv": STORES + ",Three\n"},
     "stores.csv", 4, "empty store_id; every store needs an id", ",Three"),
    ("duplicate store_id", {"stores.csv": STORES + "S1,Again\n"},
     "stores.csv", 4, "duplicate store_id 'S1' (first at line 2); store ids must be unique", "S1,Again"),
    ("product for an unknown store", {"products.csv": "store_id,product_id,title\nS1,P1,Mug\nS7,P1,Mug\n"},
     "products.csv", 3, "unknown store_id 'S7'; every store_id must appear in stores.csv", "S7,P1,Mug"),
    ("bad encoding", {"signals.csv": SIGNALS.encode() + b"S2,person_name,Jos\xe9\n"},
     "signals.csv", 4, "bad encoding: the row is not valid UTF-8; re-export the file as UTF-8",
     "S2,person_name,Jos\ufffd"),
    ("malformed row", {"signals.csv": SIGNALS + "S1,email,a@example.com,extra\n"},
     "signals.csv", 4, "malformed row: 4 fields where the header has 3", "S1,email,a@example.com,extra"),
    ("empty value", {"signals.csv": SIGNALS + "S2,phone,\n"},
     "signals.csv", 4, "empty value for kind 'phone'; leave unknown signals out", "S2,phone,"),
    # JSONL: a store line's content in rejected.csv is the line as written (tested below)
    ("empty store_id in stores.jsonl", {"stores.jsonl": '{"store_id": "S1"}\n{"name": "no id"}\n'},
     "stores.jsonl", 2, "empty store_id; every store needs an id", None),
    ("duplicate store_id in stores.jsonl", {"stores.jsonl": '{"store_id": "S1"}\n{"store_id": "S1", "name": "b"}\n'},
     "stores.jsonl", 2, "duplicate store_id 'S1' (first at line 1); store ids must be unique", None),
]


def _files(changes: dict[str, str | bytes]) -> dict[str, str | bytes]:
    if "stores.jsonl" in changes:
        return dict(changes)  # the JSONL form stands alone
    return {**GOOD, **changes}


@pytest.mark.parametrize(("changes", "file", "line", "reason", "content"), [c[1:] for c in ROW_CASES],
                         ids=[c[0] for c in ROW_CASES])
def test_a_bad_row_exits_2_naming_file_and_line(write_bundle_files, tmp_path, changes, file, line, reason, content):
    root = write_bundle_files(_files(changes))
    out = tmp_path / "out"
    result = _scan(root, out)
    assert result.exit_code == 2, result.output
    assert f"  - {file} line {line}: {reason}\n" in result.output
    assert "the bundle has 1 problem(s)" in result.output and "--skip-invalid" in result.output
    assert "Traceback" not in result.output
    assert not (out / "pairs.csv").exists()


@pytest.mark.parametrize(("changes", "file", "line", "reason", "content"), [c[1:] for c in ROW_CASES],
                         ids=[c[0] for c in ROW_CASES])
def test_skip_invalid_scans_the_rest_and_writes_the_row_to_rejected_csv(write_bundle_files, tmp_path, changes,
                                                                        file, line, reason, content):
    root = write_bundle_files(_files(changes))
    out = tmp_path / "out"
    result = _scan(root, out, "--skip-invalid")
    assert result.exit_code == 0, result.output
    [row] = _rejected(out)
    assert row == {"file": file, "line": str(line), "reason": reason, "content": row["content"] if content is None
                   else content}
    assert row["content"]  # never an empty trace of what was left out
    assert (out / "pairs.csv").exists() and (out / "clusters.csv").exists()


@pytest.mark.parametrize(("files", "expected"), [
    ({"stores.csv": STORES, "signals.csv": "store_id,value\nS1,81.2.69.160\n"},
     "signals.csv line 1: missing required column(s) kind; the header is store_id,value"),
    ({**GOOD, "products.csv": "store_id,title\nS1,Mug\n"},
     "products.csv line 1: missing required column(s) product_id; the header is store_id,title"),
    ({"stores.csv": "id,name\nS1,One\n"},
     "stores.csv line 1: missing required column(s) store_id; the header is id,name"),
])
@pytest.mark.parametrize("flags", [(), ("--skip-invalid",)], ids=["strict", "skip-invalid"])
def test_a_missing_required_column_exits_2_in_both_modes(write_bundle_files, tmp_path, files, expected, flags):
    out = tmp_path / "out"
    result = _scan(write_bundle_files(files), out, *flags)
    assert result.exit_code == 2, result.output
    assert f"  - {expected}\n" in result.output
    assert not (out / "pairs.csv").exists() and not (out / "rejected.csv").exists()


# Twenty-seven problems of every row kind across the three files, in the order the reader reports them.
MANY_STORES = "store_id,name\nS1,One\nS2,Two\n" + "".join(f",empty{n}\n" for n in range(5)) + "S1,again\n"
MANY_SIGNALS = (b"store_id,kind,value\nS1,ip,81.2.69.160\n" + b"".join(f"S9,ip,10.0.0.{n}\n".encode() for n in range(8))
                + b"S2,phone,\nS1,ip,1,2\nS2,person_name,\xff\n" + b"".join(b"S2,email,\n" for _ in range(4)))
MANY_PRODUCTS = "store_id,product_id\nS1,P1\n" + "".join(f"S8,P{n}\n" for n in range(6))


def _expected_many() -> list[str]:
    problems = [f"stores.csv line {4 + n}: empty store_id; every store needs an id" for n in range(5)]
    problems.append("stores.csv line 9: duplicate store_id 'S1' (first at line 2); store ids must be unique")
    problems += [f"signals.csv line {3 + n}: unknown store_id 'S9'; every store_id must appear in stores.csv"
                 for n in range(8)]
    problems += ["signals.csv line 11: empty value for kind 'phone'; leave unknown signals out",
                 "signals.csv line 12: malformed row: 4 fields where the header has 3",
                 "signals.csv line 13: bad encoding: the row is not valid UTF-8; re-export the file as UTF-8"]
    problems += [f"signals.csv line {14 + n}: empty value for kind 'email'; leave unknown signals out"
                 for n in range(4)]
    problems += [f"products.csv line {3 + n}: unknown store_id 'S8'; every store_id must appear in stores.csv"
                 for n in range(6)]
    return problems


def test_more_than_twenty_problems_of_every_kind_show_the_first_twenty_and_a_count(write_bundle_files, tmp_path):
    root = write_bundle_files({"stores.csv": MANY_STORES, "signals.csv": MANY_SIGNALS, "products.csv": MANY_PRODUCTS})
    expected = _expected_many()
    assert len(expected) == 27
    result = _scan(root, tmp_path / "out")
    assert result.exit_code == 2, result.output
    listed = [line[4:] for line in result.output.splitlines() if line.startswith("  - ")]
    assert listed == expected[:20]
    assert "the bundle has 27 problem(s)" in result.output
    assert "... and 7 more" in result.output


def test_skip_invalid_writes_one_rejected_row_per_bad_row_with_its_reason(write_bundle_files, tmp_path):
    root = write_bundle_files({"stores.csv": MANY_STORES, "signals.csv": MANY_SIGNALS, "products.csv": MANY_PRODUCTS})
    out = tmp_path / "out"
    result = _scan(root, out, "--skip-invalid")
    assert result.exit_code == 0, result.output
    rows = _rejected(out)
    assert [f"{r['file']} line {r['line']}: {r['reason']}" for r in rows] == _expected_many()
    assert all(r["content"] for r in rows if r["file"] != "stores.csv")  # each row shows what was left out
    # the good rows were scanned: the two good stores, and the rejected rows counted in the summary
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))["summary"]
    assert summary["stores"] == 2 and summary["rejected_rows"] == len(rows)


def test_a_rejected_jsonl_store_line_is_kept_as_written_in_rejected_csv(write_bundle_files, tmp_path):
    line = '{"store_id": "S1", "name": "dup", "signals": [{"kind": "phone", "value": "+86 138 0013 8000"}]}'
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1"}\n' + line + "\n"})
    out = tmp_path / "out"
    assert _scan(root, out, "--skip-invalid").exit_code == 0
    [row] = _rejected(out)
    assert (row["file"], row["line"]) == ("stores.jsonl", "2")
    assert row["content"] == line
