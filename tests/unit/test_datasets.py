"""Dataset readers: event-time order, field mapping, detection and errors a user can act on.

Tiny files are written to tmp_path; the real datasets under ../shared/data are checked (marker ``data``)
against the counts their PROVENANCE.md states, and skipped where the folder is absent.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import orjson
import pytest

from stream_rec.datasets import FORMATS, default_dataset, detect_format, iter_events, load
from stream_rec.errors import DatasetError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

U_DATA = "3\t30\t4\t880000002\n1\t10\t5\t880000000\n2\t20\t1\t880000002\n1\t20\t3\t880000001\n"
U_GENRE = "unknown|0\nAction|1\nComedy|2\n\n"
U_ITEM = (
    "10|Caf\xe9 (1995)|01-Jan-1995||http://x|0|0|1\n"  # latin-1 byte in the title, as in the real file
    "20|Two (1996)|01-Jan-1996||http://y|0|1|1\n"
    "30|None (1997)|01-Jan-1997||http://z|0|0|0\n"
)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def jsonl(path: Path, *objs: object) -> Path:
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    return path


# --- movielens ---------------------------------------------------------------------------------------------


def test_movielens_is_sorted_by_time_with_ties_in_file_order(tmp_path: Path) -> None:
    events = load(write(tmp_path / "u.data", U_DATA))
    assert [(e.user_id, e.item_id) for e in events] == [("1", "10"), ("1", "20"), ("3", "30"), ("2", "20")]
    assert [e.ts for e in events] == [880000000.0, 880000001.0, 880000002.0, 880000002.0]
    assert {e.event for e in events} == {"view"}
    assert [e.context for e in events] == [{"rating": 5}, {"rating": 3}, {"rating": 4}, {"rating": 1}]
    assert all(e.item == {} for e in events)  # no u.item beside it
    assert len({e.event_id for e in events}) == 4


def test_movielens_reads_first_genre_from_latin1_u_item(tmp_path: Path) -> None:
    write(tmp_path / "u.data", U_DATA)
    write(tmp_path / "u.item", U_ITEM, "latin-1")
    write(tmp_path / "u.genre", U_GENRE)
    by_item = {e.item_id: e.item for e in load(tmp_path)}  # a folder means its u.data
    assert by_item == {"10": {"category": "Comedy"}, "20": {"category": "Action"}, "30": {}}


def test_movielens_bad_line_names_its_number(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", "1\t10\t5\t880000000\n1\t20\tfive\t880000001\n")
    with pytest.raises(DatasetError, match=r"u\.data, line 2: rating and timestamp must be numbers"):
        load(path)
    write(path, "1\t10\t5\t880000000\n\n1\t20\n")
    with pytest.raises(DatasetError, match=r"line 3: expected 4 TAB-separated fields"):
        load(path)


def test_movielens_1m_ratings_dat_with_movies_dat(tmp_path: Path) -> None:
    write(tmp_path / "ratings.dat", "2::20::3::978300001\n1::10::5::978300000\n1::30::4::978300002\n")
    write(tmp_path / "movies.dat", "10::Caf\xe9 (1995)::Comedy|Drama\n20::Two (1996)::Action\n", "latin-1")
    events = load(tmp_path)  # the folder means its ratings.dat
    assert [(e.user_id, e.item_id, e.context, e.item) for e in events] == [
        ("1", "10", {"rating": 5}, {"category": "Comedy"}),
        ("2", "20", {"rating": 3}, {"category": "Action"}),
        ("1", "30", {"rating": 4}, {}),
    ]
    assert detect_format(tmp_path / "ratings.dat") == "movielens"
    write(tmp_path / "ratings.dat", "1::10::5::978300000\n1::20::5\n")
    with pytest.raises(DatasetError, match=r"ratings\.dat, line 2: expected 'user::item::rating::timestamp'"):
        load(tmp_path / "ratings.dat")


def test_movielens_20m_ratings_csv_with_half_stars_and_movies_csv(tmp_path: Path) -> None:
    write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,10,3.5,1112486027\n1,20,4.0,1112484676\n7,30,1.0,1112484700\n",
    )
    write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n10,"Comma, The (1995)",Adventure|Comedy\n30,Zero (1999),(no genres listed)\n',
    )
    events = load(tmp_path / "ratings.csv")
    assert [(e.user_id, e.item_id, e.ts) for e in events] == [
        ("1", "20", 1112484676.0), ("7", "30", 1112484700.0), ("1", "10", 1112486027.0)
    ]  # fmt: skip
    assert [e.context for e in events] == [{"rating": 4}, {"rating": 1}, {"rating": 3.5}]
    assert [e.item for e in events] == [{}, {}, {"category": "Adventure"}]
    # Named otherwise, it is still told by its header; without the header it is refused.
    (tmp_path / "sub").mkdir()
    copy = write(tmp_path / "sub" / "mine.txt", (tmp_path / "ratings.csv").read_text())
    assert detect_format(copy) == "movielens" and len(load(copy)) == 3
    write(tmp_path / "ratings.csv", "1,10,3.5,1112486027\n")
    with pytest.raises(DatasetError, match="expected the header 'userId,movieId,rating,timestamp'"):
        load(tmp_path / "ratings.csv", "movielens")


# --- taobao ------------------------------------------------------------------------------------------------


def test_taobao_maps_behaviours_and_category(tmp_path: Path) -> None:
    path = write(
        tmp_path / "UserBehavior.csv",
        "1,100,7,pv,1511658000\n1,100,7,cart,1511658005\n2,200,8,fav,1511658003\n2,200,8,buy,1511658005\n",
    )
    events = load(path)
    assert [(e.user_id, e.event) for e in events] == [
        ("1", "view"),
        ("2", "favorite"),
        ("1", "add_to_cart"),
        ("2", "purchase"),
    ]
    assert events[0].item == {"category": "7"} and events[0].context == {}


def test_taobao_unknown_behaviour_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "UserBehavior.csv", "1,100,7,pv,1511658000\n1,100,7,like,1511658001\n")
    with pytest.raises(DatasetError, match=r"line 2: behavior must be one of pv, cart, fav, buy"):
        load(path)


# --- diginetica -------------------------------------------------------------------------------------------


def test_diginetica_session_users_timestamps_and_categories(tmp_path: Path) -> None:
    write(tmp_path / "product-categories.csv", "itemId;categoryId\n81766;5\n31331;9\n999;1")
    path = write(
        tmp_path / "sample_train-item-views.csv",
        "session_id;user_id;item_id;timeframe;eventdate\n"
        # The last line has no final newline, as in the real file.
        "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n2;77;4242;0;2016-05-08",
    )
    events = load(path)
    midnight = 1462752000.0  # 2016-05-09T00:00:00Z
    assert [(e.user_id, e.item_id, e.ts) for e in events] == [
        ("s2", "4242", midnight - 86400),
        ("s1", "81766", midnight + 526.309),
        ("s1", "31331", midnight + 1031.018),
    ]
    assert [e.item for e in events] == [{}, {"category": "5"}, {"category": "9"}]
    assert {e.event for e in events} == {"view"}
    assert detect_format(tmp_path) == "diginetica"


def test_diginetica_purchases_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "train-purchases.csv",
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n150;18278;1000;2016-05-06;16421;25911\n",
    )
    [event] = load(path)
    assert (event.user_id, event.item_id, event.event) == ("s150", "25911", "purchase")


def test_diginetica_bad_date_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "views.csv", "session_id;user_id;item_id;timeframe;eventdate\n1;NA;5;10;09/05/2016\n")
    with pytest.raises(DatasetError, match=r"line 2: eventdate must be YYYY-MM-DD"):
        load(path)


# --- sequences (one user per line, S3-Rec's Amazon files) ---------------------------------------------------


def test_sequences_interleave_users_on_one_timeline(tmp_path: Path) -> None:
    # User 2's 2 items at 1/4 and 3/4 of the timeline; user 10's 4 at 1/8, 3/8, 5/8, 7/8; user 1's 1 at 1/2.
    path = write(tmp_path / "Toys.txt", "10 a b c d\n2 x y\n1 m\n")
    events = load(path)
    assert [(e.user_id, e.item_id) for e in events] == [
        ("10", "a"), ("2", "x"), ("10", "b"), ("1", "m"), ("10", "c"), ("2", "y"), ("10", "d"),
    ]  # fmt: skip
    assert all(e.event == "click" and not e.item for e in events)
    assert all(a.ts < b.ts for a, b in pairwise(events))
    assert events[3].ts - events[0].ts == pytest.approx((1 / 2 - 1 / 8) * 365 * 86_400)
    # Ties (the same fraction) go by user id as a number, then by place in the user's list.
    tied = load(write(tmp_path / "tied.txt", "10 a b\n9 p q\n"))
    assert [(e.user_id, e.item_id) for e in tied] == [("9", "p"), ("10", "a"), ("9", "q"), ("10", "b")]


def test_sequences_take_attributes_as_side_features_rarest_first(tmp_path: Path) -> None:
    path = write(tmp_path / "Toys_and_Games.txt", "1 4 5\n2 5 6\n")
    (tmp_path / "Toys_and_Games_item2attributes.json").write_bytes(orjson.dumps({"4": [1, 2], "5": [2, 3], "6": [2]}))
    events = {e.item_id: e.item for e in load(path)}
    assert events["4"] == {"attr1": "1", "attr2": "1"} and list(events["5"]) == ["attr3", "attr2"]
    assert events["6"] == {"attr2": "1"}
    assert detect_format(path) == "sequences" and detect_format(tmp_path) == "sequences"
    (tmp_path / "Toys_and_Games_item2attributes.json").write_text('{"4": "not a list"}')
    with pytest.raises(DatasetError, match=r"item2attributes\.json: expected an object of item id -> list"):
        load(path)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("1 2 3\n7\n", r"line 2: expected 'user item_1 item_2 \.\.\.'"),
        ("1 2\n1 3\n", r"line 2: user '1' has a line already"),
    ],
)
def test_sequences_bad_line_names_the_file_and_line(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path / "seq.txt", text)
    with pytest.raises(DatasetError, match=rf"seq\.txt, {reason}"):
        load(path, fmt="sequences")


# --- events (JSON lines) -----------------------------------------------------------------------------------


def test_events_jsonl_validates_aliases_and_sorts(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "events.jsonl",
        {"user_id": "u1", "item_id": "i2", "event": "buy", "ts": 1700000010, "context": {"device": "mobile"}},
        {"user_id": "u1", "item_id": "i1", "event": "pv", "ts": "2023-11-14T22:13:20Z", "event_id": "e-1"},
    )
    first, second = load(path)
    assert (first.event, first.ts, first.event_id) == ("view", 1700000000.0, "e-1")
    assert (second.event, second.context) == ("purchase", {"device": "mobile"})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"user_id": "u", "item_id": "i", "event": "like", "ts": 1700000000}', "unknown event type 'like'"),
        (b'{"user_id": "u", "item_id": "i", "event": "view"}', "field 'ts' is required"),
    ],
)
def test_events_bad_line_names_its_number_and_reason(tmp_path: Path, line: bytes, reason: str) -> None:
    good = orjson.dumps({"user_id": "u", "item_id": "i", "event": "view", "ts": 1700000000})
    path = tmp_path / "events.jsonl"
    path.write_bytes(good + b"\n\n" + line + b"\n")
    with pytest.raises(DatasetError, match=r"events\.jsonl, line 3: ") as info:
        load(path)
    assert reason in str(info.value)


# --- load: limit, formats, detection, errors ---------------------------------------------------------------


def test_limit_takes_the_first_events_in_time_order(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", U_DATA)
    assert load(path, limit=2) == load(path)[:2]
    assert [e.ts for e in load(path, limit=1)] == [880000000.0]
    assert load(path, limit=0) == []
    assert len(load(path, limit=100)) == 4
    with pytest.raises(ValueError, match="limit"):
        load(path, limit=-1)


def test_iter_events_matches_load(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", U_DATA)
    assert list(iter_events(path)) == load(path)


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("ratings.tsv", U_DATA, "movielens"),
        ("log.csv", "1,100,7,pv,1511658000\n", "taobao"),
        ("views.txt", "sessionId;userId;itemId;timeframe;eventdate\n1;NA;5;10;2016-05-09\n", "diginetica"),
        ("dump.txt", '\n{"user_id": "u", "item_id": "i", "event": "view", "ts": 1700000000}\n', "events"),
        ("x.ndjson", "", "events"),  # the extension decides before the content
        ("UserBehavior_part.csv", "", "taobao"),
    ],
)
def test_auto_detection(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    assert detect_format(write(tmp_path / name, text)) == fmt


def test_explicit_format_and_aliases(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.txt", U_DATA)
    assert load(path, fmt="movielens") == load(path, fmt="ml-100k") == load(path)
    assert set(FORMATS) == {"movielens", "taobao", "diginetica", "sequences", "events", "csv"}
    with pytest.raises(DatasetError, match="unknown dataset format 'parquet'"):
        load(path, fmt="parquet")


def test_wrong_format_fails_on_the_first_line(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", U_DATA)
    with pytest.raises(DatasetError, match="line 1: expected 5 comma-separated fields"):
        load(path, fmt="taobao")


def test_missing_and_undetectable_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset not found: .*nope\.csv does not exist"):
        load(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match=r"cannot tell the format .* pass --format with one of"):
        load(write(tmp_path / "mystery.txt", "hello, world\n"))
    with pytest.raises(DatasetError, match="is empty"):
        load(write(tmp_path / "empty.txt", "\n"))
    with pytest.raises(DatasetError, match="folder without a known dataset file"):
        load(tmp_path)


def test_default_dataset(tmp_path: Path) -> None:
    assert default_dataset(tmp_path) is None
    (tmp_path / "ml-100k").mkdir()
    u_data = write(tmp_path / "ml-100k" / "u.data", U_DATA)
    assert default_dataset(tmp_path) == u_data.resolve()


# --- the real datasets -------------------------------------------------------------------------------------


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared datasets at {SHARED_DATA.resolve()} (see ../shared/data/README.md)")
    return SHARED_DATA


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.resolve()} is missing")
    return path


@pytest.mark.data
def test_real_movielens(shared_data: Path) -> None:
    events = load(_require(shared_data / "ml-100k"))
    assert len(events) == 100_000
    assert len({e.user_id for e in events}) == 943 and len({e.item_id for e in events}) == 1682
    assert (events[0].ts, events[-1].ts) == (874724710.0, 893286638.0)
    assert all(a.ts <= b.ts for a, b in pairwise(events))
    assert Counter(e.context["rating"] for e in events) == {1: 6110, 2: 11370, 3: 27145, 4: 34174, 5: 21201}
    assert all("category" in e.item for e in events)
    assert default_dataset(shared_data) == (shared_data / "ml-100k" / "u.data").resolve()


@pytest.mark.data
def test_real_taobao(shared_data: Path) -> None:
    path = _require(shared_data / "taobao-userbehavior" / "UserBehavior_timeslice_20171126.csv")
    events = load(path)
    assert len(events) == 96_168
    assert Counter(e.event for e in events) == {
        "view": 85_773,
        "add_to_cart": 5_292,
        "favorite": 2_959,
        "purchase": 2_144,
    }
    assert len({e.user_id for e in events}) == 58_732 and len({e.item_id for e in events}) == 75_384
    assert (events[0].ts, events[-1].ts) == (1511658000.0, 1511664909.0)
    assert load(path, limit=10) == events[:10]


@pytest.mark.data
def test_real_amazon_toys(shared_data: Path) -> None:
    events = load(_require(shared_data / "amazon-toys-s3rec" / "Toys_and_Games.txt"))
    assert len(events) == 167_597  # PROVENANCE: 19,412 users, 167,597 interactions, 11,924 items
    assert len({e.user_id for e in events}) == 19_412 and len({e.item_id for e in events}) == 11_924
    assert all(a.ts <= b.ts for a, b in pairwise(events))
    assert sum(bool(e.item) for e in events) == len(events), "every item has attributes"
    last = {e.user_id: n for n, e in enumerate(events)}
    assert min(last.values()) > len(events) // 2, "each user's last item comes in the second half of the stream"


@pytest.mark.data
def test_real_diginetica(shared_data: Path) -> None:
    events = load(_require(shared_data / "diginetica-cikm16-sample"))
    assert len(events) == 12_391
    assert len({e.user_id for e in events}) == 2_986 and len({e.item_id for e in events}) == 7_139
    assert all("category" in e.item for e in events)  # PROVENANCE: every sampled item has a category
