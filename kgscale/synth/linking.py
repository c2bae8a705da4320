"""Entity linking by name: normalised n-grams against an index of entity names.

The index maps a normalised name to every entity that carries it, most
connected first (a name shared by several entities is ambiguous and links to
several candidates; the most connected sense is the likeliest one).
Matching is greedy, longest n-gram first, left to right, without overlaps;
single stopwords are never linked. A word that matches nothing is tried in
its base forms (WordNet's morphy rules: detachment suffixes and the
irregular-form exception lists), so "magazines" finds "magazine" and "mice"
finds "mouse".

Names come from the snapshot; for a WordNet-derived snapshot (WN18RR),
:func:`wordnet_aliases` adds every lemma of each synset from WordNet's own
database files (Debian's ``wordnet-base``: ``/usr/share/wordnet``), because a
WN18RR entity carries one lemma only.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Function words that are never linked on their own (WordNet has entities
# named "a", "be", "do", "who", "it", ...; linking them adds only noise).
STOPWORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being below between
    both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for from
    further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his how
    how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor not of
    off on once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't
    so some such than that that's the their theirs them themselves then there there's these they they'd they'll they're
    they've this those through to too under until up very was wasn't we we'd we'll we're we've were weren't what what's
    when when's where where's which while who who's whom why why's will with won't would wouldn't you you'd you'll you're
    you've your yours yourself yourselves s t d ll m re ve also likely might may must one get got go going would
    something someone thing things way often usually likely probably""".split()
)

_NON_WORD = re.compile(r"[^0-9a-z']+")

# WordNet morphy detachment rules (suffix, replacement), all parts of speech
_DETACH = [
    ("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y"),
    ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""), ("er", ""), ("est", ""), ("er", "e"),
    ("est", "e"),
]


def normalise(text: str) -> str:
    """Lowercase, accents folded, anything but letters, digits and apostrophes a space."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower().replace("_", " ")
    text = _NON_WORD.sub(" ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


@dataclass
class Mention:
    text: str  # the normalised n-gram as it appears
    start: int  # token offsets in the normalised text
    end: int
    entities: list[int]  # candidates, most connected first


@dataclass
class NameIndex:
    names: dict[str, list[int]]  # normalised name -> entity ids, most connected first
    exceptions: dict[str, list[str]] = field(default_factory=dict)  # irregular form -> base forms
    max_ngram: int = 4

    @classmethod
    def build(cls, names: list[str], degree: np.ndarray, aliases: dict[int, list[str]] | None = None,
              exceptions: dict[str, list[str]] | None = None, max_ngram: int = 4) -> "NameIndex":
        """``names[i]`` is entity i's name; ``aliases`` more names by entity id."""
        table: dict[str, set[int]] = {}
        for i, name in enumerate(names):
            key = normalise(name)
            if key:
                table.setdefault(key, set()).add(i)
        for i, extra in (aliases or {}).items():
            for name in extra:
                key = normalise(name)
                if key:
                    table.setdefault(key, set()).add(int(i))
        deg = np.asarray(degree)
        ranked = {k: sorted(v, key=lambda e: (-int(deg[e]), e)) for k, v in table.items()}
        longest = max((k.count(" ") + 1 for k in ranked), default=1)
        return cls(names=ranked, exceptions=dict(exceptions or {}), max_ngram=min(max_ngram, longest))

    def base_forms(self, word: str) -> list[str]:
        forms = list(self.exceptions.get(word, []))
        for suffix, repl in _DETACH:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                forms.append(word[: -len(suffix)] + repl)
        return forms

    def lookup(self, words: list[str]) -> tuple[str, list[int]] | None:
        """The entities named by these words, or by them with the last word in a base form."""
        key = " ".join(words)
        if key in self.names:
            return key, self.names[key]
        for form in self.base_forms(words[-1]):
            alt = " ".join(words[:-1] + [form])
            if alt in self.names:
                return alt, self.names[alt]
        return None

    def mentions(self, text: str, max_candidates: int = 3) -> list[Mention]:
        """Greedy longest-match n-gram linking over the normalised text."""
        words = normalise(text).split()
        out, i = [], 0
        while i < len(words):
            hit = None
            for n in range(min(self.max_ngram, len(words) - i), 0, -1):
                if all(w in STOPWORDS for w in words[i : i + n]):
                    continue  # "to do", "it": function words only
                found = self.lookup(words[i : i + n])
                if found is not None:
                    hit = (n, found)
                    break
            if hit is None:
                i += 1
                continue
            n, (key, ids) = hit
            out.append(Mention(text=key, start=i, end=i + n, entities=ids[:max_candidates]))
            i += n
        return out

    def link_phrase(self, text: str, max_candidates: int = 3) -> list[Mention]:
        """A short phrase (an answer choice): the whole phrase if it is a name, else its n-grams."""
        words = normalise(text).split()
        if words:
            found = self.lookup(words)
            if found is not None:
                return [Mention(text=found[0], start=0, end=len(words), entities=found[1][:max_candidates])]
        return self.mentions(text, max_candidates)


# --------------------------------------------------------------------------
# WordNet lemmas and exception lists from the database files (wordnet-base)
# --------------------------------------------------------------------------

_POS_FILES = ("noun", "verb", "adj", "adv")


def wordnet_aliases(directory: str | Path, keys: list[str]) -> dict[int, list[str]]:
    """Every lemma of each synset whose offset is a key of the snapshot.

    ``keys[i]`` is entity i's key; for WN18RR it is the 8-digit synset
    offset, which is also the first field of a line in ``data.<pos>``.
    """
    directory = Path(directory)
    want = {k: i for i, k in enumerate(keys)}
    out: dict[int, list[str]] = {}
    for pos in _POS_FILES:
        path = directory / f"data.{pos}"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                fields = line.split(" ", 4)
                if len(fields) < 5 or fields[0] not in want:
                    continue
                n_words = int(fields[3], 16)
                rest = fields[4].split(" ")
                lemmas = [re.sub(r"\(.*\)$", "", rest[2 * j]).replace("_", " ") for j in range(n_words)]
                out.setdefault(want[fields[0]], []).extend(lemmas)
    return out


def wordnet_exceptions(directory: str | Path) -> dict[str, list[str]]:
    """Irregular forms (``mice -> mouse``, ``went -> go``) from ``<pos>.exc``."""
    out: dict[str, list[str]] = {}
    for pos in _POS_FILES:
        path = Path(directory) / f"{pos}.exc"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.setdefault(parts[0].replace("_", " "), []).extend(p.replace("_", " ") for p in parts[1:])
    return out
