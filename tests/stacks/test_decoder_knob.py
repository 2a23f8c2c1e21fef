"""The decoder knob end to end, without a server: the trial id, the serve command, the stacks that
refuse it, the export targets, the settings of a handler's model, and the machine's space."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from deploybench.config import ModelSpec, RuntimeKnobs
from deploybench.export.container import entrypoint_words
from deploybench.export.readme import container_notes
from deploybench.export.shipped import ship_inputs
from deploybench.inputs.payload import default_payload_path
from deploybench.report.deployable import deployable_as
from deploybench.results import Candidate
from deploybench.serve.settings import SettingsError, resolve_settings
from deploybench.stacks import StackLaunch, all_stacks, get_stack
from deploybench.stacks.process import ServerStartError, runtime_flags, serve_command, served_spec
from deploybench.study.preview import plan_preview
from deploybench.study.space import MachineShape, machine_grid, study_grid
from deploybench.study.spec import StudyConfig, launch_spec

TORCHVISION = RuntimeKnobs(decoder="torchvision")
OTHER_STACKS = sorted(set(all_stacks()) - {"deploybench"})  # TorchServe, PyTriton, LitServe, Ray Serve


def test_pillow_keeps_every_trial_id_and_command_and_another_decoder_names_itself() -> None:
    default = Candidate(backend="openvino-int8", workers=2, threads=1, max_batch_size=4, max_delay_ms=2)
    assert RuntimeKnobs(decoder="pillow").key_suffix == ""
    assert default.key == "openvino-int8@cpu/w2t1/b4d2"  # old studies resume and read unchanged
    decoded = default.model_copy(update={"runtime": TORCHVISION})
    assert decoded.key == "openvino-int8@cpu/w2t1/b4d2/dec-torchvision"
    tuned = RuntimeKnobs(streams=2, decoder="torchvision-cuda")
    assert tuned.key_suffix == "s2-dec-torchvision-cuda"
    assert not any("decoder" in flag for flag in runtime_flags(RuntimeKnobs()))
    assert "--decoder=torchvision" in runtime_flags(TORCHVISION)


def test_the_container_runs_the_server_with_the_measured_decoder() -> None:
    candidate = Candidate(backend="onnxruntime", runtime=TORCHVISION)
    spec = ModelSpec(source="torchvision:mobilenet_v3_small", weights="random")
    assert "--decoder=torchvision" in serve_command(spec, candidate, 8080, None)
    assert "--decoder=torchvision" in entrypoint_words(spec, candidate)
    assert deployable_as(candidate, spec.source)["container"] is None


def test_the_sagemaker_archives_refuse_or_say_they_preprocess_with_pillow() -> None:
    candidate = Candidate(backend="onnxruntime", runtime=TORCHVISION)
    verdicts = deployable_as(candidate, "torchvision:mobilenet_v3_small")
    assert verdicts["sagemaker-rayserve"] == "runtime knobs only deploybench's server sets: decoder"
    assert verdicts["sagemaker-pytorch"] == "runtime knobs only deploybench's server sets: decoder"
    notes = container_notes(candidate)
    assert any("decoded by torchvision" in note and "with Pillow" in note for note in notes)
    assert container_notes(Candidate(backend="onnxruntime")) == []


@pytest.mark.parametrize("name", OTHER_STACKS)
def test_other_stacks_refuse_a_decoder_they_do_not_have(name: str, tmp_path: Path) -> None:
    stack = get_stack(name)
    default = Candidate(backend="onnxruntime", stack=name)
    decoded = default.model_copy(update={"runtime": TORCHVISION})
    assert stack.cannot_express(default, default) is None
    why = stack.cannot_express(decoded, default)
    assert why == f"{name} preprocesses with Pillow only: decoder torchvision is deploybench's server's knob"
    launch = StackLaunch(ModelSpec(), decoded, tmp_path / "work", tmp_path / "log")
    with pytest.raises(ServerStartError, match="preprocesses with Pillow only"):
        stack.start(launch)
    assert not (tmp_path / "work").exists()  # refused before anything was prepared or started
    ours = decoded.model_copy(update={"stack": "deploybench"})
    assert get_stack("deploybench").cannot_express(ours, default) is None


def test_a_handlers_own_input_fn_takes_no_other_decoder(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    flags = {"runtime": {"decoder": "torchvision"}}
    with pytest.raises(SettingsError, match="reads its own requests"):
        resolve_settings(flags, None, model_dir=tmp_path, env={})
    assert resolve_settings(flags, ModelSpec(), env={}).server.runtime.decoder == "torchvision"
    with pytest.raises(SettingsError, match="decoder"):
        resolve_settings({"runtime": {"decoder": "opencv"}}, ModelSpec(), env={})


def test_the_space_offers_torchvision_from_eight_cores_and_the_gpu_decoder_on_a_gpu(tmp_path: Path) -> None:
    assert machine_grid(MachineShape(cores=2)).decoder == ["pillow"]  # the default study does not grow
    assert machine_grid(MachineShape(cores=4)).decoder == ["pillow"]
    assert machine_grid(MachineShape(cores=16)).decoder == ["pillow", "torchvision"]
    gpu = MachineShape(cores=4, gpu="NVIDIA L4", gpus=1)
    assert machine_grid(gpu, "cuda").decoder == ["pillow", "torchvision-cuda"]
    assert machine_grid(gpu, "cpu").decoder == ["pillow"]
    opted = StudyConfig.model_validate({"knobs": {"decoder": ["pillow", "torchvision"]}})
    assert study_grid(opted, MachineShape(cores=2)).decoder == ["pillow", "torchvision"]
    archive = tmp_path / "model"
    (archive / "code").mkdir(parents=True)
    handler = StudyConfig.model_validate({"model": {"source": str(archive)}})
    assert study_grid(handler, MachineShape(cores=16)).decoder == ["pillow"]  # its input_fn decodes


def test_plan_only_lists_the_decoders_a_machine_would_try() -> None:
    config = StudyConfig(backends=["eager", "onnxruntime"])
    big = plan_preview(config, MachineShape(cores=16))
    assert big.runtime_values["cpu"]["decoder"] == ["pillow", "torchvision"]
    assert all("decoder" in space.runtime_knobs for space in big.backends)
    small = plan_preview(config, MachineShape(cores=2))
    assert "decoder" not in small.runtime_values["cpu"]
    gpu = plan_preview(StudyConfig(), MachineShape(cores=4, gpu="NVIDIA L4", gpus=1))
    assert gpu.runtime_values["cuda"]["decoder"] == ["pillow", "torchvision-cuda"]


def _photo(folder: Path, size: tuple[int, int]) -> Path:
    """cat.jpg resized: at 800 x 600 Pillow's JPEG draft decodes at a reduced scale, and torchvision's
    pixels differ from Pillow's by more than the gate's 2/255; at 336 x 224 they are equal."""
    path = folder / f"cat-{size[0]}x{size[1]}.jpg"
    with Image.open(default_payload_path()) as cat:
        cat.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path, "JPEG", quality=90)
    return path


def test_the_studys_own_payload_is_named_to_the_decoder_gate_and_travels_with_the_export(
    tmp_path: Path,
) -> None:
    payload = _photo(tmp_path, (800, 600))
    config = StudyConfig.model_validate({"payload": str(payload)})
    pillow = Candidate(backend="onnxruntime")
    decoded = pillow.model_copy(update={"runtime": TORCHVISION})
    assert launch_spec(config, pillow).payload is None  # Pillow's commands stay as they were
    spec = launch_spec(config, decoded)
    assert spec.payload == payload.resolve()
    command = serve_command(spec, decoded, 8080, None)
    assert command[command.index("--payload") + 1] == str(payload.resolve())
    assert "--payload" not in serve_command(launch_spec(config, pillow), pillow, 8080, None)
    assert served_spec(spec, decoded).payload == payload.resolve()  # shipped with a container export
    assert served_spec(spec, pillow).payload is None
    words = entrypoint_words(spec, decoded, ship_inputs(tmp_path / "export", served_spec(spec, decoded)))
    assert f'"$MODEL_DIR"/inputs/payload/{payload.name}' in words


def test_the_space_drops_a_decoder_the_gate_refuses_on_the_studys_own_payload(tmp_path: Path) -> None:
    shape = MachineShape(cores=16)
    refused = StudyConfig.model_validate({"payload": str(_photo(tmp_path, (800, 600)))})
    assert study_grid(refused, shape).decoder == ["pillow"]
    kept = StudyConfig.model_validate({"payload": str(_photo(tmp_path, (336, 224)))})
    assert study_grid(kept, shape).decoder == ["pillow", "torchvision"]
