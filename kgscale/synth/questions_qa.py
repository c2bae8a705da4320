"""Questions from multiple-choice QA data, linked to KG entities.

Input: JSONL, one question a line, as in ``shared/datasets/qa``::

    {"id": ..., "question": ..., "choices": {"label": [...], "text": [...]}, "answer": "B",
     "question_concept": ...}   # the concept is optional (CommonsenseQA has it)

:func:`parse_qa_line` validates a line; :func:`link_table` links a batch of
lines (a plain function over a pyarrow batch, run by :class:`QALinker`
actors over Ray Data). The question's entities are the n-gram mentions of
its text (and of its concept field, linked first, when there is one); the
answer's entities are the links of the correct choice; every choice is
linked too. A row that is not valid JSON, lacks a field, names an answer
that is not a choice, or whose question or answer links to nothing comes out
with a ``status`` that says why, and the stage records it as rejected.
"""
from __future__ import annotations

import json

import pyarrow as pa

from kgscale.config import StrictModel
from kgscale.synth.linking import NameIndex

OK = "ok"


class QARowError(ValueError):
    pass


class LinkConfig(StrictModel):
    # entities kept per mention (ambiguous names), most connected first
    max_candidates: int = 3
    # longest name, in words, the linker tries
    max_ngram: int = 4
    # a field holding the question's main concept (CommonsenseQA: question_concept); linked first when present
    concept_field: str | None = "question_concept"
    # WordNet database files (Debian wordnet-base: /usr/share/wordnet): every
    # lemma of a synset becomes a name of its entity (for WordNet-derived snapshots)
    wordnet_dir: str | None = None


def parse_qa_line(raw: str) -> dict:
    """A validated QA row: id, question, choices (texts), answer index, concept."""
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise QARowError(f"not valid JSON: {exc.msg}") from None
    if not isinstance(row, dict):
        raise QARowError("not a JSON object")
    for key in ("question", "choices", "answer"):
        if key not in row or row[key] in (None, ""):
            raise QARowError(f"missing field: {key}")
    question, choices, answer = row["question"], row["choices"], row["answer"]
    if not isinstance(question, str) or not question.strip():
        raise QARowError("missing field: question (empty)")
    if not isinstance(choices, dict) or not isinstance(choices.get("text"), list) or not isinstance(choices.get("label"), list):
        raise QARowError("malformed field: choices must hold lists label and text")
    labels, texts = [str(x) for x in choices["label"]], choices["text"]
    if len(labels) != len(texts) or len(texts) < 2:
        raise QARowError(f"malformed field: choices has {len(labels)} labels and {len(texts)} texts")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise QARowError("malformed field: a choice text is empty")
    if str(answer) not in labels:
        raise QARowError(f"answer label {answer!r} is not among the choices {labels}")
    concept = row.get("question_concept")
    return {
        "id": str(row["id"]) if row.get("id") not in (None, "") else None,
        "question": question.strip(),
        "choices": [t.strip() for t in texts],
        "answer_index": labels.index(str(answer)),
        "row": row,
        "concept": concept if isinstance(concept, str) else None,
    }


LINKED_FIELDS = [
    ("line", pa.int64()),
    ("status", pa.string()),
    ("question_id", pa.string()),
    ("question", pa.string()),
    ("choices", pa.list_(pa.string())),
    ("answer", pa.string()),
    ("answers", pa.list_(pa.string())),
    ("answer_index", pa.int32()),
    ("source_entities", pa.list_(pa.int32())),
    ("target_entities", pa.list_(pa.int32())),
    ("source_mentions", pa.list_(pa.string())),
    ("choice_entities", pa.list_(pa.list_(pa.int32()))),
    ("ambiguous_mentions", pa.int32()),
    ("mentions", pa.int32()),
]
LINKED_SCHEMA = pa.schema(LINKED_FIELDS)


def link_row(parsed: dict, index: NameIndex, cfg: LinkConfig) -> dict:
    mentions = []
    concept_field = cfg.concept_field
    concept = parsed["row"].get(concept_field) if concept_field else None
    if isinstance(concept, str) and concept.strip():
        mentions += index.link_phrase(concept, cfg.max_candidates)
    mentions += index.mentions(parsed["question"], cfg.max_candidates)
    sources, seen_text = [], []
    for m in mentions:
        if m.text not in seen_text:
            seen_text.append(m.text)
        for e in m.entities:
            if e not in sources:
                sources.append(e)
    choice_entities = []
    for text in parsed["choices"]:
        ids = []
        for m in index.link_phrase(text, cfg.max_candidates):
            ids += [e for e in m.entities if e not in ids]
        choice_entities.append(ids)
    targets = choice_entities[parsed["answer_index"]]
    answer = parsed["choices"][parsed["answer_index"]]
    status = OK
    if not sources:
        status = "question links to no entity"
    elif not targets:
        status = f"answer links to no entity: {answer!r}"
    return {
        "status": status,
        "question": parsed["question"],
        "choices": parsed["choices"],
        "answer": answer,
        "answers": [answer],
        "answer_index": parsed["answer_index"],
        "source_entities": sources,
        "target_entities": targets,
        "source_mentions": seen_text,
        "choice_entities": choice_entities,
        "ambiguous_mentions": sum(len(m.entities) > 1 for m in mentions),
        "mentions": len(mentions),
    }


def link_table(batch: pa.Table, index: NameIndex, cfg: LinkConfig, id_prefix: str) -> pa.Table:
    """Lines (``line``, ``raw``) in, :data:`LINKED_SCHEMA` rows out (one a line)."""
    rows = []
    for line, raw in zip(batch["line"].to_pylist(), batch["raw"].to_pylist()):
        base = {"line": line, "question_id": f"{id_prefix}:{line}"}
        try:
            parsed = parse_qa_line(raw)
        except QARowError as exc:
            rows.append({**base, "status": str(exc), "choices": [], "answers": [], "source_entities": [],
                         "target_entities": [], "source_mentions": [], "choice_entities": [], "mentions": 0,
                         "ambiguous_mentions": 0})
            continue
        linked = link_row(parsed, index, cfg)
        rows.append({**base, **linked, "question_id": parsed["id"] or base["question_id"]})
    return pa.Table.from_pylist(rows, schema=LINKED_SCHEMA)


class QALinker:
    """Actor-pool stage: unpickles the name index once, links every batch."""

    def __init__(self, index_ref: list, cfg: dict, id_prefix: str) -> None:
        import ray

        self.index = ray.get(index_ref[0])
        self.cfg = LinkConfig(**cfg)
        self.id_prefix = id_prefix

    def __call__(self, batch: pa.Table) -> pa.Table:
        return link_table(batch, self.index, self.cfg, self.id_prefix)
