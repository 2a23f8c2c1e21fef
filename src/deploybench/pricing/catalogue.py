"""Price catalogue, cost per 1M inferences, transactions per hour and capacity planning.

The question users bring is "what is the cheapest way to serve this model within my latency budget?",
so every throughput figure is turned into dollars with one stated formula:

    cost per 1M inferences = USD per hour / (throughput per second x 3600) x 1e6

Prices come from a bundled, versioned CSV (data/prices.csv) that users extend or override with their
own file of the same columns. The catalogue is parsed with the csv module (not pandas) so that every
error names the file and the line.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import math
import re
from importlib import resources
from pathlib import Path

from pydantic import Field

from deploybench.config import StrictModel

SECONDS_PER_HOUR = 3600
HOURS_PER_MONTH = 730  # the cloud providers' billing convention (8760 h / 12)
CATALOGUE_COLUMNS = (
    "provider",
    "service",
    "instance",
    "region",
    "usd_per_hour",
    "vcpus",
    "memory_gib",
    "accelerator",
    "cpu_vendor",
    "cpu_family",
    "source",
    "date",
)
REQUIRED_COLUMNS = ("provider", "instance", "usd_per_hour")
VERSION_PATTERN = re.compile(r"\bversion\s+([\w.\-]+)", re.IGNORECASE)


class PriceFileError(ValueError):
    """A price file that cannot be used: names the file and the line, so nothing is guessed."""


class UnknownInstanceError(KeyError):
    """An instance that is not in the catalogue; carries the close matches to suggest."""

    def __init__(self, instance: str, suggestions: list[str]) -> None:
        self.instance = instance
        self.suggestions = suggestions
        hint = (
            f"close matches: {', '.join(suggestions)}"
            if suggestions
            else "run `deploybench prices` to list the catalogue"
        )
        super().__init__(
            f"unknown instance {instance!r} (not in the price catalogue); {hint}. "
            "Add it with --prices FILE or pass --price-per-hour."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class PriceEntry(StrictModel):
    """One on-demand hourly price, with where and when it was read."""

    provider: str
    service: str = ""
    instance: str
    region: str = ""
    usd_per_hour: float = Field(gt=0)
    vcpus: int | None = None
    memory_gib: float | None = None
    accelerator: str | None = None
    cpu_vendor: str | None = Field(None, description="intel | amd | aws")
    cpu_family: str | None = Field(None, description="microarchitecture code(s), 'a|b' when either")
    source: str = ""
    date: dt.date | None = None

    @property
    def cpu_families(self) -> frozenset[str]:
        """The CPU families the instance may run on (empty: unknown)."""
        return frozenset(f.strip().lower() for f in (self.cpu_family or "").split("|") if f.strip())

    @property
    def key(self) -> tuple[str, str]:
        """An entry with the same instance and region in a user file replaces the bundled one."""
        return (self.instance.lower(), self.region.lower())


class PriceCatalogue(StrictModel):
    """All known prices: the bundled file, then user files overriding it entry by entry."""

    entries: list[PriceEntry]
    files: list[str] = Field(default_factory=list)
    versions: list[str] = Field(default_factory=list, description="from '# ... version X' header comments")

    def merged(self, other: PriceCatalogue) -> PriceCatalogue:
        """Entries of `other` replace ours with the same instance and region; new ones are added."""
        by_key = {entry.key: entry for entry in self.entries}
        by_key.update({entry.key: entry for entry in other.entries})
        return PriceCatalogue(
            entries=list(by_key.values()),
            files=[*self.files, *other.files],
            versions=[*self.versions, *other.versions],
        )

    def lookup(self, instance: str, region: str | None = None) -> PriceEntry:
        """The entry for an instance name (case-insensitive); region narrows it when several match."""
        matches = [e for e in self.entries if e.instance.lower() == instance.strip().lower()]
        if region:
            matches = [e for e in matches if e.region.lower() == region.lower()]
        if not matches:
            names = sorted({e.instance for e in self.entries})
            lowered = {name.lower(): name for name in names}
            raise UnknownInstanceError(instance, close_matches(instance, list(lowered.values())))
        if len(matches) > 1:
            regions = ", ".join(sorted(e.region for e in matches))
            raise PriceFileError(f"instance {instance!r} is priced in several regions ({regions}); pick one")
        return matches[0]

    def search(self, text: str | None = None) -> list[PriceEntry]:
        """Entries whose provider, service, instance, region, accelerator or CPU contain `text`."""
        needle = (text or "").lower()
        rows = [
            e
            for e in self.entries
            if needle
            in " ".join(
                [
                    e.provider,
                    e.service,
                    e.instance,
                    e.region,
                    e.accelerator or "",
                    e.cpu_vendor or "",
                    e.cpu_family or "",
                ]
            ).lower()
        ]
        return sorted(rows, key=lambda e: (e.provider, e.service, e.usd_per_hour, e.instance))


def gpu_words(name: str) -> list[str]:
    """A GPU name's words, lower case, split on spaces, dashes and slashes ("A100-SXM4-40GB" -> a100, ...)."""
    return [word for word in re.split(r"[\s\-_/]+", name.lower()) if word]


def accelerator_model(accelerator: str | None) -> str | None:
    """The GPU model a catalogue row names: "1x NVIDIA L4 24 GB" -> "L4" (None: no NVIDIA GPU)."""
    words = (accelerator or "").split()
    return words[2] if len(words) >= 3 and words[1].lower() == "nvidia" else None


def gpu_is_model(gpu: str, model: str) -> bool:
    """The GPU is exactly this model: one of its words is the model, so "NVIDIA L40S" is not an "L4"
    (a substring test would price an L40S machine at an L4's rate)."""
    return model.lower() in gpu_words(gpu)


def gpu_models(catalogue: PriceCatalogue) -> list[str]:
    """Every NVIDIA GPU model the catalogue prices."""
    return sorted({m for e in catalogue.entries if (m := accelerator_model(e.accelerator))})


def close_matches(instance: str, names: list[str], limit: int = 5) -> list[str]:
    """Names that contain what was typed, then difflib's nearest spellings (case-insensitive)."""
    lowered = {name.lower(): name for name in names}
    needle = instance.strip().lower()
    containing = sorted(name for low, name in lowered.items() if needle and needle in low)
    similar = [lowered[n] for n in difflib.get_close_matches(needle, list(lowered), n=limit, cutoff=0.6)]
    return list(dict.fromkeys([*containing, *similar]))[:limit]


def bundled_catalogue_path() -> Path:
    return Path(str(resources.files("deploybench") / "data" / "prices.csv"))


def load_catalogue(extra_files: list[Path] | Path | None = None) -> PriceCatalogue:
    """The bundled catalogue, overridden by each user file in order."""
    catalogue = read_price_file(bundled_catalogue_path())
    if isinstance(extra_files, Path | str):
        extra_files = [Path(extra_files)]
    for path in extra_files or []:
        catalogue = catalogue.merged(read_price_file(Path(path)))
    return catalogue


def read_price_file(path: Path) -> PriceCatalogue:
    """Parse a price CSV ('#' comment lines allowed); raise PriceFileError naming file:line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PriceFileError(f"{path}: cannot read price file: {exc.strerror or exc}") from exc
    header: list[str] | None = None
    entries: list[PriceEntry] = []
    versions: list[str] = []
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("#") and (found := VERSION_PATTERN.search(line)):
            versions.append(f"{Path(path).name} {found.group(1)}")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in next(csv.reader([line]))]
        if header is None:
            header = _check_header(cells, path, number)
            continue
        entries.append(_parse_row(header, cells, path, number))
    if header is None:
        raise PriceFileError(f"{path}: no header line (expected columns {', '.join(CATALOGUE_COLUMNS)})")
    return PriceCatalogue(entries=entries, files=[str(path)], versions=versions)


def _check_header(cells: list[str], path: Path, number: int) -> list[str]:
    unknown = [c for c in cells if c not in CATALOGUE_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in cells]
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        raise PriceFileError(
            f"{path}:{number}: bad header: {'; '.join(problems)} (columns: {', '.join(CATALOGUE_COLUMNS)})"
        )
    return cells


def _parse_row(header: list[str], cells: list[str], path: Path, number: int) -> PriceEntry:
    where = f"{path}:{number}"
    if len(cells) != len(header):
        raise PriceFileError(f"{where}: expected {len(header)} fields, found {len(cells)}")
    row = dict(zip(header, cells, strict=True))
    for column in REQUIRED_COLUMNS:
        if not row[column]:
            raise PriceFileError(f"{where}: {column} is empty")
    values: dict[str, object] = {k: v for k, v in row.items() if v != ""}
    values["usd_per_hour"] = _positive(row["usd_per_hour"], "usd_per_hour", where)
    if row.get("vcpus"):
        values["vcpus"] = int(_positive(row["vcpus"], "vcpus", where))
    if row.get("memory_gib"):
        values["memory_gib"] = _positive(row["memory_gib"], "memory_gib", where)
    if row.get("date"):
        try:
            values["date"] = dt.date.fromisoformat(row["date"])
        except ValueError as exc:
            raise PriceFileError(f"{where}: date {row['date']!r} is not YYYY-MM-DD") from exc
    values.setdefault("source", str(path))
    return PriceEntry.model_validate(values)


def _positive(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise PriceFileError(f"{where}: {column} {text!r} is not a positive number")
    return value


def cost_per_million(usd_per_hour: float, throughput_rps: float) -> float:
    """USD per 1M inferences = USD per hour / (throughput per second x 3600) x 1e6."""
    if usd_per_hour < 0:
        raise ValueError(f"price must be >= 0, got {usd_per_hour}")
    if throughput_rps <= 0:
        raise ValueError(f"throughput must be > 0 req/s, got {throughput_rps}")
    return usd_per_hour / (throughput_rps * SECONDS_PER_HOUR) * 1e6


def transactions_per_hour(throughput_rps: float) -> float:
    return throughput_rps * SECONDS_PER_HOUR


class CapacityPlan(StrictModel):
    """How many instances serve a peak traffic within the SLO, and what they cost a month."""

    target_rps: float
    throughput_per_instance: float
    headroom: float
    usable_rps_per_instance: float
    instances: int
    usd_per_hour: float | None
    hourly_usd: float | None
    monthly_usd: float | None
    hours_per_month: int = HOURS_PER_MONTH


def plan_capacity(
    target_rps: float,
    throughput_per_instance: float,
    usd_per_hour: float | None,
    headroom: float = 0.0,
) -> CapacityPlan:
    """Instances = ceil(target / (throughput at the SLO x (1 - headroom))); monthly cost at 730 h.

    `throughput_per_instance` must already be the rate one instance sustains within the SLO;
    `headroom` is the fraction of it kept spare for spikes (0.2 plans each instance at 80%).
    """
    if target_rps <= 0:
        raise ValueError(f"target traffic must be > 0 req/s, got {target_rps}")
    if throughput_per_instance <= 0:
        raise ValueError(f"throughput per instance must be > 0 req/s, got {throughput_per_instance}")
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be in [0, 1), got {headroom}")
    usable = throughput_per_instance * (1 - headroom)
    instances = max(1, math.ceil(target_rps / usable - 1e-9))
    hourly = None if usd_per_hour is None else instances * usd_per_hour
    return CapacityPlan(
        target_rps=target_rps,
        throughput_per_instance=throughput_per_instance,
        headroom=headroom,
        usable_rps_per_instance=usable,
        instances=instances,
        usd_per_hour=usd_per_hour,
        hourly_usd=hourly,
        monthly_usd=None if hourly is None else hourly * HOURS_PER_MONTH,
    )


class PriceOverride(StrictModel):
    """A price given at report time (--instance or --price-per-hour); replaces the recorded one."""

    usd_per_hour: float = Field(gt=0)
    instance: str | None = None

    @property
    def label(self) -> str:
        return self.instance or f"${self.usd_per_hour:g}/h"


def resolve_price(instance: str, prices_files: list[Path] | None = None) -> float:
    """USD per hour of a catalogue instance; UnknownInstanceError (with close matches) otherwise."""
    return load_catalogue(prices_files).lookup(instance).usd_per_hour


def price_override(
    instance: str | None = None,
    price_per_hour: float | None = None,
    prices_files: list[Path] | None = None,
) -> PriceOverride | None:
    """--instance NAME (looked up) and/or --price-per-hour X (wins) into one override, or None."""
    if price_per_hour is not None:
        if price_per_hour <= 0:
            raise ValueError(f"--price-per-hour must be > 0, got {price_per_hour}")
        return PriceOverride(usd_per_hour=price_per_hour, instance=instance)
    if instance:
        entry = load_catalogue(prices_files).lookup(instance)
        return PriceOverride(usd_per_hour=entry.usd_per_hour, instance=entry.instance)
    return None


SAGEMAKER_HOSTING = "sagemaker-realtime"


def sagemaker_hosting(
    catalogue: PriceCatalogue, instance: str | None, cpu_family: str | None, vcpus: int | None
) -> PriceEntry | None:
    """The SageMaker real-time hosting type for a machine: itself when it is one, else the cheapest
    `ml.*` entry on the same CPU family with the same vCPUs (the machine that was measured), else with
    the fewest vCPUs above. None when no hosting type runs that CPU family: an EC2 rate is never
    quoted under an `ml.` name, since hosting prices and instance types differ from EC2's."""
    hosting = [e for e in catalogue.entries if e.service == SAGEMAKER_HOSTING and not e.accelerator]
    named = [e for e in hosting if instance and e.instance.lower() == instance.lower()]
    if named:
        return named[0]
    family = (cpu_family or "").lower()
    same = [e for e in hosting if family and family in e.cpu_families and e.vcpus is not None]
    exact = [e for e in same if e.vcpus == vcpus]
    larger = [e for e in same if vcpus is not None and e.vcpus is not None and e.vcpus > vcpus]
    pool = exact or sorted(larger, key=lambda e: (e.vcpus, e.usd_per_hour))[:1]
    return min(pool, key=lambda e: e.usd_per_hour) if pool else None
