"""``stream-rec tune``: the search space, the held-out choice, the settings file and the commands that read it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_rec.cli import main
from stream_rec.datasets.synthetic import synthetic_events
from stream_rec.errors import StreamRecError
from stream_rec.evaluation.prequential import evaluate, make_recommender
from stream_rec.evaluation.tune import DEFAULT_PARAMS, SPACE, Dataset, parse_space, tune, write_settings
from stream_rec.settings import ModelSettings, Settings


def test_the_space_is_the_default_params_or_the_named_ones() -> None:
    assert tuple(parse_space(None)) == DEFAULT_PARAMS
    assert parse_space("lr, dim") == {"lr": SPACE["lr"], "dim": SPACE["dim"]}
    with pytest.raises(StreamRecError, match="cannot tune nope; choose among lr"):
        parse_space("lr,nope")


def test_the_cut_leaves_events_on_both_sides() -> None:
    events = list(synthetic_events(10, users=3, items=5))
    assert Dataset("d", events).cut(0.5) == 5
    assert Dataset("d", events).cut(0.01) == 1 and Dataset("d", events).cut(0.99) == 9


def test_a_settings_file_is_read_under_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_settings(tmp_path / "tuned.env", {"lr": 0.0123, "batch": 32}, "a comment\non two lines")
    text = path.read_text()
    assert text.startswith("# a comment\n# on two lines\n")
    assert "STREAM_REC_MODEL__LR=0.0123\n" in text and "STREAM_REC_MODEL__BATCH=32\n" in text
    monkeypatch.delenv("STREAM_REC_MODEL__LR", raising=False)
    settings = Settings.load(path)
    assert settings.model.lr == 0.0123 and settings.model.batch == 32
    monkeypatch.setenv("STREAM_REC_MODEL__LR", "0.5")
    assert Settings.load(path).model.lr == 0.5, "the environment counts over the file"
    monkeypatch.setenv("STREAM_REC_SETTINGS_FILE", str(path))
    assert Settings.load().model.batch == 32, "the file STREAM_REC_SETTINGS_FILE names"
    with pytest.raises(StreamRecError, match="settings file not found"):
        Settings.load(tmp_path / "missing.env")


def test_tune_scores_the_finalists_on_the_held_out_part_only() -> None:
    events = list(synthetic_events(240, users=12, items=30, seed=3))
    data = Dataset("synthetic", events)
    lines: list[str] = []
    base = Settings(model=ModelSettings(dim=8, batch=32, replay=0.0))
    result = tune([data], base, trials=2, prefix=0.5, seeds=2, finalists=1, space=parse_space("lr"), log=lines.append)
    assert result.trials == 2 and result.pruned == 0
    assert result.held_out[0][0] == {}, "the defaults are scored too"
    assert len(result.held_out) == 2 and set(result.held_out[1][0]) == {"lr"}
    for _, figures in result.held_out:
        assert list(figures) == ["synthetic"] and len(figures["synthetic"]) == 2
    # The defaults' held-out figure for the first seed is evaluate's with the search part learned, not scored.
    cut = data.cut(0.5)
    report = evaluate(events, {"m": make_recommender("lstm", base.model)}, base, ks=(10,), score_from=cut)
    assert result.held_out[0][1]["synthetic"][0] == pytest.approx(report["models"]["m"]["HR@10"])
    assert report["scored"] <= len(events) - cut
    assert sum(line.startswith("trial ") for line in lines) == 2 and sum("held out" in line for line in lines) == 2
    if result.best:
        assert result.best == result.held_out[1][0]


def test_tune_refuses_a_prefix_that_is_no_fraction() -> None:
    data = Dataset("d", list(synthetic_events(20, users=2, items=5)))
    with pytest.raises(StreamRecError, match="between 0 and 1"):
        tune([data], Settings(), prefix=1.0)


def test_the_tune_command_writes_a_file_evaluate_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(e.to_dict()) for e in synthetic_events(400, users=15, items=30)))
    out = tmp_path / "tuned.env"
    args = ["tune", f"{data}@exclude-seen@no-item-features", "--trials", "1", "--finalists", "1", "--seeds", "1"]
    assert main([*args, "--params", "lr", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "events.jsonl@no-item-features (400 events)" in printed and "held out" in printed
    text = out.read_text()
    assert text.startswith("# stream-rec tune ")
    # The comment says which won: a trial's settings, or the defaults with nothing set.
    defaults_won = "the defaults did best" in printed
    assert ("the defaults won: nothing is set" in text) == defaults_won
    assert ("STREAM_REC_MODEL__LR=" in text) != defaults_won
    # A tuned value the file holds reaches evaluate (here an invalid one, so that it shows).
    out.write_text("STREAM_REC_MODEL__LR=-1\n")
    assert main(["--settings", str(out), "evaluate", str(data), "--models", "popularity"]) == 2
    assert "invalid settings: STREAM_REC_MODEL__LR: Input should be greater than 0" in capsys.readouterr().err
    assert main(["tune", f"{data}@nope", "--trials", "1"]) == 2
    assert "unknown dataset option @nope" in capsys.readouterr().err
