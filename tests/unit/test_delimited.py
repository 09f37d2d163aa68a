"""A user's own delimited file (``--format csv``): columns by their usual names or by ``--columns``, times in any
common unit, event types by the wire's aliases, and errors that name the line or the flag."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from stream_rec.cli import main
from stream_rec.datasets import detect_format, load
from stream_rec.datasets.delimited import parse_columns
from stream_rec.errors import DatasetError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_plain_csv_with_the_usual_names_is_found_and_read_in_time_order(tmp_path: Path) -> None:
    path = write(tmp_path / "my.csv", "user_id,item_id,timestamp\nu1,a,1700000002\nu2,b,1700000001\nu1,c,1700000002\n")
    assert detect_format(path) == "csv"
    events = load(path)
    assert [(e.user_id, e.item_id, e.event, e.ts) for e in events] == [
        ("u2", "b", "view", 1700000001.0),  # without an event column every row is a view
        ("u1", "a", "view", 1700000002.0),  # ties keep the file's order
        ("u1", "c", "view", 1700000002.0),
    ]
    assert all(e.item == {} for e in events)


def test_event_types_by_their_aliases_milliseconds_and_categories(tmp_path: Path) -> None:
    # RetailRocket's events.csv: times in ms, visitorid/itemid, view/addtocart/transaction.
    path = write(
        tmp_path / "events.csv",
        "timestamp,visitorid,event,itemid,transactionid,categoryid\n"
        "1433221332117,7,view,355908,,12\n"
        "1433221332118,7,addtocart,355908,,12\n"
        "1433221332119,7,transaction,355908,4000,\n",
    )
    events = load(path)
    assert [e.event for e in events] == ["view", "add_to_cart", "purchase"]
    assert events[0].ts == pytest.approx(1433221332.117)
    assert (events[0].user_id, events[0].item_id) == ("7", "355908")
    assert [e.item for e in events] == [{"category": "12"}, {"category": "12"}, {}]


def test_columns_named_by_the_flag_in_a_tab_separated_file_with_iso_times(tmp_path: Path) -> None:
    path = write(tmp_path / "log.tsv", "who\twhat\twhen\na\tx\t2024-03-01T10:00:00\nb\ty\t2024-03-01T09:00:00+01:00\n")
    with pytest.raises(DatasetError, match=r"cannot tell the format .* pass --format .*--columns"):
        load(path)
    with pytest.raises(DatasetError, match=r"no user or item or ts column among who, what, when; .*--columns"):
        load(path, fmt="csv")
    events = load(path, columns=parse_columns("user=who,item=what,ts=when"))
    naive_is_utc = datetime(2024, 3, 1, 10, tzinfo=UTC).timestamp()
    assert [(e.user_id, e.ts) for e in events] == [("b", naive_is_utc - 3600 * 2), ("a", naive_is_utc)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("u,i,1700000000,view\nu,i,1700000001\n", r"line 3: expected 4 fields as the header has, got 3"),
        ("u,i,yesterday,view\n", r"line 2: field 'ts' is not an ISO 8601 time"),
        ("u,i,1700000000,like\n", r"line 2: unknown event type 'like'"),
        ("u,i,17,view\n", r"line 2: field 'ts' = 17 is not Unix seconds"),
        (",i,1700000000,view\n", r"line 2: field 'user_id' must have 1\.\.256 chars"),
    ],
)
def test_a_bad_row_names_the_file_and_line(tmp_path: Path, body: str, reason: str) -> None:
    path = write(tmp_path / "bad.csv", "user,item,ts,event\n" + body)
    with pytest.raises(DatasetError, match=rf"bad\.csv, {reason}"):
        load(path)


def test_columns_errors_name_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "a,b,c\n1,2,1700000000\n")
    with pytest.raises(DatasetError, match=r"--columns item=nope: no such column; the header has a, b, c"):
        load(path, columns={"user": "a", "item": "nope", "ts": "c"})
    with pytest.raises(DatasetError, match=r"--columns: unknown role 'usr'"):
        parse_columns("usr=a")
    with pytest.raises(DatasetError, match=r"--columns: expected role=column"):
        parse_columns("user")
    ratings = write(tmp_path / "u.data", "1\t10\t5\t880000000\n")
    with pytest.raises(DatasetError, match=r"--columns names the columns of a csv file; .* is read as movielens"):
        load(ratings, columns={"user": "a"})


def test_evaluate_reads_a_csv_with_named_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = "".join(f"s{n % 7}\tp{(n * 3) % 11}\t{1_700_000_000 + n}\n" for n in range(200))
    path = write(tmp_path / "log.txt", "session\tproduct\twhen\n" + rows)
    out = tmp_path / "report.json"
    argv = ["evaluate", str(path), "--columns", "ts=when", "--models", "popularity", "--json", str(out)]
    assert main(argv) == 0
    report = orjson.loads(out.read_bytes())
    assert report["events"] == 200
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(path), "--columns", "usr=session"])
    assert exit_.value.code == 2
    assert "argument --columns: unknown role 'usr'" in capsys.readouterr().err
