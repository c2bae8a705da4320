"""``kgscale eval kgc`` and ``kgscale eval qa``"""
from __future__ import annotations

from kgscale.commands.common import add_config_args, build_section, config_sections


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model: KG completion ranking, QA accuracy")
    evsub = p.add_subparsers(dest="eval_command", required=True)

    k = evsub.add_parser("kgc", help="filtered KG completion ranking over every entity")
    k.add_argument("--snapshot", help="snapshot directory (kgscale ingest)")
    k.add_argument("--model", help="trained model directory, packaged name, tiny name or hub id")
    k.add_argument("--out", help="output directory")
    k.add_argument("--limit", type=int, help="evaluate only the first N triples of the split")
    k.add_argument("--strict", action="store_true", help="an entity without text is an error, not a skip")
    k.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(k, "kgc.embed.batch_size=128 kgc.rank.chunk_mb=32")
    k.set_defaults(func=run_kgc, command="eval kgc")

    q = evsub.add_parser("qa", help="multiple-choice accuracy and generation-based KGQA")
    q.add_argument("--model", help="model directory, packaged name, tiny name or hub id")
    q.add_argument("--data", action="append", help="multiple-choice JSONL file or a folder of them (repeatable)")
    q.add_argument("--rationales", help="directory with rationales.parquet (joined on question_id)")
    q.add_argument("--kgqa", action="append", help="generation questions: JSONL/Parquet with question and answers")
    q.add_argument("--kgqa-snapshot", help="synthesise 1-hop generation questions from this snapshot's test triples")
    q.add_argument("--out", help="output directory")
    q.add_argument("--limit", type=int, help="only the first N questions of each file")
    q.add_argument("--strict", action="store_true", help="the first bad row is fatal")
    q.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(q, "qa.batch_size=16 qa.answer_length=16")
    q.set_defaults(func=run_qa, command="eval qa")


# the model, the embedder and the ranking are fields of the stage's own
# section, spelled as in a `kgscale run` config's eval.kgc / eval.qa
KGC_MOVED = {"model": "kgc.model", "embed": "kgc.embed", "rank": "kgc.rank"}
QA_MOVED = {"model": "qa.model"}


def _with_model_flag(data: dict, section: str, flag: str | None) -> dict:
    """--model names the model; with the section's model a mapping of
    settings (kind, gguf_file), only its name is replaced."""
    if flag is not None:
        sec = data.setdefault(section, {}) or {}
        model = sec.get("model")
        sec["model"] = {**model, "model": flag} if isinstance(model, dict) else flag
        data[section] = sec
    return data


def run_kgc(args) -> int:
    from kgscale.eval.kgc import KGCConfig, run_kgc as run, summary
    from kgscale.ray_session import RayConfig

    flags = {"snapshot": args.snapshot, "out": args.out, "limit": args.limit, "strict": args.strict or None,
             "overwrite": args.overwrite or None}
    data = _with_model_flag(config_sections(args, {"kgc", "ray"}, {"kgc": flags}, moved=KGC_MOVED), "kgc", args.model)
    cfg = build_section(KGCConfig, data, "kgc", args)
    result = run(cfg, build_section(RayConfig, data, "ray", args))
    print(summary(result, cfg.out))
    return 0


def run_qa(args) -> int:
    from kgscale.eval.qa import QAConfig, run_qa as run, summary
    from kgscale.ray_session import RayConfig

    flags = {"data": args.data, "rationales": args.rationales, "kgqa": args.kgqa, "kgqa_snapshot": args.kgqa_snapshot,
             "out": args.out, "limit": args.limit, "strict": args.strict or None, "overwrite": args.overwrite or None}
    data = _with_model_flag(config_sections(args, {"qa", "ray"}, {"qa": flags}, moved=QA_MOVED), "qa", args.model)
    cfg = build_section(QAConfig, data, "qa", args)
    result = run(cfg, build_section(RayConfig, data, "ray", args))
    print(summary(result, cfg.out))
    return 0
