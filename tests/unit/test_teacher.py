"""Teachers: prompts, the entity check, the HTTP client against a real local
server (retries, timeouts, 5xx), and a tiny local causal LM."""
from __future__ import annotations

import pyarrow as pa
import pytest

from kgscale.config import ConfigError, build
from kgscale.synth.rationales import teach_table
from kgscale.synth.teacher import (
    HFTeacher, OpenAITeacher, TeacherConfig, VerbaliserTeacher, build_messages, mentions_path_entity, prompt_sha256,
)
from tests.chat_server import ChatServer

PATH = {"text": "revolving door --hypernym--> door <--has part-- bank", "names": ["revolving door", "door", "bank"],
        "relation_texts": ["hypernym", "has part"], "inverse": [False, True]}


def row(question="Where is a revolving door?", answer="bank", choices=("bank", "mall")):
    return {"question_id": "q1", "question": question, "answer": answer, "choices": list(choices), "paths": [PATH],
            "split": "validation", "origin": "qa:x"}


def test_prompt_holds_facts_question_and_answer_and_its_hash_is_stable():
    cfg = TeacherConfig()
    m = build_messages(row(), cfg)
    assert m[0]["role"] == "system" and m[1]["role"] == "user"
    user = m[1]["content"]
    assert "- revolving door hypernym door\n- bank has part door" in user
    assert "Question: Where is a revolving door?" in user and 'why "bank" is the correct answer' in user
    assert prompt_sha256(m) == prompt_sha256(build_messages(row(), cfg))
    assert prompt_sha256(m) != prompt_sha256(build_messages(row(answer="mall"), cfg))
    custom = TeacherConfig(prompt_template="{choices}{paths}")
    assert build_messages(row(), custom)[1]["content"] == "Choices: A) bank; B) mall\n1. " + PATH["text"]


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="teacher.model"):
        build(TeacherConfig, {"kind": "hf"}, section="teacher")
    with pytest.raises(ConfigError, match="base_url"):
        build(TeacherConfig, {"kind": "openai", "model": "m"}, section="teacher")
    with pytest.raises(ConfigError, match="prompt_template"):
        build(TeacherConfig, {"prompt_template": "{question} {nope}"}, section="teacher")
    with pytest.raises(ConfigError, match="secrets"):
        build(TeacherConfig, {"api_key": "sk-123"}, section="teacher")
    assert build(TeacherConfig, {"max_new_tokens": 7}).max_new_tokens == 7  # a token count is not a secret


def test_a_rationale_naming_no_path_entity_is_flagged():
    assert mentions_path_entity("The Bank keeps a vault.", [PATH])
    assert not mentions_path_entity("Banks keep vaults.", [PATH])  # whole names only
    assert not mentions_path_entity("It just is.", [PATH])
    # restating the answer is not using the paths
    assert not mentions_path_entity("The answer is the bank.", [PATH], answer="bank")
    assert not mentions_path_entity("A door.", [PATH], answer="revolving door")
    assert mentions_path_entity("A revolving door leads in.", [PATH], answer="bank")
    t = teach_table(pa.Table.from_pylist([row()]), VerbaliserTeacher(TeacherConfig()), TeacherConfig()).to_pylist()[0]
    assert t["teacher"] == "verbaliser" and not t["flagged"] and t["error"] is None
    assert t["rationale"] == ("revolving door leads to bank: revolving door hypernym door; bank has part door. "
                              "So the answer is bank.")


def http_cfg(server, **kw):
    base = dict(kind="openai", model="teacher-x", base_url=server.base_url, timeout_s=0.5, max_retries=2,
                backoff_s=0.01, concurrency=4)
    return TeacherConfig(**{**base, **kw})


def test_http_teacher_answers_retries_5xx_and_records_what_still_fails():
    with ChatServer(slow_s=1.5) as server:
        cfg = http_cfg(server)
        teacher = OpenAITeacher(cfg)
        questions = ["plain?", "flaky [[500x2]]?", "down [[always500]]?", "slow [[slow]]?", "refused [[400]]?"]
        rows = [row(question=q) for q in questions]
        res = teacher.teach([build_messages(r, cfg) for r in rows], rows)
        plain, flaky, down, slow, refused = res
        assert plain.error is None and plain.rationale == "The facts say revolving door hypernym door, so that is why."
        assert plain.attempts == 1
        assert flaky.error is None and flaky.attempts == 3 and server.count("[[500x2]]") == 3
        assert down.rationale is None and down.attempts == 3 and server.count("[[always500]]") == 3
        assert down.error.startswith("teacher HTTP 500 after 3 attempt(s)")
        assert slow.error.startswith("teacher timed out after 3 attempt(s)")
        assert refused.error.startswith("teacher HTTP 400") and server.count("[[400]]") == 1  # not retried
        req = server.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "teacher-x"
        assert req["body"]["messages"][1]["content"].startswith("Facts from a knowledge graph")


def test_http_teacher_sends_the_key_from_the_environment_only(monkeypatch):
    with ChatServer() as server:
        monkeypatch.setenv("KGSCALE_TEST_TEACHER_KEY", "s3cret")
        cfg = http_cfg(server, api_key_env="KGSCALE_TEST_TEACHER_KEY")
        assert "s3cret" not in cfg.model_dump_json()
        OpenAITeacher(cfg).teach([build_messages(row(), cfg)], [row()])
        assert server.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"
        monkeypatch.delenv("KGSCALE_TEST_TEACHER_KEY")
        with pytest.raises(ConfigError, match="KGSCALE_TEST_TEACHER_KEY"):
            OpenAITeacher(cfg)


def test_http_teacher_connection_refused_is_retried_then_recorded():
    with ChatServer() as server:
        url = server.base_url
    cfg = TeacherConfig(kind="openai", model="m", base_url=url, max_retries=1, backoff_s=0.01, timeout_s=1)
    (res,) = OpenAITeacher(cfg).teach([build_messages(row(), cfg)], [row()])
    assert res.attempts == 2 and res.error.startswith("teacher connection failed after 2 attempt(s)")


def test_local_causal_lm_generates_a_batch_through_its_chat_template():
    cfg = TeacherConfig(kind="hf", model="tiny-llama", max_new_tokens=6)
    teacher = HFTeacher(cfg)
    assert teacher.tok.chat_template  # SmolLM2's tokenizer, with its template
    rows = [row(), row(question="A much longer question about revolving doors and banks and vaults?")]
    msgs = [build_messages(r, cfg) for r in rows]
    first = teacher.teach(msgs, rows)
    again = teacher.teach(msgs, rows)
    assert len(first) == 2
    assert [r.rationale for r in first] == [r.rationale for r in again]  # greedy: deterministic
    assert all((r.rationale and r.error is None) or r.error == "teacher returned an empty rationale" for r in first)
    # left padding: a prompt's output does not depend on the batch it is in
    (alone,) = teacher.teach(msgs[:1], rows[:1])
    assert alone.rationale == first[0].rationale
    out = teach_table(pa.Table.from_pylist(rows), teacher, cfg).to_pylist()
    assert [r["teacher"] for r in out] == ["hf:tiny-llama"] * 2
