"""Entity linking by name, and QA rows in and out."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kgscale.synth.linking import NameIndex, normalise, wordnet_aliases, wordnet_exceptions
from kgscale.synth.questions_qa import LinkConfig, QARowError, link_table, parse_qa_line
from tests.synth_helpers import TOY_ENTITIES, qa_line


def toy_index(**kw) -> NameIndex:
    degree = np.arange(len(TOY_ENTITIES))  # entity 15 (the second "bank") is the most connected
    return NameIndex.build(TOY_ENTITIES, degree, **kw)


def test_normalise_folds_case_accents_and_punctuation():
    assert normalise("  Café_au-lait, ISN'T it?! ") == "cafe au lait isn't it"
    assert normalise("'quoted'") == "quoted"


def test_longest_match_wins_and_stopwords_are_never_linked():
    idx = toy_index()
    ms = idx.mentions("Is the revolving door of a bank in the building?")
    assert [m.text for m in ms] == ["revolving door", "bank", "building"]
    assert ms[0].entities == [3]  # "revolving door", not "door"
    assert idx.mentions("what is it to be") == []


def test_an_ambiguous_name_links_to_every_candidate_most_connected_first():
    idx = toy_index()
    (m,) = idx.mentions("bank")
    assert m.entities == [15, 0]
    (m,) = idx.mentions("bank", max_candidates=1)
    assert m.entities == [15]


def test_base_forms_plural_and_irregular():
    idx = toy_index(exceptions={"mice": ["mouse"]})
    assert [m.text for m in idx.mentions("many magazines and libraries")] == ["magazine", "library"]
    idx2 = NameIndex.build(["mouse"], np.array([1]), exceptions={"mice": ["mouse"]})
    assert idx2.mentions("three mice")[0].entities == [0]


def test_link_phrase_prefers_the_whole_phrase():
    idx = toy_index()
    assert [m.text for m in idx.link_phrase("Revolving doors")] == ["revolving door"]
    assert [m.text for m in idx.link_phrase("book and money")] == ["book", "money"]


def test_wordnet_database_files_give_aliases_and_exceptions(tmp_path):
    # the real line format of WordNet 3.0's data.noun (licence header lines start with two spaces)
    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided to you\n"
        "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 001 @ 02083346 n 0000 | a member of the genus Canis\n"
        "02121808 05 n 02 domestic_cat 0 house_cat(p) 0 000 | any domesticated member of the genus Felis\n"
    )
    (tmp_path / "noun.exc").write_text("mice mouse\nteeth tooth\n")
    aliases = wordnet_aliases(tmp_path, ["02121808", "99999999", "02084071"])
    assert aliases == {0: ["domestic cat", "house cat"], 2: ["dog", "domestic dog", "Canis familiaris"]}
    assert wordnet_exceptions(tmp_path)["mice"] == ["mouse"]
    idx = NameIndex.build(["cat", "x", "dog"], np.ones(3), aliases)
    assert idx.mentions("a house cat chased the canis familiaris")[0].entities == [0]
    assert idx.mentions("a house cat chased the canis familiaris")[1].entities == [2]


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "not a JSON object"),
        ('{"choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answer": "A"}', "missing field: question"),
        ('{"question": "q?", "answer": "A"}', "missing field: choices"),
        ('{"question": "q?", "choices": {"label": ["A", "B"], "text": ["x", "y"]}}', "missing field: answer"),
        ('{"question": "q?", "choices": {"label": ["A", "B"], "text": ["x"]}, "answer": "A"}', "malformed field: choices"),
        ('{"question": "q?", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answer": "C"}', "answer label 'C'"),
    ],
)
def test_bad_qa_rows_say_why(raw, reason):
    with pytest.raises(QARowError, match=reason.replace("(", r"\(")):
        parse_qa_line(raw)


def test_link_table_links_question_choices_and_answer_and_reports_failures():
    idx = toy_index()
    lines = [
        qa_line("Where is the revolving door?", ["bank", "library"], 1, id="ok-1", question_concept="revolving door"),
        qa_line("What is it?", ["bank", "library"], 0),  # nothing to link in the question
        qa_line("Which building has a vault?", ["zzz", "library"], 0, id="no-answer"),
        '{"question": "broken"',
    ]
    batch = pa.table({"line": pa.array([1, 2, 3, 4], pa.int64()), "raw": lines})
    out = link_table(batch, idx, LinkConfig(max_candidates=2), "toy").to_pylist()
    assert [r["status"] for r in out] == [
        "ok", "question links to no entity", "answer links to no entity: 'zzz'", out[3]["status"]]
    assert out[3]["status"].startswith("not valid JSON")
    first = out[0]
    assert first["question_id"] == "ok-1"
    assert first["answer"] == "library" and first["answers"] == ["library"] and first["answer_index"] == 1
    assert first["source_mentions"] == ["revolving door"]  # the concept and the text name the same entity
    assert first["source_entities"] == [3]
    assert first["target_entities"] == [5]
    assert first["choice_entities"] == [[15, 0], [5]]
    assert out[1]["question_id"] == "toy:2"  # no id: file and line
