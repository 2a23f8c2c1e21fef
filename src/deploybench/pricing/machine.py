"""Which machine a study's measurements are priced as: never one they were not taken on.

- `--price-per-hour X` wins (with `--instance NAME` as its name, checked against this CPU when the
  catalogue knows NAME);
- `--instance NAME` alone: the catalogue's price; a CPU family or vCPU count that differs from this
  machine's is a warning, recorded with every trial and shown in every output;
- neither: the cheapest catalogue entry whose CPU family and vCPUs match this machine (and that has
  no accelerator unless this machine has that one); none matching is an error that says why and asks
  for --instance / --price-per-hour (or --unpriced, to rank by throughput alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from deploybench.config import MachineSpec
from deploybench.hardware import MachineProfile
from deploybench.pricing.catalogue import (
    PriceCatalogue,
    PriceEntry,
    PriceOverride,
    UnknownInstanceError,
    accelerator_model,
    gpu_is_model,
    load_catalogue,
)
from deploybench.results import MachineInfo, TrialRecord


class MachinePriceError(ValueError):
    """No price can be given to this machine without the user's say (nothing was measured yet)."""


def _describe(machine: MachineProfile) -> str:
    gpu = f", {machine.gpu}" if machine.gpu else ""
    return f"{machine.cpu.label}, {machine.cores} vCPUs{gpu}"


def _accelerator_fits(entry: PriceEntry, gpu: str | None) -> bool:
    """A CPU-only machine matches CPU-only rows; a GPU machine rows naming its GPU model."""
    if not entry.accelerator:
        return gpu is None
    if gpu is None:
        return False
    model = accelerator_model(entry.accelerator)  # "1x NVIDIA T4 16 GB" -> "T4"
    return model is not None and gpu_is_model(gpu, model)


def matching_entries(catalogue: PriceCatalogue, machine: MachineProfile) -> list[PriceEntry]:
    """Entries this machine could be, cheapest first."""
    family = machine.cpu.family
    if family is None:
        return []
    found = [
        entry
        for entry in catalogue.entries
        if family in entry.cpu_families
        and entry.vcpus == machine.cores
        and _accelerator_fits(entry, machine.gpu)
    ]
    return sorted(found, key=lambda e: (e.usd_per_hour, e.instance))


def mismatch(entry: PriceEntry, machine: MachineProfile) -> str | None:
    """Why `entry` is not this machine (None when CPU family and vCPUs agree)."""
    problems = []
    if not entry.cpu_families:
        problems.append("the catalogue does not say which CPU it has")
    elif machine.cpu.family not in entry.cpu_families:
        problems.append(f"it runs {entry.cpu_vendor or '?'} {entry.cpu_family}")
    if entry.vcpus is not None and entry.vcpus != machine.cores:
        problems.append(f"it has {entry.vcpus} vCPUs")
    if not problems:
        return None
    return (
        f"instance {entry.instance} does not match this machine ({_describe(machine)}): "
        f"{'; '.join(problems)}. Its price is applied to measurements taken on different hardware."
    )


def _why_no_match(catalogue: PriceCatalogue, machine: MachineProfile) -> tuple[str, bool]:
    """Why no entry fits, and whether the catalogue has this CPU family at all."""
    family = machine.cpu.family
    if family is None:
        return "its CPU family is not one deploybench recognises", False
    same_family = [
        e for e in catalogue.entries if family in e.cpu_families and _accelerator_fits(e, machine.gpu)
    ]
    if not same_family:
        return f"the catalogue has no {family} instance", False
    sizes = ", ".join(f"{e.instance} ({e.vcpus} vCPUs)" for e in same_family[:6])
    return f"no {family} entry has {machine.cores} vCPUs (there are {sizes})", True


def _no_match_message(catalogue: PriceCatalogue, machine: MachineProfile) -> str:
    why, known = _why_no_match(catalogue, machine)
    listing = f"deploybench prices --filter {machine.cpu.family}" if known else "deploybench prices"
    return (
        f"cannot price this machine ({_describe(machine)}): {why}. Pass --instance NAME (the instance you "
        f"will deploy on; `{listing}` lists candidates, --prices FILE adds your own), or --price-per-hour "
        "X, or --unpriced to rank by throughput without a cost."
    )


def _given_instance(catalogue: PriceCatalogue, name: str) -> PriceEntry | None:
    try:
        return catalogue.lookup(name)
    except UnknownInstanceError:
        return None


def resolve_machine(
    spec: MachineSpec,
    machine: MachineProfile,
    hostname: str,
    catalogue: PriceCatalogue | None = None,
) -> MachineInfo:
    """The MachineInfo recorded with every trial: label, price, where the price came from, warnings."""
    catalogue = catalogue or load_catalogue()
    entry: PriceEntry | None = None
    if spec.price_per_hour is not None:
        price, instance = spec.price_per_hour, spec.instance
        source = "given: --price-per-hour"
        entry = _given_instance(catalogue, spec.instance) if spec.instance else None
    elif spec.instance:
        entry = catalogue.lookup(spec.instance)  # unknown names fail here, with close matches
        price, instance, source = entry.usd_per_hour, entry.instance, f"given: --instance {entry.instance}"
    else:
        price, instance, source = _matched_price(catalogue, machine, spec.unpriced)
    warnings = [w for w in [mismatch(entry, machine) if entry else None] if w]
    if price is None:
        warnings.append(f"no price: {source}; costs are not shown")
    cpu = machine.cpu
    return MachineInfo(
        label=spec.label or instance or hostname,
        instance=instance,
        price_per_hour=price,
        cpu_model=cpu.model_name,
        cores=machine.cores,
        gpu=machine.gpu,
        cpu_vendor=cpu.vendor,
        cpu_family=cpu.family,
        memory_gib=machine.memory_gib,
        price_source=source,
        warnings=warnings,
    )


def _matched_price(
    catalogue: PriceCatalogue, machine: MachineProfile, unpriced: bool
) -> tuple[float | None, str | None, str]:
    matches = matching_entries(catalogue, machine)
    if matches:
        best = matches[0]
        others = ", ".join(e.instance for e in matches[1:4])
        also = f"; also matching: {others} (pass --instance to choose)" if others else ""
        source = (
            f"catalogue: {best.instance} is the cheapest {best.cpu_family} entry with {best.vcpus} vCPUs, "
            f"like this machine ({machine.cpu.label}){also}"
        )
        return best.usd_per_hour, best.instance, source
    if unpriced:
        return None, None, f"--unpriced: {_why_no_match(catalogue, machine)[0]} ({_describe(machine)})"
    raise MachinePriceError(_no_match_message(catalogue, machine))


def machine_warnings(trials: Iterable[TrialRecord]) -> list[str]:
    """Each distinct machine warning recorded with the trials, in order of first appearance."""
    return list(dict.fromkeys(w for trial in trials for w in trial.machine.warnings))


def override_warnings(
    override: PriceOverride | None, trials: Sequence[TrialRecord], catalogue: PriceCatalogue
) -> list[str]:
    """A report-time --instance is checked against the CPU each study recorded, as a study checks it."""
    if override is None or not override.instance:
        return []
    entry = _given_instance(catalogue, override.instance)
    if entry is None:
        return []
    warnings = []
    for info in {t.machine.model_dump_json(): t.machine for t in trials}.values():
        if info.cpu_family is None or info.cores is None:
            continue
        profile = MachineProfile.model_validate(
            {
                "cpu": {"vendor": info.cpu_vendor, "family": info.cpu_family, "model_name": info.cpu_model},
                "cores": info.cores,
                "memory_gib": info.memory_gib or 0.0,
                "gpu": info.gpu,
            }
        )
        if (problem := mismatch(entry, profile)) is not None:
            warnings.append(problem)
    return list(dict.fromkeys(warnings))
