"""A deterministic split of a QA set into a training part and a held-out part.

CommonsenseQA (and the other QA sets here) come with only their validation
split, so a run that trains on QA questions (KALE) and scores QA accuracy
must keep the two apart. A question's part is a function of its id alone:
the first 8 bytes of sha256("kgscale-qa-part:" + id) as a fraction of 2**64,
held out when below ``holdout``. Every stage that reads questions applies the
same rule, so the parts never overlap, whichever file or order they come in.
For CommonsenseQA's 1,221 validation questions and the default 0.5, the parts
hold 617 (train) and 604 (held out) questions.
"""
from __future__ import annotations

import hashlib
from typing import Literal

Part = Literal["all", "train", "heldout"]
DEFAULT_HOLDOUT = 0.5


def in_part(question_id: str, part: Part, holdout: float = DEFAULT_HOLDOUT) -> bool:
    """Does the question with this id belong to ``part``?"""
    if part == "all":
        return True
    digest = hashlib.sha256(f"kgscale-qa-part:{question_id}".encode("utf-8")).digest()
    held = int.from_bytes(digest[:8], "big") / 2**64 < holdout
    return held if part == "heldout" else not held
