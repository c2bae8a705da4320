"""Arrow schemas of the synthesis stages' outputs.

::

    QUESTIONS/questions.parquet   one row a question (QA data linked to the KG, or synthesised from it)
    PATHS/paths.parquet           the same rows plus the mined paths
    RATIONALES/rationales.parquet one row a question with its rationale

A path is a list of steps: step i walks from ``entities[i]`` to
``entities[i + 1]`` over ``relations[i]``, against the triple's direction
when ``inverse[i]`` (the triple is (entities[i + 1], relations[i],
entities[i])). ``names`` and ``relation_texts`` are the same steps in text,
``text`` the whole path as one string (see :mod:`kgscale.synth.verbalise`).
"""
from __future__ import annotations

import pyarrow as pa

QUESTIONS_FILE = "questions.parquet"
PATHS_FILE = "paths.parquet"
RATIONALES_FILE = "rationales.parquet"

QUESTION_FIELDS = [
    ("question_id", pa.string()),
    ("question", pa.string()),
    ("choices", pa.list_(pa.string())),  # empty for open questions
    ("answer", pa.string()),  # the answer text (several answers joined with "; ")
    ("answers", pa.list_(pa.string())),  # every correct answer
    ("source_entities", pa.list_(pa.int32())),  # question entities (all candidates)
    ("target_entities", pa.list_(pa.int32())),  # answer entities (all candidates)
    ("source_mentions", pa.list_(pa.string())),  # the text each question entity was linked from
    ("split", pa.string()),
    ("origin", pa.string()),  # "qa:<file>" or "kg"
]
QUESTIONS_SCHEMA = pa.schema(QUESTION_FIELDS)

PATH_TYPE = pa.struct(
    [
        ("entities", pa.list_(pa.int32())),
        ("names", pa.list_(pa.string())),
        ("relations", pa.list_(pa.int32())),
        ("relation_texts", pa.list_(pa.string())),
        ("inverse", pa.list_(pa.bool_())),
        ("hops", pa.int8()),
        ("cost", pa.float32()),
        ("text", pa.string()),
    ]
)

MINED_FIELDS = [
    ("paths", pa.list_(PATH_TYPE)),
    ("num_paths", pa.int32()),
    # "ok", or why the question could not be searched
    ("search_status", pa.string()),
    ("search_work", pa.int64()),  # edges the search examined
    ("searched_from_answer", pa.bool_()),  # the walk started at the answer side (cheaper)
    ("searched_without_caps", pa.bool_()),  # the caps found nothing, so it was searched again without them
]

RATIONALE_FIELDS = [
    ("question_id", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("choices", pa.list_(pa.string())),
    ("rationale", pa.string()),
    ("teacher", pa.string()),
    ("prompt_sha256", pa.string()),
    # the rationale names none of its paths' entities
    ("flagged", pa.bool_()),
    ("paths", pa.list_(pa.string())),  # the path texts the teacher was shown
    ("split", pa.string()),
    ("origin", pa.string()),
]
RATIONALES_SCHEMA = pa.schema(RATIONALE_FIELDS)
