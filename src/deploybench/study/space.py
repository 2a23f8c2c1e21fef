"""The candidate space a machine defines: layouts, batch sizes and runtime knobs, from its shape alone.

A pure function of the machine (cores, SMT siblings, GPU), so the space of a machine we do not have
is computed and tested exactly as this one's (`deploybench run --plan-only --machine NAME`).

- layouts: workers x threads = every factorization of the usable cores (1 x N ... N/4 x 4 ... N x 1):
  which one serves best depends on the runtime's scaling and the batching, and MLPerf's CPU
  submissions run one stream per few cores, so none of them can be ruled out before it is served;
- batch sizes: 1 and 4, 8, 16 up to twice the cores on a CPU (a batch wider than that leaves each
  core a slice too thin to gain from it, and CPU runtimes stop gaining past 16); 1 to 64 on a GPU,
  which needs batches of 16 and more to fill its units, with 1, 2 or 4 instances (workers) per GPU;
- runtime knobs (only where the backend honours them, and never more streams than a worker's
  threads: study/plan.py): streams up to half the cores, so the widest worker gives each stream 2 or
  more threads (OpenVINO runs S > 1 streams under its THROUGHPUT hint; a stream of one thread on the
  widest worker is the N x 1 layout without the processes); ONNX Runtime / torch inter-op threads 2
  from 8 cores; on a GPU 1 or 2 streams (concurrent inferences overlap copies and compute);
- the image decoder (RuntimeKnobs.decoder, inputs/decoders.py): torchvision's CPU decoder beside
  Pillow from 8 cores, where the budget grows with the cores (study/budget.py) and there is room for
  one more axis; below that the space and its budget are tight and the saving small (about 0.36 ms of
  CPU per image, a few percent of a served image's CPU), so small machines keep Pillow alone and a
  study opts in with `knobs: {decoder: [pillow, torchvision]}`. A GPU backend tries the GPU's own
  decoder (torchvision-cuda) beside Pillow: its host's few vCPUs are what decoding competes for.
On 2 cores this is exactly KnobGrid's defaults (workers 1, 2; batch 1, 4; one of every runtime knob),
so the default study there is unchanged. A `knobs:` given in the study file replaces it whole.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field

from deploybench.config import Decoder, StrictModel
from deploybench.hardware import detect_machine
from deploybench.sagemaker.archive import has_handler
from deploybench.study.spec import KnobGrid, StudyConfig

CPU_BATCHES = (1, 4, 8, 16)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)
GPU_INSTANCES = (1, 2, 4)  # model instances (server workers) per GPU
STREAMS = (1, 2, 4, 8, 16, 32)
MIN_THREADS_PER_STREAM = 2
INTER_OP_FROM_CORES = 8
DECODER_FROM_CORES = 8  # torchvision's CPU decoder is tried beside Pillow from this many vCPUs


class MachineShape(StrictModel):
    """A machine as the candidate space sees it: detected, or named for a plan (--machine, --cores)."""

    label: str = Field("this machine", description="instance name, or how the shape was given")
    cores: int = Field(ge=1, description="usable vCPUs (affinity and cgroup quota)")
    threads_per_core: int = Field(1, ge=1, description="SMT siblings per physical core")
    gpu: str | None = Field(None, description="GPU model, e.g. 'NVIDIA L4'; None: CPU only")
    gpus: int = Field(0, ge=0)
    memory_gib: float | None = None

    @property
    def physical_cores(self) -> int:
        return max(1, self.cores // self.threads_per_core)


def divisors(n: int) -> list[int]:
    """Every worker count that splits n cores evenly, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def cpu_batches(cores: int) -> list[int]:
    return [b for b in CPU_BATCHES if b == 1 or b <= 2 * cores]


def stream_options(threads: int, streams: tuple[int, ...] = STREAMS) -> list[int]:
    """1, and every stream count that gives each stream MIN_THREADS_PER_STREAM of `threads`."""
    return [s for s in streams if s == 1 or s * MIN_THREADS_PER_STREAM <= threads]


def cpu_grid(shape: MachineShape) -> KnobGrid:
    return KnobGrid(
        workers=divisors(shape.cores),
        max_batch_size=cpu_batches(shape.cores),
        streams=stream_options(shape.cores),
        inter_op_threads=[1, 2] if shape.cores >= INTER_OP_FROM_CORES else [1],
        decoder=["pillow", "torchvision"] if shape.cores >= DECODER_FROM_CORES else ["pillow"],
    )


def gpu_grid(shape: MachineShape) -> KnobGrid:
    """Instances per GPU (workers: a multiple of the GPU count, each worker on one GPU), batch 1..64."""
    gpus = max(1, shape.gpus)
    workers = [gpus * i for i in GPU_INSTANCES if gpus * i <= max(gpus, shape.cores)]
    return KnobGrid(
        workers=workers,
        max_batch_size=list(GPU_BATCHES),
        streams=[1, 2],
        decoder=["pillow", "torchvision-cuda"],
    )


def machine_grid(shape: MachineShape, device: str = "cpu") -> KnobGrid:
    """The knob grid of one device of this machine (see the module's docstring for each rule)."""
    if device.startswith("cuda") and shape.gpu is not None:
        return gpu_grid(shape)
    return cpu_grid(shape)


def study_grid(config: StudyConfig, shape: MachineShape | None, device: str = "cpu") -> KnobGrid:
    """The grid a study sweeps on `device`: its `knobs:` when the study file gives them, else the
    machine's (None: no machine known, KnobGrid's defaults), Pillow alone for a SageMaker handler."""
    if "knobs" in config.model_fields_set or shape is None:
        return config.knobs
    grid = machine_grid(shape, device)
    if has_handler(config.model.source):  # its input_fn decodes: the server takes no other decoder
        return grid.model_copy(update={"decoder": ["pillow"]})
    if config.payload is not None and len(grid.decoder) > 1:
        kept = [d for d in grid.decoder if gate_passes(d, config.payload.resolve())]
        return grid.model_copy(update={"decoder": kept})
    return grid


@functools.cache
def gate_passes(decoder: Decoder, payload: Path) -> bool:
    """Whether `decoder` may serve the study's own payload: a server refuses to start with a decoder
    whose pixels on those photos stray from Pillow's (inputs/decoders.py), so the machine's space does
    not offer it. A decoder this machine cannot run (the GPU's, without CUDA) is the server's to judge."""
    if decoder == "pillow" or decoder.endswith("cuda"):
        return True
    # lazy: torch loads only for a study with its own payload on a machine that tries the decoder
    from deploybench.inputs.decoders import disagreement, own_photos

    return disagreement(decoder, own_photos(payload)) is None


def largest_batch(config: StudyConfig, shape: MachineShape | None) -> int:
    """The widest batch any served candidate of this study may form on this machine (any device)."""
    devices = ["cpu", "cuda"] if shape is not None and shape.gpu else ["cpu"]
    return max(max(study_grid(config, shape, device).max_batch_size) for device in devices)


def detect_shape() -> MachineShape:
    """This machine's shape (hardware.detect_machine: affinity, cgroup quota, SMT, GPU)."""
    machine = detect_machine()
    names = [n.strip() for n in machine.gpu.split(",")] if machine.gpu else []
    return MachineShape(
        cores=machine.cores,
        threads_per_core=machine.threads_per_core,
        gpu=names[0] if names else None,
        gpus=len(names),
        memory_gib=machine.memory_gib,
    )


def shape_from_environment(environment: dict[str, object], label: str = "this machine") -> MachineShape:
    """The shape of a machine from its recorded environment (study/environment.py: fingerprint)."""
    gpu = environment.get("gpu")
    names = [n.strip() for n in str(gpu).split(",")] if gpu else []
    return MachineShape(
        label=label,
        cores=int(environment["cores"]),  # type: ignore[call-overload]
        threads_per_core=int(environment.get("threads_per_core") or 1),  # type: ignore[call-overload]
        gpu=names[0] if names else None,
        gpus=len(names),
        memory_gib=environment.get("memory_gib"),  # type: ignore[arg-type]
    )
