"""What every subcommand shares: reading its config sections, and the run of a stage command."""
from __future__ import annotations

from kgscale import config as cfgmod


def config_sections(args, allowed: set[str], cli_values: dict[str, dict], moved: dict[str, str] | None = None) -> dict:
    """The YAML file (``args.config``) with ``args.overrides`` applied and the
    subcommand's own flags (``cli_values[section][key]``, None = not given)
    written on top. Sections other than ``allowed`` are an error; one in
    ``moved`` (an old spelling) is an error that names its new one."""
    data = cfgmod.read_yaml(args.config) if getattr(args, "config", None) else {}
    cfgmod.apply_overrides(data, list(getattr(args, "overrides", []) or []))
    for old, new in (moved or {}).items():
        if old in data:
            raise cfgmod.ConfigError(
                f"{old}: is now spelled {new} (a stage's section holds its sub-sections, as its section in a "
                f"`kgscale run` config does): write {old}.KEY as {new}.KEY")
    for name, values in cli_values.items():
        section = data.setdefault(name, {})
        if not isinstance(section, dict):
            raise cfgmod.ConfigError(f"{name}: must be a mapping")
        section.update({k: v for k, v in values.items() if v is not None})
    unknown = set(data) - allowed
    if unknown:
        raise cfgmod.ConfigError(
            f"{', '.join(sorted(unknown))}: unknown section(s) for `kgscale {args.command}` "
            f"(expected {', '.join(sorted(allowed))})"
        )
    return data


def build_section(model, data: dict, name: str, args, prefix: str = ""):
    """``data[name]`` validated by ``model``; errors name it as ``prefix + name``
    (``kgc.embed`` for a section nested in ``kgc``)."""
    return cfgmod.build(model, data.get(name, {}) or {}, source=args.config or "command line", section=prefix + name)


def add_config_args(parser, example: str) -> None:
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"config overrides, e.g. {example}")


def add_stage_args(parser, out_help: str, strict_help: str, example: str, out_required: bool = True) -> None:
    """A stage command's common flags: --out, --strict, --overwrite, --config
    and key=value overrides."""
    parser.add_argument("--out", required=out_required, help=out_help)
    parser.add_argument("--strict", action="store_true", help=strict_help)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(parser, example)


def run_stage_command(args, section: str, config_model, driver, summary, flags: dict,
                      moved: dict[str, str] | None = None, model_flag: str | None = None) -> int:
    """A stage command: its ``section`` (and ``ray``) read with the flags on
    top, validated by the stage's ``config_model`` (the same model that
    validates its section of a ``kgscale run`` config), run by ``driver(cfg,
    ray_cfg)``, then the stage's ``summary`` printed. ``model_flag``
    (--model) replaces the name of ``section.model`` and keeps its other
    settings."""
    from kgscale.ray_session import RayConfig

    flags = {**flags, "out": args.out, "strict": args.strict or None, "overwrite": args.overwrite or None}
    data = config_sections(args, {section, "ray"}, {section: flags}, moved=moved)
    if model_flag is not None:
        model = data[section].get("model")
        data[section]["model"] = {**model, "model": model_flag} if isinstance(model, dict) else model_flag
    cfg = build_section(config_model, data, section, args)
    result = driver(cfg, build_section(RayConfig, data, "ray", args))
    print(summary(result, cfg.out))
    return 0
