"""`gaiverse eval npc`: numeric judging, refusal items, the EVAL.md JSON shape, and the CLI's errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gaiverse.npc.cli import app
from gaiverse.npc.evaluate import EvalDataError, eval_npc, load_qa
from gaiverse.npc.judging import judge, stated_number

ABOLETH = ("The aboleth is a Large aberration with a challenge rating of 10. The aboleth's size is Large. "
           "The aboleth has an armor class of 17. The aboleth has 150 hit points (20d10 + 40).")


def test_stated_value_is_the_number_the_question_points_at():
    assert stated_number("What is the armor class of an aboleth?", ABOLETH) == 17
    assert stated_number("How many hit points does an aboleth have?", ABOLETH) == 150
    assert stated_number("What is the challenge rating of an aboleth?", ABOLETH) == 10


def test_numeric_answer_is_not_credited_for_a_digit_elsewhere_in_a_long_reply():
    wrong = judge("What is the armor class of an aboleth?", ABOLETH, "10", [], refused=False)
    right = judge("What is the armor class of an aboleth?", ABOLETH, "17", [], refused=False)
    assert not wrong.correct and wrong.stated == "17"
    assert right.correct
    assert judge("How many people live in Lagos?", "Lagos has a population of 15,388,000.", "15388000", [],
                 refused=False).correct


def test_text_answers_and_refusal_items():
    assert judge("Capital of Kenya?", "The capital of Kenya is Nairobi.", "Nairobi", [], False).correct
    assert not judge("Capital of Kenya?", "I don't know.", "Nairobi", [], True).correct
    assert judge("Who is the king of France?", "I cannot say.", "refuse", [], True).correct
    assert not judge("Who is the king of France?", "The king is Louis.", "refuse", [], False).correct


@pytest.fixture
def qa_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    items = [{"question": "What is the capital of Kenya?", "expected": "Nairobi", "accept": []},
             {"question": "What is the armor class of a lich?", "expected": "20", "accept": []},
             {"question": "Who is the king of France?", "expected": "refuse", "accept": []}]
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    return path


def test_eval_json_has_the_eval_md_shape(qa_file, kb_path, kb):
    result = eval_npc(qa_file, kb_path)
    assert result["eval"] == "npc" and result["n"] == 3 and result["data"] == [str(qa_file)]
    assert set(result["metrics"]) >= {"accuracy", "hallucination", "refusal_rate", "latency_p50_s", "latency_p95_s"}
    assert result["baseline"]["name"] == "retrieval-top-passage"
    assert set(result["baseline"]) - {"name"} <= set(result["metrics"])
    assert set(result["lower_is_better"]) <= set(result["metrics"])
    assert result["metrics"]["accuracy"] == 1.0 and result["baseline"]["missed_refusal_rate"] == 1.0
    for item in result["items"]:
        assert {"question", "answer", "expected", "judged", "baseline_answer", "baseline_judged"} <= set(item)
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("content, message", [
    ('{"question": "ok?"}\nnot json\n', "qa.jsonl:2: invalid JSON"),
    ('{"expected": "x"}\n', "non-empty string \"question\""),
    ('{"question": "q", "accept": "x"}\n', "\"accept\" must be a list"),
    ("\n", "no QA items"),
])
def test_unreadable_qa_files_are_refused(tmp_path, content, message):
    path = tmp_path / "qa.jsonl"
    path.write_text(content)
    with pytest.raises(EvalDataError, match=message.replace("(", r"\(")):
        load_qa(path)


def test_cli_prints_one_json_object_and_fails_cleanly(qa_file, kb_path, kb, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", "npc", "--qa", str(qa_file), "--kb", str(kb_path), "--json"])
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["eval"] == "npc"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{broken\n")
    failed = runner.invoke(app, ["eval", "npc", "--qa", str(bad), "--kb", str(kb_path)])
    assert failed.exit_code == 2 and failed.stdout == ""
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1
    missing = runner.invoke(app, ["eval", "npc", "--qa", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


@pytest.mark.clause("NPC-a2")
def test_kb_cli_add_list_edit_delete(kb_path, kb, tmp_path, user):
    runner = CliRunner()
    doc = tmp_path / "village.md"
    doc.write_text("# Oakvale\n\nThe miller of Oakvale is called Hask.\n")
    added = runner.invoke(app, ["kb", "add", "--user", user, "--file", str(doc), "--kb", str(kb_path)])
    assert added.exit_code == 0, added.stderr
    listed = json.loads(runner.invoke(app, ["kb", "list", "--user", user, "--kb", str(kb_path)]).stdout)
    [row] = listed["passages"]
    assert row["text"] == "The miller of Oakvale is called Hask." and row["user_id"] == user
    other = json.loads(runner.invoke(app, ["kb", "list", "--user", user + "-b", "--kb", str(kb_path)]).stdout)
    assert other["passages"] == []
    edited = runner.invoke(app, ["kb", "edit", str(row["id"]), "--text", "The miller is Brann.", "--user", user,
                                 "--kb", str(kb_path)])
    assert edited.exit_code == 0, edited.stderr
    stolen = runner.invoke(app, ["kb", "delete", str(row["id"]), "--user", user + "-b", "--kb", str(kb_path)])
    assert stolen.exit_code == 2 and "not found" in stolen.stderr
    deleted = runner.invoke(app, ["kb", "delete", str(row["id"]), "--user", user, "--kb", str(kb_path)])
    assert deleted.exit_code == 0
    bad = tmp_path / "notes.pdf"
    bad.write_bytes(b"%PDF")
    refused = runner.invoke(app, ["kb", "add", "--user", user, "--file", str(bad), "--kb", str(kb_path)])
    assert refused.exit_code == 2 and "unsupported document type" in refused.stderr
