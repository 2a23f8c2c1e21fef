"""`deploybench variants`: build, verify (parity gate) and time every backend of one model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from deploybench.backends.base import UnknownBackendError
from deploybench.cli.app import app, console, fail
from deploybench.config import ModelSpec, is_random_weights
from deploybench.inputs.labelled import BUNDLED, LabelledDataError
from deploybench.inputs.payload import PayloadError, read_payloads
from deploybench.models.loaded import ModelLoadError
from deploybench.results import ParityReport

if TYPE_CHECKING:  # torch loads with these: only the commands that build models import them
    from deploybench.variants.verify import VariantReport, VariantsReport


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'1,8' -> (1, 8); anything else is a clear error."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise fail(f"--{what} takes comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise fail(f"--{what} takes comma-separated positive integers, got {text!r}")
    return values


def weights_banner(weights: str) -> str:
    """The loud line every output carries: predictions of random weights mean nothing."""
    if is_random_weights(weights):
        detail = weights.removeprefix("random").strip(" ()")
        return (
            "[bold yellow on red] RANDOM WEIGHTS [/] pretrained weights are not on disk: latency is "
            "representative, predictions and accuracy are meaningless"
            + (
                f"; {detail}, so outputs depend on the input and parity can reject a broken build"
                if detail
                else ""
            )
        )
    return f"[bold green]weights: {weights}[/]"


def _parity_cell(variant: VariantReport) -> str:
    if not variant.available:
        return "[dim]unavailable[/]"
    if variant.error:
        return "[red]build error[/]"
    parity = variant.parity
    if parity is None:
        return "-"
    colour = {"passed": "green", "rejected": "bold red", "reference": "cyan"}.get(parity.verdict, "white")
    return f"[{colour}]{parity.label}[/]"


def _timing_cells(variant: VariantReport, size: int, threads: int) -> list[str]:
    timing = next((t for t in variant.timings if t.batch == size and t.threads == threads), None)
    if timing is None:
        return ["-", "-"]
    return [f"{'~' if timing.noisy else ''}{timing.median_ms:.1f}", f"{timing.images_per_s:.1f}"]


def render_table(report: VariantsReport, batch_sizes: tuple[int, ...]) -> Table:
    """One row per backend: precision, parity, median latency and images/s per batch, speed-up vs eager."""
    threads = sorted({t.threads for v in report.variants for t in v.timings}) or [0]
    table = Table(
        title=f"{report.model}: {report.weights} weights, {threads[0]} threads, in-process",
        caption=report.handler,  # a SageMaker handler: whether variants stand in for its predict_fn
    )
    table.add_column("backend", no_wrap=True)
    table.add_column("prec")
    table.add_column("parity", no_wrap=True)
    table.add_column("build s", justify="right")
    for size in batch_sizes:
        table.add_column(f"b{size} ms", justify="right")
        table.add_column(f"b{size} img/s", justify="right")
    table.add_column("vs eager", justify="right")
    for variant in report.variants:
        cells = [
            variant.backend,
            variant.precision or "-",
            _parity_cell(variant),
            "-" if variant.build_seconds is None else f"{variant.build_seconds:.1f}",
        ]
        for size in batch_sizes:
            cells += _timing_cells(variant, size, threads[0])
        cells.append("-" if variant.speedup_vs_eager is None else f"{variant.speedup_vs_eager:.2f}x")
        table.add_row(*cells)
    return table


def _parity_figures(p: ParityReport) -> str:
    if p.cosine_min is None:  # it never ran far enough to be measured
        return ""
    flat = " (top-1 not gated: flat reference logits)" if any("not gated" in n for n in p.notes) else ""
    return (
        f" top-1 {p.top1_agreement:.0%}, top-5 {p.top5_overlap:.0%}, cosine p10 {p.cosine_p10:.4f} / "
        f"worst {p.cosine_min:.4f}, max_rel_err {p.max_rel_err:.3g}{flat}"
    )


def _parity_detail(v: VariantReport) -> str:
    """The figures on this model; where a trained stand-in judged the backend, its figures too."""
    p = v.parity
    assert p is not None
    reason = f" REJECTED: {p.reason}" if p.verdict == "rejected" else ""
    if p.stand_in is None:
        return f"parity{_parity_figures(p)}{reason}"
    return (
        f"parity on this model (sanity floor){_parity_figures(p)}; on {p.stand_in.model} (trained limits,"
        f" {p.stand_in.verdict}){_parity_figures(p.stand_in)}{reason}"
    )


def detail_lines(report: VariantsReport) -> list[str]:
    """Why each variant is unavailable, failed, or what its parity measured (the table stays narrow)."""
    lines = []
    for v in report.variants:
        if not v.available:
            reason = (v.unavailable_reason or "").removeprefix("unavailable: ")
            lines.append(f"{v.backend}: unavailable: {reason}")
        elif v.error:
            lines.append(f"{v.backend}: build failed: {v.error}")
        elif v.parity is not None and v.parity.verdict != "reference":
            lines.append(f"{v.backend}: {_parity_detail(v)}")
        if v.accuracy is not None and v.accuracy.drop_pp is not None:
            lines.append(f"{v.backend}: accuracy {v.accuracy.summary}")
    return lines


def _accuracy_verdict(significant: bool | None, drop_pp: float | None) -> str:
    if drop_pp is None:
        return "reference"
    if not significant:
        return "not significant"
    return "[bold red]significant drop[/]" if drop_pp > 0 else "significant gain"


def accuracy_table(report: VariantsReport) -> Table | None:
    """top-1 / top-5 per verified variant, its drop vs eager with the 95% interval and McNemar's verdict."""
    scored = [v for v in report.variants if v.accuracy is not None]
    if not scored:
        return None
    table = Table(title=f"Labelled accuracy: {report.eval_data}")
    for name, justify in (("backend", "left"), ("prec", "left"), ("n", "right"), ("top-1", "right"),
                          ("top-5", "right"), ("drop pp", "right"), ("95% CI pp", "right"),
                          ("McNemar p", "right"), ("verdict", "left")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for v in scored:
        a = v.accuracy
        assert a is not None
        compared = a.drop_pp is not None
        verdict = _accuracy_verdict(a.significant, a.drop_pp)
        table.add_row(
            v.backend, v.precision or "-", str(a.n), f"{a.top1:.1%}", f"{a.top5:.1%}",
            f"{a.drop_pp:+.1f}" if compared else "-",
            f"[{a.drop_low_pp:+.1f}, {a.drop_high_pp:+.1f}]" if compared else "-",
            f"{a.p_value:.2g}" if compared else "-", verdict,
        )  # fmt: skip
    return table


def _footer(report: VariantsReport) -> None:
    parity = f"parity: {report.parity_inputs}" if report.parity_inputs else ""
    for line in (report.calibration, parity, report.stand_in):
        if line:
            console.print(line, highlight=False)
    pre = report.preprocessing
    if pre is not None:
        console.print(
            f"per-request preprocessing (1 thread, {pre.payload_bytes:,} B JPEG): "
            f"median {pre.median_us:,.0f} µs (decode {pre.decode_us:,.0f}, "
            f"resize+crop {pre.resize_crop_us:,.0f}, normalise {pre.normalise_us:,.0f})"
        )
    if report.busy:
        console.print(
            f"[bold yellow]busy machine:[/] load average {max(report.load_average):.1f} "
            f"on {report.cores} cores; timings and ratios are unreliable "
            "(torch's OpenMP spin-waits suffer most; OMP_WAIT_POLICY=PASSIVE helps)"
        )
    if any(t.noisy for v in report.variants for t in v.timings):
        console.print("[yellow]~ noisy: interquartile range over 10% of the median (a busy machine?)[/]")


def _run_with_progress(spec: ModelSpec, backends: list[str] | None, **options: object) -> VariantsReport:
    # lazy: torch loads when the command runs, not for --help
    from deploybench.variants.verify import evaluate_variants

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("loading model", total=None)
        return evaluate_variants(
            spec,
            backends,
            on_progress=lambda message: progress.update(task, description=message),
            on_step=lambda done, total: progress.update(task, completed=done, total=total),
            **options,  # type: ignore[arg-type]
        )


@app.command()
def variants(
    model: Annotated[
        str,
        typer.Option(
            help="torchvision:<name> | efficientnet-lite0 | FILE.pt | FILE.onnx | module:function"
            " | model.tar.gz | SageMaker model folder"
        ),
    ] = "torchvision:resnet50",
    weights: Annotated[str, typer.Option(help="auto | pretrained | random | state-dict FILE")] = "auto",
    backends: Annotated[str | None, typer.Option(help="comma-separated backend names (default: all)")] = None,
    batch: Annotated[str, typer.Option(help="batch sizes to time, e.g. 1,8")] = "1,8",
    threads: Annotated[str, typer.Option(help="intra-op thread counts, e.g. 2 or 1,2")] = "2",
    budget: Annotated[float, typer.Option(help="seconds of timing in total, spread over the points")] = 120.0,
    cache_dir: Annotated[
        Path | None, typer.Option(help="artifact cache (default $DEPLOYBENCH_CACHE or ~/.cache/deploybench)")
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration-data", "--calibration", help="folder of your images for int8 calibration"
        ),
    ] = None,
    eval_data: Annotated[
        str | None,
        typer.Option(
            help=f"labelled images: ImageFolder (class index, label or WordNet id folders) or CSV path,label;"
            f" '{BUNDLED}': the small shipped set"
        ),
    ] = None,
    payload: Annotated[
        Path | None,
        typer.Option(help="image whose preprocessing is timed; SageMaker sources: the bodies input_fn reads"),
    ] = None,
    content_type: Annotated[str, typer.Option(help="Content-Type of the payload bodies")] = "image/jpeg",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the full report (raw samples) here")
    ] = None,
) -> None:
    """Build every backend variant, check it against eager fp32 (parity gate) and time it in-process."""
    batch_sizes, thread_counts = parse_ints(batch, "batch"), parse_ints(threads, "threads")
    names = [name.strip() for name in backends.split(",") if name.strip()] if backends else None
    if calibration is not None and not calibration.is_dir():
        raise fail(f"{calibration}: calibration folder not found")
    try:
        body = read_payloads(payload, content_type)[0] if payload is not None else None
    except PayloadError as exc:
        raise fail(str(exc)) from None
    try:
        report = _run_with_progress(
            ModelSpec(source=model, weights=weights, payload=payload, content_type=content_type),
            names,
            batch_sizes=batch_sizes,
            threads=thread_counts,
            time_budget_s=budget,
            cache_dir=cache_dir,
            calibration_dir=calibration,
            payload=body,
            eval_data=eval_data,
        )
    except (UnknownBackendError, ModelLoadError, LabelledDataError) as exc:
        raise fail(str(exc)) from None
    console.print(weights_banner(report.weights))
    # a pipe or file gets Rich's 80 columns, which would squeeze the numbers into ellipses
    width = None if console.is_terminal else 140
    console.print(render_table(report, batch_sizes), width=width)
    scored = accuracy_table(report)
    if scored is not None:
        console.print(scored, width=width)
    for line in detail_lines(report):
        console.print(line, highlight=False)
    _footer(report)
    console.print(weights_banner(report.weights))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(report.model_dump_json(indent=2))
        console.print(f"report written to {json_path}")
