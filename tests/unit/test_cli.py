"""The command line, on small files: parsing, evaluate's report, errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_rec.cli import build_parser, main


def _events_file(path: Path) -> Path:
    lines = []
    for u in range(60):
        for t, item in enumerate(["a", "b", "c", "a", "b", "c"]):
            lines.append(orjson.dumps({"user_id": f"u{u}", "item_id": item, "event": "view", "ts": 1e9 + 10 * u + t}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_evaluate_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _events_file(tmp_path / "events.jsonl")
    out = tmp_path / "report.json"
    assert main(["evaluate", str(data), "--models", "popularity,markov,lstm", "--k", "1,3", "--json", str(out)]) == 0
    report = orjson.loads(out.read_bytes())
    assert report["events"] == 360 and report["scored"] == 300
    assert set(report["models"]) == {"popularity", "markov", "lstm"}
    for figures in report["models"].values():
        assert {"HR@1", "NDCG@3", "MRR@3", "events_per_s", "by_event", "by_history"} <= set(figures)
    assert report["models"]["markov"]["HR@1"] > report["models"]["popularity"]["HR@1"]
    assert "markov" in capsys.readouterr().out


def test_evaluate_plots_the_rolling_hit_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _events_file(tmp_path / "events.jsonl")
    out = tmp_path / "rolling.png"
    assert main(["evaluate", str(data), "--models", "popularity,markov", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "rolling.png" in capsys.readouterr().out


def test_a_missing_dataset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path / "nope.csv")]) == 2
    assert "stream-rec: error:" in capsys.readouterr().err


def test_every_command_has_help() -> None:
    parser = build_parser()
    for command in ("kafka", "topics", "worker", "produce", "consume", "evaluate", "demo"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([command, "--help"])
        assert exit_.value.code == 0


@pytest.mark.parametrize(
    "argv",
    [["produce", "--synthetic", "5"], ["consume", "--timeout", "1"], ["topics", "create"], ["forget", "u1"]],
)
def test_a_command_that_needs_the_broker_says_in_one_line_that_none_answers(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_rec.ops.processes import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    assert main([*argv, "--broker", address]) == 3, "--broker after the command, as before it"
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"stream-rec: error: no Kafka broker answers at {address}: start the local one with `stream-rec kafka "
        "start`, or point STREAM_REC_BROKER (or --broker) at yours"
    ]
    assert captured.out == ""


def test_broker_before_or_after_the_command() -> None:
    assert build_parser().parse_args(["--broker", "a:1", "produce"]).broker == "a:1"
    assert build_parser().parse_args(["produce", "--broker", "b:2"]).broker == "b:2"
    assert build_parser().parse_args(["produce"]).broker is None


def test_evaluate_reads_k_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _events_file(tmp_path / "events.jsonl")
    out = tmp_path / "report.json"
    monkeypatch.setenv("STREAM_REC_K", "3")
    assert main(["evaluate", str(data), "--models", "popularity", "--json", str(out)]) == 0
    assert orjson.loads(out.read_bytes())["ks"] == [3]
    assert main(["evaluate", str(data), "--models", "popularity", "--k", "2", "--json", str(out)]) == 0
    assert orjson.loads(out.read_bytes())["ks"] == [2], "the flag counts over the variable"
