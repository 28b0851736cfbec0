"""``mmat build --config run.yaml [--out DIR]``: the data engine end to end."""

from __future__ import annotations

import click


@click.command("build")
@click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="The run config (YAML)."
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Output directory (default: output.dir)."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field, e.g. --set teacher.model=gpt-4o --set stages.max_steps=4 (YAML values).",
)
@click.option("--progress/--no-progress", default=None, help="Show the live panel (default: on a terminal).")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="Run the engine in this process (local) or on Ray workers (default: the config's executor).",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster: 'auto' joins a running cluster (ray start --head), 'local' starts one here.",
)
def build_cmd(
    config_path: str,
    out_dir: str | None,
    overrides: tuple[str, ...],
    progress: bool | None,
    executor: str | None,
    address: str | None,
) -> None:
    """Run sources -> Rationale -> Reflection -> Integration -> Quality -> exports, resumably.

    Rerun the same command after a crash or Ctrl-C to finish the job: finished samples are skipped and
    cached teacher calls are free.
    """
    import yaml

    from mmat.config import RunConfig
    from mmat.errors import ConfigError
    from mmat.pipeline.build import build

    config = RunConfig.from_yaml(config_path)
    if overrides:
        parsed = {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--set {item!r} must look like KEY=VALUE, e.g. --set stages.max_steps=4")
            parsed[key.strip()] = yaml.safe_load(value)
        config = config.with_overrides(parsed)
    if executor is not None:
        config = config.with_overrides({"executor": executor})
    if address is not None:
        config = config.with_overrides({"ray.address": address})
    result = build(config, out_dir=out_dir, progress=progress)
    totals = result.report["totals"]
    click.echo(
        f"accepted {totals['accepted_qas']} of {totals['input_qas']} QAs "
        f"({totals['accepted_dialogues']} dialogues); rejected {totals['rejected_qas']} QAs"
    )
    for name, paths in result.exports.items():
        for path in paths:
            click.echo(f"{name}: {path}")
    click.echo(f"report: {result.report_md} (and {result.report_json.name})")
