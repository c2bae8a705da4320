"""Hostile RDF files, written as a careful attacker (or a careless exporter)
would: each case is (file name, bytes, rejects it must give, good statements
it holds that must survive). Used by the ingest battery in tests/ray."""
from __future__ import annotations

import bz2
import gzip

EX = "http://ex.org/"
P = f"<{EX}p>"


def good(name: str, i: int = 0) -> str:
    """A valid statement unique to one case: it must reach the snapshot."""
    return f"<{EX}good/{name}/{i}> {P} <{EX}o> ."


def nt(name: str, *bad: str | bytes, keep: int = 1) -> tuple[str, bytes, int, list[str]]:
    """An N-Triples file: good statements around each bad line, one reject a bad line."""
    goods = [good(name, i) for i in range(keep)]
    parts = [goods[0].encode()] if goods else []
    for b in bad:
        parts.append(b if isinstance(b, bytes) else b.encode())
    parts += [g.encode() for g in goods[1:]]
    return name + ".nt", b"\n".join(parts) + b"\n", len(bad), goods


def cases() -> list[tuple[str, bytes, int, list[str]]]:
    out = [
        nt("fields", f"<{EX}a> {P} .", f"<{EX}a> {P} <{EX}b> <{EX}c> <{EX}d> .", keep=2),
        nt("bad_iri", f"<not an iri> {P} <{EX}o> .", f"<{EX}a b> {P} <{EX}o> .", f"<{EX}a>{P}<{EX}\x01> .", keep=2),
        nt("relative_iri", f"<s> {P} <{EX}o> ."),
        nt("escapes", f'<{EX}a> {P} "bad \\q escape" .', f'<{EX}a> {P} "\\uD800" .', f"<{EX}\\u0020> {P} <{EX}o> ."),
        nt("nul", f"<{EX}a\x00b> {P} <{EX}o> .", f"<{EX}a> {P} \x00 ."),
        nt("utf8", f"<{EX}a> {P} \"".encode() + b"\xff\xfe\xc3" + b'" .', keep=2),
        nt("lang", f'<{EX}a> {P} "x"@-1 .', f'<{EX}a> {P} "x"@en--gb .'),
        nt("literal_subject", f'"x" {P} <{EX}o> .', f"<{EX}a> _:b <{EX}o> .", f'<{EX}a> "p" <{EX}o> .'),
        nt("unterminated", f"<{EX}a {P} <{EX}o> .", f'<{EX}a> {P} "open .', f"<{EX}a> {P} <{EX}o>", keep=2),
        nt("trailing", f"<{EX}a> {P} <{EX}o> . junk", f"<{EX}a> {P} <{EX}o> . <{EX}a> {P} <{EX}o2> ."),
        nt("quoted_triple", f"<< <{EX}a> {P} <{EX}b> >> {P} <{EX}o> ."),
        nt("huge_token", f'<{EX}a> {P} "'.encode() + b"x" * (2 << 20) + b'" .', keep=2),
        nt("huge_key", f"<{EX}".encode() + b"k" * (10 << 20) + f"> {P} <{EX}o> .".encode()),
        ("comments.nt", b"# only\n   # comments\n\n", 0, []),
        ("cr_inside.nt", (good("cr_inside", 0) + "\r" + good("cr_inside", 1) + "\n").encode(), 0,
         [good("cr_inside", 0), good("cr_inside", 1)]),
        ("cr_only.nt", "\r".join(good("cr_only", i) for i in range(3)).encode() + b"\r", 0,
         [good("cr_only", i) for i in range(3)]),
        ("bom.nt", b"\xef\xbb\xbf" + (good("bom", 0) + "\n" + good("bom", 1) + "\n").encode(), 0,
         [good("bom", 0), good("bom", 1)]),
        ("junk.nt", b"".join(b"junk %d\n" % i for i in range(20_000)) + (good("junk") + "\n").encode(), 20_000,
         [good("junk")]),
        ("empty.nt", b"", 1, []),
        ("fifth.nq", (f"<{EX}s> {P} <{EX}o> <{EX}g> <{EX}x> .\n" + good("fifth") + "\n").encode(), 1, [good("fifth")]),
        ("bad_graph.nq", (f'<{EX}s> {P} <{EX}o> "g" .\n' + good("bad_graph") + "\n").encode(), 1, [good("bad_graph")]),
        # compressed: what comes before the break is kept (one 8 MiB block here: nothing)
        ("truncated.nt.gz", gzip.compress((good("truncated") + "\n").encode() * 500)[:-40], 1, []),
        ("corrupt.nt.bz2", _damage(bz2.compress((good("corrupt") + "\n").encode() * 500)), 1, []),
        ("truncated.ttl.gz", gzip.compress((good("tgz") + "\n").encode() * 500)[:-40], 1, []),
        ("notgzip.nt.gz", b"this is not gzip at all\n", 1, []),
        # Turtle and friends
        ("bom.ttl", b"\xef\xbb\xbf" + (good("bom_ttl") + "\n").encode(), 0, [good("bom_ttl")]),
        ("open_string.ttl", (f'<{EX}a> {P} "never closed .\n' + good("open_string") + "\n").encode(), 1,
         [good("open_string")]),
        ("prefix.ttl", (f"ex:a ex:b ex:c .\n{good('prefix')}\n").encode(), 1, [good("prefix")]),
        ("fifth.ttl", (f"<{EX}s> {P} <{EX}o> <{EX}x> .\n").encode(), 2, []),  # pyoxigraph reports two
        ("deep_lists.ttl", (f"<{EX}good/deep_lists/0> {P} " + "( " * 3000 + ") " * 3000 + ".\n").encode(), 0,
         [good("deep_lists")]),
        ("bad.trig", (f"<{EX}g> {{ <{EX}s> {P} }}\n").encode(), 1, []),
        ("bad.n3", b"@prefix : <http://ex.org/> .\n:a :b .\n", 1, []),
        # JSON-LD
        ("deep.jsonld", _deep_jsonld(5000).encode(), 1, []),
        ("broken.jsonld", b'{"@id": "http://ex.org/s", "http://ex.org/p": [1, 2,', 1, []),
        ("remote_context.jsonld", b'{"@context": "http://127.0.0.1:9/ctx.jsonld", "@id": "http://ex.org/s", "p": "x"}', 1, []),
        ("bom.jsonld", b'\xef\xbb\xbf{"@id": "http://ex.org/good/bom_jsonld", "http://ex.org/p": {"@id": "http://ex.org/o"}}',
         0, [f"<{EX}good/bom_jsonld> {P} <{EX}o> ."]),
        # RDF/XML
        ("laughs.rdf", _laughs().encode(), 1, []),
        ("external.rdf", _xml('<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;").encode(), 1, []),
        ("deep.rdf", _deep_xml(3000).encode(), 1, []),
        ("notxml.rdf", b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><oops></rdf:RDF>", 1, []),
        ("truncated.owl", _xml("", "x").encode()[:-30], 1, []),
        # TriX (rdflib)
        ("good.trix", _trix("good_trix").encode(), 0, [good("good_trix")]),
        ("bad.trix", b"<TriX><graph><triple><uri>x</uri></triple>", 1, []),
    ]
    return out


def _damage(data: bytes) -> bytes:
    return data[:20] + b"\x00" * 40 + data[60:]


def _deep_jsonld(depth: int) -> str:
    return '{"@id": "http://ex.org/s", "http://ex.org/p": ' + '{"http://ex.org/p": ' * depth + '"x"' + "}" * depth + "}"


RDF_OPEN = f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:e="{EX}">'


def _xml(dtd: str, text: str) -> str:
    return (f'<?xml version="1.0"?>\n{dtd}{RDF_OPEN}<rdf:Description rdf:about="{EX}s">'
            f"<e:p>{text}</e:p></rdf:Description></rdf:RDF>")


def _laughs() -> str:
    dtd = '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(7)) + "]>"
    return _xml(dtd, "&h;")


def _deep_xml(n: int) -> str:
    return (f'<?xml version="1.0"?>\n{RDF_OPEN}<rdf:Description rdf:about="{EX}s">'
            + "<e:p><rdf:Description>" * n + "<e:p>x</e:p>" + "</rdf:Description></e:p>" * n
            + "</rdf:Description></rdf:RDF>")


def _trix(name: str) -> str:
    return ('<TriX xmlns="http://www.w3.org/2004/03/trix/trix-1/"><graph>'
            f"<triple><uri>{EX}good/{name}/0</uri><uri>{EX}p</uri><uri>{EX}o</uri></triple></graph></TriX>")
