"""Bad input gets a clear message and exit status 2, never a traceback; no server needed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.evaluate import main as evaluate_main
from agent.solve import main as solve_main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def test_unreachable_endpoint_names_the_url_and_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_RETRY__ATTEMPTS", "1")
    url = f"http://127.0.0.1:{_closed_port()}"
    code, err = _run(solve_main, ["--url", url, "What is 2 + 2?"], capsys)
    assert code == 2
    assert url in err and "Start one" in err and "Traceback" not in err


def test_empty_question(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(solve_main, ["   "], capsys)
    assert code == 2 and "empty" in err


def test_data_file_with_wrong_schema_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "q1", "answer": "x\\n#### 3"}\n{"question": "q2"}\n')
    code, err = _run(
        evaluate_main, ["--task", "gsm8k", "--data", str(data), "--url", "http://127.0.0.1:9"], capsys
    )
    assert code == 2
    assert "bad.jsonl" in err and "line 2" in err and "answer" in err


def test_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(evaluate_main, ["--task", "gsm8k", "--data", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2 and "nope.jsonl" in err


def test_gsm8k_without_data(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(evaluate_main, ["--task", "gsm8k"], capsys)
    assert code == 2 and "--data" in err


def test_invalid_settings_name_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_POLICY__MAX_CONCURRENCY", "zero")
    code, err = _run(solve_main, ["What is 2 + 2?"], capsys)
    assert code == 2 and "AGENT_POLICY__MAX_CONCURRENCY" in err


def test_bad_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(evaluate_main, ["--task", "arith", "--limit", "0"], capsys)
    assert code == 2 and "--limit" in err


def test_set_keeps_text_fields_as_text() -> None:
    """``--set merge=none`` turns merging off; numbers and booleans are still parsed."""
    import argparse

    from agent.cli import add_search_args, search_config

    parser = argparse.ArgumentParser()
    add_search_args(parser)
    args = parser.parse_args(["--set", "merge=none", "--set", "c=1.5", "--set", "max_depth=3"])
    config = search_config(args)
    assert config.merge == "none" and config.c == 1.5 and config.max_depth == 3


def test_solve_defaults_to_rerank_at_8_with_the_verifier() -> None:
    from agent.solve import build_parser

    args = build_parser().parse_args(["question"])
    assert (args.method, args.n, args.critics) == ("rerank", 8, "verifier")


def test_policy_from_a_path_that_holds_no_adapter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(solve_main, ["--policy-from", str(tmp_path / "runs" / "none"), "What is 2 + 2?"], capsys)
    assert code == 2 and "does not exist" in err and "run directory" in err and "Traceback" not in err
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "lineage.json").write_text('{"eval": {}}')
    code, err = _run(evaluate_main, ["--policy-from", str(tmp_path / "loop"), "--limit", "1"], capsys)
    assert code == 2 and "has not promoted a fine-tuned policy" in err


def test_export_without_an_adapter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from finetune.export import main as export_main

    code, err = _run(export_main, ["--policy-from", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "neither a run directory" in err
    assert not (tmp_path / "out").exists()
